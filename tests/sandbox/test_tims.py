"""The TIMS simulator against its contract: a real server on loopback, driven over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from sandbox.faults import Faults
from sandbox.tims import DEFAULT_API_KEYS, TimsStore, create_app, start_server
from sandbox.tims.store import parse_ts

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "tims-openapi.yaml"
KEY = next(k for k, v in DEFAULT_API_KEYS.items() if v == "connect")
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Tims:
    url: str
    store: TimsStore
    faults: Faults
    client: httpx.AsyncClient  # authenticated as "connect"


@pytest.fixture
async def tims() -> AsyncIterator[Tims]:
    store, faults = TimsStore(), Faults()
    runner, url = await start_server("127.0.0.1", 0, store, faults,
                                     webhook_backoff_seconds=0.05, webhook_timeout_seconds=2)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as client:
        yield Tims(url, store, faults, client)
    await runner.cleanup()


def customer(ext: str, **fields: Any) -> dict[str, Any]:
    return {"external_id": ext, "name": f"Customer {ext}", **fields}


# -- the contract document ----------------------------------------------------------------

def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


_SCHEMA_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "nullable", "readOnly", "enum",
    "format", "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "minItems",
    "maxItems", "default", "description", "example", "allOf", "$ref", "x-tims-ref", "x-tims-unique",
    "x-tims-unique-together",
}


def _schema_keywords_ok(schema: dict[str, Any], where: str) -> None:
    unknown = set(schema) - _SCHEMA_KEYWORDS
    assert not unknown, f"{where}: unknown schema keywords {unknown}"
    for name, prop in schema.get("properties", {}).items():
        _schema_keywords_ok(prop, f"{where}.{name}")
    for i, part in enumerate(schema.get("allOf", [])):
        _schema_keywords_ok(part, f"{where}.allOf[{i}]")
    if isinstance(schema.get("items"), dict):
        _schema_keywords_ok(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        _schema_keywords_ok(schema["additionalProperties"], f"{where}{{}}")


def _nulls(node: Any, path: str = "") -> list[str]:
    """Nulls in the document outside an ``enum`` (where OpenAPI 3.0.3 wants null spelled out for
    a nullable field)."""
    if isinstance(node, dict):
        return [f"{path}/{k}" for k, v in node.items() if v is None] + \
            [n for k, v in node.items() if k != "enum" for n in _nulls(v, f"{path}/{k}")]
    if isinstance(node, list):
        return [n for i, v in enumerate(node) for n in _nulls(v, f"{path}[{i}]")]
    return []


def test_contract_is_openapi_yaml_whose_refs_resolve() -> None:
    doc = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    assert _nulls(doc) == []  # e.g. an unquoted ", " inside a flow mapping
    for name, schema in doc["components"]["schemas"].items():
        _schema_keywords_ok(schema, name)
    assert doc["openapi"].startswith("3.0.")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]}
    refs = _refs(doc)
    assert len(refs) > 100
    for ref in refs:
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
    webhook = doc["x-webhooks"]["change"]["post"]
    headers = {p["name"] for p in webhook["parameters"] if p["in"] == "header"}
    assert {"X-TIMS-Signature", "X-TIMS-Timestamp"} <= headers
    for resource in ("customers", "sales_orders", "invoices", "payments", "items", "segments", "stock_levels"):
        assert f"/v1/{resource}/batch-upsert" in doc["paths"]
        batch = doc["paths"][f"/v1/{resource}/batch-upsert"]["post"]["requestBody"]["content"]["application/json"]
        assert batch["schema"]["properties"]["records"]["maxItems"] == 200


def test_every_served_route_is_in_the_contract_and_back() -> None:
    doc = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))

    def norm(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "{}", path)

    documented = {(method.upper(), norm(path)) for path, item in doc["paths"].items()
                  for method in item if method in ("get", "put", "post", "patch", "delete")}
    app = create_app(TimsStore(), Faults())
    served = {(route.method, norm(route.resource.canonical)) for route in app.router.routes()
              if route.method != "HEAD" and not route.resource.canonical.startswith("/__admin")}
    assert served == documented
    assert ("POST", "/v1/customers/batch-upsert") in served and ("GET", "/v1/changes") in served


async def test_server_serves_the_contract_file_without_auth(tims: Tims) -> None:
    async with httpx.AsyncClient(base_url=tims.url) as anonymous:
        response = await anonymous.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.text == CONTRACT.read_text(encoding="utf-8")


# -- authentication and errors ---------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "Bearer wrong-key", f"Basic {KEY}", "Bearer"])
async def test_missing_or_unknown_api_key_is_401_in_the_contract_shape(tims: Tims, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    async with httpx.AsyncClient(base_url=tims.url) as anonymous:
        response = await anonymous.get("/v1/customers", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["error"]["code"] == "unauthorized"
    assert set(body["error"]) == {"code", "message", "details"}


async def test_configured_keys_name_the_writer() -> None:
    store, faults = TimsStore(), Faults()
    runner, url = await start_server("127.0.0.1", 0, store, faults, api_keys={"k1": "connect", "k2": "ecommerce"})
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            for key, ext in (("k1", "A1"), ("k2", "A2")):
                r = await client.post("/v1/customers/batch-upsert", headers={"Authorization": f"Bearer {key}"},
                                      json={"records": [customer(ext)]})
                assert r.status_code == 200 and r.json()["results"][0]["success"]
            assert (await client.get("/v1/customers", headers={"Authorization": f"Bearer {KEY}"})).status_code == 401
    finally:
        await runner.cleanup()
    assert store.customer_by_external_id("A1")["modified_by"] == "connect"
    assert store.customer_by_external_id("A2")["modified_by"] == "ecommerce"


async def test_unknown_endpoint_and_bad_json_use_the_error_shape(tims: Tims) -> None:
    r = await tims.client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await tims.client.post("/v1/customers", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


# -- batch upsert ------------------------------------------------------------------------------

async def test_batch_upsert_reports_each_record_in_order_and_keeps_the_good_ones(tims: Tims) -> None:
    segment = tims.store.create("segments", {"name": "Welding shops"})
    records = [
        customer("001A000000000001", email="ok@acme.example", segment_ids=[segment["segment_id"]]),
        customer("001A000000000002", email="not-an-email"),
        {"name": "No external id"},
        customer("001A000000000004", segment_ids=["SEG999999"]),
        customer("001A000000000005", billing_address={"city": "Tulsa", "zip": "74101"}),
        customer("001A000000000006", credit_limit="lots"),
        customer("001A000000000007", phone="+1 (918) 555-0100"),
    ]
    r = await tims.client.post("/v1/customers/batch-upsert", json={"records": records})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["index"] for x in results] == list(range(7))
    assert [x["success"] for x in results] == [True, False, False, False, False, False, True]
    assert re.fullmatch(r"C\d{6}", results[0]["id"]) and results[0]["created"] is True
    assert results[0]["id"] != results[6]["id"]
    assert results[1]["error"] == {"code": "validation_error", "field": "email",
                                   "message": "email is not a valid email address"}
    assert results[2]["error"]["field"] == "external_id"
    assert results[3]["error"]["code"] == "unknown_reference" and results[3]["error"]["field"] == "segment_ids[0]"
    assert results[4]["error"]["field"] == "billing_address.zip"
    assert results[5]["error"]["field"] == "credit_limit"
    for failed in ("001A000000000002", "001A000000000004", "001A000000000005"):
        r = await tims.client.get(f"/v1/customers/by-external-id/{failed}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    stored = (await tims.client.get(f"/v1/customers/{results[0]['id']}")).json()
    assert stored["external_id"] == "001A000000000001"
    assert stored["segment_ids"] == [segment["segment_id"]]
    assert stored["modified_by"] == "connect" and stored["version"] == 1
    assert stored["payment_terms"] == "NET30" and stored["status"] == "active"  # contract defaults


async def test_batch_upsert_is_idempotent_by_external_id(tims: Tims) -> None:
    batch = {"records": [customer("003B00000000001", email="a@b.example"), customer("003B00000000002")]}
    first = (await tims.client.post("/v1/customers/batch-upsert", json=batch)).json()["results"]
    again = (await tims.client.post("/v1/customers/batch-upsert", json=batch)).json()["results"]
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert [r["created"] for r in first] == [True, True]
    assert [(r["created"], r["changed"], r["version"]) for r in again] == [(False, False, 1), (False, False, 1)]

    changed = {"records": [{"external_id": "003B00000000001", "phone": "918-555-0101"}]}
    third = (await tims.client.post("/v1/customers/batch-upsert", json=changed)).json()["results"][0]
    assert (third["id"], third["created"], third["changed"], third["version"]) == (first[0]["id"], False, True, 2)
    record = (await tims.client.get(f"/v1/customers/{first[0]['id']}")).json()
    assert record["email"] == "a@b.example" and record["phone"] == "918-555-0101"  # merge, not replace
    feed = (await tims.client.get("/v1/changes")).json()["changes"]
    assert [(c["id"], c["version"]) for c in feed] == [(first[0]["id"], 1), (first[1]["id"], 1), (first[0]["id"], 2)]
    assert len(tims.store.all("customers")) == 2


async def test_batch_upsert_with_null_clears_a_nullable_field_and_refuses_a_required_one(tims: Tims) -> None:
    """The contract's nullable fields are what the integration may clear: null clears them (the
    feed then shows the field as null), other fields sent keep merging, a required field stays."""
    first = {"records": [customer("003C00000000001", email="c@b.example", phone="918-555-0101",
                                  billing_address={"street": "1 Main St", "city": "Tulsa"}, credit_limit=500)]}
    [created] = (await tims.client.post("/v1/customers/batch-upsert", json=first)).json()["results"]
    clears = {"records": [{"external_id": "003C00000000001", "phone": None, "payment_terms": None,
                           "billing_address": {"street": "1 Main St", "city": None}}]}
    [result] = (await tims.client.post("/v1/customers/batch-upsert", json=clears)).json()["results"]
    assert (result["success"], result["changed"], result["version"]) == (True, True, 2)
    record = (await tims.client.get(f"/v1/customers/{created['id']}")).json()
    assert (record["phone"], record["payment_terms"]) == (None, None)
    assert record["billing_address"] == {"street": "1 Main St", "city": None}  # a nested value is replaced whole
    assert (record["email"], record["credit_limit"]) == ("c@b.example", 500)  # not sent: kept
    last = (await tims.client.get("/v1/changes")).json()["changes"][-1]
    assert last["record"]["phone"] is None and "phone" in last["record"] and last["modified_by"] == "connect"

    [again] = (await tims.client.post("/v1/customers/batch-upsert", json=clears)).json()["results"]
    assert (again["changed"], again["version"]) == (False, 2)  # clearing what is empty is a no-op
    required = {"records": [{"external_id": "003C00000000001", "name": None}]}
    [refused] = (await tims.client.post("/v1/customers/batch-upsert", json=required)).json()["results"]
    assert refused["success"] is False
    assert (refused["error"]["code"], refused["error"]["field"]) == ("validation_error", "name")
    assert tims.store.customer(created["id"])["name"] == "Customer 003C00000000001"


async def test_batch_upsert_limits_and_body_shape(tims: Tims) -> None:
    too_many = {"records": [customer(f"EXT{i:04d}") for i in range(201)]}
    r = await tims.client.post("/v1/customers/batch-upsert", json=too_many)
    assert r.status_code == 400 and r.json()["error"]["code"] == "batch_too_large"
    assert r.json()["error"]["details"] == {"max": 200, "received": 201}
    full = {"records": [customer(f"EXT{i:04d}") for i in range(200)]}
    r = await tims.client.post("/v1/customers/batch-upsert", json=full)
    assert r.status_code == 200 and all(x["success"] for x in r.json()["results"])
    r = await tims.client.post("/v1/customers/batch-upsert", json=[customer("X")])
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


# -- single records ------------------------------------------------------------------------------

async def test_single_record_validation_is_422_with_field_errors(tims: Tims) -> None:
    r = await tims.client.post("/v1/customers", json={"name": "", "email": "nope", "status": "gone", "colour": "red"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "validation_error"
    fields = {e["field"] for e in err["details"]["errors"]}
    assert fields == {"name", "email", "status", "colour"}
    r = await tims.client.post("/v1/sales_orders", json={"customer_id": "C123456", "lines": []})
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["code"] == "unknown_reference"


async def test_read_write_by_id_with_versions(tims: Tims) -> None:
    r = await tims.client.post("/v1/customers", json={"name": "Tulsa Welding", "external_id": "001XYZ",
                                                      "customer_id": "C999999", "total_revenue": 5})
    assert r.status_code == 201
    created = r.json()
    cid = created["customer_id"]
    assert cid != "C999999" and created["total_revenue"] == 0  # readOnly fields are ignored on write
    assert r.headers["Location"] == f"/v1/customers/{cid}"

    r = await tims.client.get(f"/v1/customers/{cid}")
    assert r.headers["ETag"] == '"1"'
    r = await tims.client.patch(f"/v1/customers/{cid}", json={"credit_limit": 2500}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["name"] == "Tulsa Welding"
    r = await tims.client.patch(f"/v1/customers/{cid}", json={"credit_limit": 1}, headers={"If-Match": '"1"'})
    assert r.status_code == 412 and r.json()["error"]["details"]["current_version"] == 2

    r = await tims.client.put(f"/v1/customers/{cid}", json={"name": "Tulsa Welding Supply"})
    assert r.status_code == 428 and r.json()["error"]["code"] == "precondition_required"
    r = await tims.client.put(f"/v1/customers/{cid}", json={"name": "Tulsa Welding Supply"}, headers={"If-Match": "2"})
    replaced = r.json()
    assert r.status_code == 200 and replaced["credit_limit"] is None and replaced["external_id"] is None
    assert replaced["version"] == 3 and r.headers["ETag"] == '"3"'
    r = await tims.client.put(f"/v1/customers/{cid}", json={"email": "x@y.example"}, headers={"If-Match": '"2"'})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "name"  # shape before version
    r = await tims.client.delete(f"/v1/customers/{cid}", headers={"If-Match": '"3'})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"

    r = await tims.client.delete(f"/v1/customers/{cid}")
    assert r.status_code == 204
    assert (await tims.client.get(f"/v1/customers/{cid}")).status_code == 404
    last = (await tims.client.get("/v1/changes", params={"limit": 1000})).json()["changes"][-1]
    assert (last["op"], last["id"], last["version"]) == ("delete", cid, 4)


async def test_list_pages_in_id_order(tims: Tims) -> None:
    for i in range(5):
        tims.store.upsert_customer(f"L{i}", name=f"n{i}")
    first = (await tims.client.get("/v1/customers", params={"limit": 3})).json()
    assert [r["customer_id"] for r in first["records"]] == ["C000001", "C000002", "C000003"] and first["has_more"]
    rest = (await tims.client.get("/v1/customers", params={"limit": 3, "after": "C000003"})).json()
    assert [r["customer_id"] for r in rest["records"]] == ["C000004", "C000005"] and not rest["has_more"]


async def test_orders_invoices_and_payments_derive_their_totals(tims: Tims) -> None:
    cust = tims.store.upsert_customer("001ORD", name="Acme")
    items = (await tims.client.post("/v1/items/batch-upsert", json={"records": [
        {"external_id": "01tARGON", "sku": "ARG-300", "name": "Argon 300 cf", "uom": "CYL", "unit_price": 42.5},
        {"external_id": "01tDUP", "sku": "ARG-300", "name": "Duplicate sku"},
    ]})).json()["results"]
    assert items[0]["success"] and items[1]["error"]["code"] == "duplicate_value"
    order = (await tims.client.post("/v1/sales_orders", json={
        "customer_id": cust["customer_id"], "external_id": "006OPP",
        "lines": [{"item_id": items[0]["id"], "quantity": 3, "unit_price": 42.5}]})).json()
    assert order["lines"][0]["amount"] == 127.5 and order["total_amount"] == 127.5 and order["lines"][0]["line_no"] == 1
    invoice = (await tims.client.post("/v1/invoices", json={
        "customer_id": cust["customer_id"], "sales_order_id": order["sales_order_id"],
        "invoice_date": "2024-05-01", "total_amount": 127.5})).json()
    assert invoice["balance_due"] == 127.5 and invoice["status"] == "open"
    r = await tims.client.post("/v1/payments", json={"customer_id": cust["customer_id"], "invoice_id": invoice["invoice_id"],
                                                     "amount": 127.5, "payment_date": "2024-05-20", "method": "ach"})
    assert r.status_code == 201
    paid = (await tims.client.get(f"/v1/invoices/{invoice['invoice_id']}")).json()
    assert (paid["balance_due"], paid["status"], paid["version"], paid["modified_by"]) == (0, "paid", 2, "connect")
    r = await tims.client.post("/v1/invoices", json={"customer_id": cust["customer_id"], "invoice_date": "2024-13-01",
                                                     "total_amount": 1})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "invoice_date"


# -- modified_by and the change feed -------------------------------------------------------------

async def test_modified_by_tells_our_writes_from_erp_users(tims: Tims) -> None:
    result = (await tims.client.post("/v1/customers/batch-upsert",
                                     json={"records": [customer("001MB", email="m@b.example")]})).json()["results"][0]
    ui = tims.store.update_customer(result["id"], payment_terms="NET60", total_revenue=10500.0)
    assert ui["modified_by"] == "tims-ui" and ui["total_revenue"] == 10500.0  # TIMS maintains revenue
    r = await tims.client.post("/__admin/erp/customers", json={"external_id": "001MB", "credit_limit": 900})
    assert r.status_code == 200 and r.json()["record"]["modified_by"] == "tims-ui" and not r.json()["created"]
    feed = (await tims.client.get("/v1/changes")).json()["changes"]
    assert [(c["modified_by"], c["version"]) for c in feed] == [("connect", 1), ("tims-ui", 2), ("tims-ui", 3)]
    assert all(c["record"]["modified_by"] == c["modified_by"] for c in feed)
    assert feed[1]["record"]["payment_terms"] == "NET60" and feed[1]["entity"] == "customer"


async def test_change_feed_pages_through_ties_without_loss_or_duplicates(tims: Tims) -> None:
    # one batch = one updated_at: seven changes tie, and pages of three cut through them
    await tims.client.post("/v1/customers/batch-upsert", json={"records": [customer(f"T{i}") for i in range(7)]})
    tims.store.create("items", {"sku": "CO2-50", "name": "CO2 50 lb"})
    tims.store.upsert_customer("T3", name="renamed")
    ties = [c for c in tims.store.changes if c.resource == "customers" and c.version == 1]
    assert len({c.updated_at for c in ties}) == 1

    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await tims.client.get("/v1/changes", params=params)).json()
        seen += page["changes"]
        cursor = page["next_cursor"]
        pages += 1
        if not page["has_more"]:
            break
    assert pages == 3
    ids = [c["change_id"] for c in seen]
    assert len(ids) == len(set(ids)) == 9
    keys = [(parse_ts(c["updated_at"]), c["change_id"]) for c in seen]
    assert keys == sorted(keys)
    assert [c["op"] for c in seen] == ["upsert"] * 9 and seen[7]["entity"] == "item"

    idle = (await tims.client.get("/v1/changes", params={"cursor": cursor})).json()
    assert idle == {"changes": [], "next_cursor": cursor, "has_more": False}
    tims.store.upsert_customer("T9", name="late")
    after = (await tims.client.get("/v1/changes", params={"cursor": cursor})).json()["changes"]
    assert [c["external_id"] for c in after] == ["T9"]

    only_items = (await tims.client.get("/v1/changes", params={"entity": "item"})).json()["changes"]
    assert [c["entity"] for c in only_items] == ["item"]


async def test_change_feed_since_rereads_an_overlap_window(tims: Tims) -> None:
    tims.store.upsert_customer("S1", name="one")
    page = (await tims.client.get("/v1/changes")).json()
    t1 = parse_ts(page["changes"][0]["updated_at"])
    # a row committed late with an earlier updated_at is behind the cursor...
    tims.store.upsert_customer("S0", name="late commit", at=t1 - timedelta(seconds=2))
    assert (await tims.client.get("/v1/changes", params={"cursor": page["next_cursor"]})).json()["changes"] == []
    # ...and an overlap re-read from ``since`` finds it
    since = (t1 - timedelta(seconds=5)).isoformat()
    window = (await tims.client.get("/v1/changes", params={"since": since})).json()["changes"]
    assert [c["external_id"] for c in window] == ["S0", "S1"]

    r = await tims.client.get("/v1/changes", params={"since": since, "cursor": page["next_cursor"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    r = await tims.client.get("/v1/changes", params={"cursor": "not-a-cursor"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor"
    r = await tims.client.get("/v1/changes", params={"limit": 0})
    assert r.status_code == 400


# -- webhooks -----------------------------------------------------------------------------------

@dataclass
class Receiver:
    url: str
    deliveries: list[tuple[dict[str, str], bytes]]
    fail_first: int = 0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got: list[tuple[dict[str, str], bytes]] = []
    state = Receiver("", got)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        got.append((dict(request.headers), body))
        if state.fail_first > 0:
            state.fail_first -= 1
            return web.Response(status=500)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield state
    await runner.cleanup()


def _expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


async def test_webhook_delivers_each_change_signed_in_order(tims: Tims, receiver: Receiver) -> None:
    secret = "whsec-test-123"
    r = await tims.client.put("/__admin/webhook", json={"url": receiver.url, "max_attempts": "five"})
    assert r.status_code == 400 and not (await tims.client.get("/__admin/webhook")).json()["active"]
    r = await tims.client.put("/__admin/webhook", json={"url": receiver.url, "secret": secret})
    assert r.status_code == 200 and r.json()["active"] and "secret" not in r.json()
    await tims.client.post("/v1/customers/batch-upsert", json={"records": [customer("W1"), customer("W2")]})
    tims.store.upsert_customer("W1", name="edited in TIMS")
    status = (await tims.client.post("/__admin/webhook/drain")).json()
    assert status["delivered"] == 3 and status["failed"] == 0 and status["pending"] == 0

    assert len(receiver.deliveries) == 3
    bodies = []
    for headers, body in receiver.deliveries:
        assert hmac.compare_digest(headers["X-TIMS-Signature"],
                                   _expected_signature(secret, headers["X-TIMS-Timestamp"], body))
        assert headers["X-TIMS-Signature"] != _expected_signature("wrong", headers["X-TIMS-Timestamp"], body)
        change = json.loads(body)
        assert headers["X-TIMS-Change-Id"] == change["change_id"]
        assert headers["X-TIMS-Event"] == f"{change['entity']}.{change['op']}" == "customer.upsert"
        bodies.append(change)
    feed = (await tims.client.get("/v1/changes")).json()["changes"]
    assert bodies == feed
    assert [(c["external_id"], c["modified_by"]) for c in bodies] == [("W1", "connect"), ("W2", "connect"),
                                                                       ("W1", "tims-ui")]


async def test_webhook_retries_a_failing_receiver(tims: Tims, receiver: Receiver) -> None:
    receiver.fail_first = 2
    await tims.client.put("/__admin/webhook", json={"url": receiver.url, "secret": "s"})
    tims.store.upsert_customer("R1", name="retry me")
    status = (await tims.client.post("/__admin/webhook/drain")).json()
    assert (status["delivered"], status["attempts"], status["last_error"]) == (1, 3, "HTTP 500")
    delivery_ids = {h["X-TIMS-Delivery-Id"] for h, _ in receiver.deliveries}
    change_ids = {h["X-TIMS-Change-Id"] for h, _ in receiver.deliveries}
    assert len(receiver.deliveries) == 3 and len(delivery_ids) == 3 and len(change_ids) == 1


async def test_webhook_configured_at_start(receiver: Receiver) -> None:
    store = TimsStore()
    runner, url = await start_server("127.0.0.1", 0, store, Faults(), webhook_url=receiver.url,
                                     webhook_secret="boot-secret")
    try:
        store.upsert_customer("B1", name="at boot")
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.post("/__admin/webhook/drain")).json()["delivered"] == 1
    finally:
        await runner.cleanup()
    headers, body = receiver.deliveries[0]
    assert headers["X-TIMS-Signature"] == _expected_signature("boot-secret", headers["X-TIMS-Timestamp"], body)


# -- faults ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,status,code", [
    ("429", 429, "rate_limited"),
    ("503", 503, "service_unavailable"),
    ("lock", 409, "record_locked"),
    ("limit", 429, "quota_exceeded"),
])
async def test_each_fault_kind_renders_in_the_contract_shape(tims: Tims, kind: str, status: int, code: str) -> None:
    r = await tims.client.put("/__admin/faults", json={"error_rate": 1.0, "error_kinds": [kind], "retry_after": 2})
    assert r.status_code == 200
    r = await tims.client.post("/v1/customers/batch-upsert", json={"records": [customer("F1")]})
    assert r.status_code == status
    assert r.headers["Retry-After"] == "2"
    assert r.json()["error"]["code"] == code and r.json()["error"]["details"]["retry_after"] == 2
    assert tims.store.all("customers") == []  # nothing was written
    await tims.client.post("/__admin/faults/reset")
    assert (await tims.client.get("/v1/customers")).status_code == 200
    assert tims.faults.injected[kind] == 1


async def test_downtime_answers_503_until_it_ends(tims: Tims) -> None:
    r = await tims.client.post("/__admin/down", params={"seconds": 30})
    assert r.status_code == 200
    r = await tims.client.get("/v1/changes")
    assert r.status_code == 503 and r.json()["error"]["code"] == "service_unavailable"
    assert 29 <= int(r.headers["Retry-After"]) <= 30
    async with httpx.AsyncClient(base_url=tims.url) as anonymous:  # down before auth is even checked
        assert (await anonymous.get("/v1/customers")).status_code == 503
    await tims.client.post("/__admin/faults/reset")
    assert (await tims.client.get("/v1/changes")).status_code == 200


async def test_latency_fault_delays_requests(tims: Tims) -> None:
    await tims.client.put("/__admin/faults", json={"latency_ms": 200})
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await tims.client.get("/v1/customers")).status_code == 200
    assert loop.time() - start >= 0.2


async def test_admin_state_and_reset(tims: Tims) -> None:
    tims.store.upsert_customer("Z1", name="z")
    state = (await tims.client.get("/__admin/state")).json()
    assert state["counts"]["customers"] == 1 and state["changes"] == 1
    await tims.client.post("/__admin/reset")
    assert tims.store.all("customers") == [] and tims.store.changes == []


def test_upsert_by_a_new_external_id_adopts_the_unlinked_customer_with_that_email() -> None:
    from sandbox.tims import TimsStore

    store = TimsStore()
    entered = store.upsert_customer(name="Ada Lovelace", email="Ada@Example.com")
    [result] = store.batch_upsert("customers", [{"external_id": "003A", "name": "Ada Lovelace",
                                                  "email": "ada@example.com"}], modified_by="connect")
    assert result["success"] and result["created"] is False and result["id"] == entered["customer_id"]
    assert store.customer(entered["customer_id"])["external_id"] == "003A"
    [other] = store.batch_upsert("customers", [{"external_id": "003B", "name": "Someone Else",
                                                 "email": "ada@example.com"}], modified_by="connect")
    assert other["created"] is True  # the only candidate is linked now: no second adoption


# -- what the schemathesis fuzz found (docs/adr/0018) ------------------------------------------

async def test_undeclared_methods_are_405_with_allow(tims: Tims) -> None:
    r = await tims.client.get("/v1/customers/batch-upsert")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert r.json()["error"]["code"] == "method_not_allowed"
    r = await tims.client.request("TRACE", "/v1/changes")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    assert (await tims.client.get("/v1/customers/not-an-id")).status_code == 404


@pytest.mark.parametrize("query", [
    {"cursor": "x", "since": "2024-01-01T00:00:00Z"}, {"since": ""}, {"since": "2024-01-01"},
    {"since": "2024-01-01 00:00:00Z"}, {"cursor": ""}, {"limit": "1_0"}, {"limit": " 5"}, {"entity": ""},
    {"entity": "customer,"}, {"entity": "customer,lead"}, {"colour": "red"},
])
async def test_change_feed_refuses_what_its_parameters_do_not_allow(tims: Tims, query: dict[str, str]) -> None:
    r = await tims.client.get("/v1/changes", params=query)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize("since", ["0000-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
                                   "9999-12-31T23:59:60-01:00", "2024-02-29t12:00:00.123456789z"])
async def test_change_feed_takes_every_rfc3339_instant(tims: Tims, since: str) -> None:
    tims.store.upsert_customer("003D00000000001", name="Early")
    r = await tims.client.get("/v1/changes", params={"since": since})
    assert r.status_code == 200
    again = await tims.client.get("/v1/changes", params={"cursor": r.json()["next_cursor"]})
    assert again.status_code == 200


@pytest.mark.parametrize("body", [
    b'{"name": "A", "external_id": {}}', b'{"name": "A", "credit_limit": 1e400}', b'{"name": "A", "credit_limit": NaN}',
    b'{"name": "A", "credit_limit": ' + b"9" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000,
])
async def test_malformed_or_out_of_range_bodies_are_4xx_never_500(tims: Tims, body: bytes) -> None:
    r = await tims.client.post("/v1/customers", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422) and "error" in r.json()


async def test_computed_amounts_out_of_float_range_are_refused(tims: Tims) -> None:
    cid = tims.store.create("customers", {"name": "Big"})["customer_id"]
    item = tims.store.create("items", {"sku": "HUGE", "name": "Huge"})["item_id"]
    line = {"item_id": item, "quantity": 1e200, "unit_price": 1e200}
    r = await tims.client.post("/v1/sales_orders", json={"customer_id": cid, "lines": [line]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


async def test_a_patch_with_an_unknown_field_or_a_stale_version(tims: Tims) -> None:
    cid = tims.store.create("customers", {"name": "Patchy"})["customer_id"]
    r = await tims.client.patch(f"/v1/customers/{cid}", json={"colour": "red"}, headers={"If-Match": "9"})
    assert r.status_code == 422  # the shape is refused before the version is compared
    r = await tims.client.patch(f"/v1/customers/{cid}", json={"phone": "918-555-0100"}, headers={"If-Match": "9"})
    assert r.status_code == 412 and r.json()["error"]["details"]["current_version"] == 1


async def test_batch_records_that_are_not_objects_refuse_the_whole_batch(tims: Tims) -> None:
    r = await tims.client.post("/v1/customers/batch-upsert", json={"records": [customer("003E1"), "nope"]})
    assert r.status_code == 400 and r.json()["error"]["details"] == {"records": [1]}
    assert tims.store.all("customers") == []


async def test_stock_levels_per_item_and_location_carry_the_sku_and_what_is_available(tims: Tims) -> None:
    item = tims.store.create("items", {"sku": "AR-125", "name": "Argon 125"})["item_id"]
    made = await tims.client.post("/v1/stock_levels", json={"item_id": item, "location_id": "MAIN", "on_hand": 12,
                                                            "allocated": 3, "available": 99, "sku": "FORGED"})
    assert made.status_code == 201
    level = made.json()
    assert (level["stock_level_id"], level["sku"], level["available"], level["version"]) == ("STK000001", "AR-125", 9, 1)
    again = await tims.client.post("/v1/stock_levels", json={"item_id": item, "location_id": "MAIN", "on_hand": 1})
    assert again.status_code == 422
    assert again.json()["error"]["details"]["errors"][0]["code"] == "duplicate_value"
    assert (await tims.client.post("/v1/stock_levels", json={"item_id": item, "location_id": "EAST"})).status_code == 201
    assert (await tims.client.post("/v1/stock_levels", json={"item_id": "IT999999", "location_id": "EAST"})).status_code == 422

    tims.store.update("items", item, {"sku": "AR-125X"})  # the item's SKU changes: so do its levels
    levels = (await tims.client.get("/v1/stock_levels")).json()["records"]
    assert [(lv["sku"], lv["version"]) for lv in levels] == [("AR-125X", 2), ("AR-125X", 2)]
    feed = (await tims.client.get("/v1/changes", params={"entity": "stock_level"})).json()["changes"]
    assert [(c["id"], c["version"]) for c in feed] == [("STK000001", 1), ("STK000002", 1), ("STK000001", 2),
                                                       ("STK000002", 2)]

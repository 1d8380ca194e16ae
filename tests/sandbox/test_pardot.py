"""The Pardot v5 simulator: a real server on loopback, driven over HTTP as a v5 client would."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from sandbox.faults import Faults
from sandbox.pardot import PardotStore, start_server

BU = "0Uv5g000000XyZaCAK"
HEADERS = {"Authorization": "Bearer 00Dxx0000001gPF!token", "Pardot-Business-Unit-Id": BU}
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
PROSPECTS = "/api/v5/objects/prospects"


class Clock:
    """Pardot's clock, moved by hand: timestamps have second precision, so ties are easy."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Pardot:
    url: str
    store: PardotStore
    faults: Faults
    clock: Clock
    client: httpx.AsyncClient  # sends a token and the business-unit header


Start = Callable[..., Awaitable[Pardot]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start a simulator with the given server config (several per test are fine)."""
    opened: list[tuple[Any, httpx.AsyncClient]] = []

    async def _start(**config: Any) -> Pardot:
        clock = Clock()
        store, faults = PardotStore(clock=clock), Faults()
        runner, url = await start_server("127.0.0.1", 0, store, faults, **config)
        client = httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=10)
        opened.append((runner, client))
        return Pardot(url, store, faults, clock, client)

    yield _start
    for runner, client in opened:
        await client.aclose()
        await runner.cleanup()


@pytest.fixture
async def pardot(start: Start) -> Pardot:
    return await start()


def iso(moment: datetime) -> str:
    return moment.isoformat()


def assert_error(response: httpx.Response, status: int, code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == code and body["message"]


# -- prospects: query ----------------------------------------------------------------------------

async def test_query_returns_only_the_requested_fields_filtered_and_paged(pardot: Pardot) -> None:
    store, clock = pardot.store, pardot.clock
    for i in range(3):
        store.create_prospect(f"early{i}@example.com")
    clock.advance(10)
    for i in range(4):  # four prospects share one updatedAt second: pages must split the tie by id
        store.create_prospect(f"tie{i}@example.com", firstName=f"T{i}")
    clock.advance(10)
    for i in range(2):
        store.create_prospect(f"late{i}@example.com")

    params = {"fields": "id,email,updatedAt", "orderBy": "updatedAt", "limit": "3",
              "updatedAtAfterOrEqualTo": iso(T0 + timedelta(seconds=10))}
    r = await pardot.client.get(PROSPECTS, params=params)
    assert r.status_code == 200
    page = r.json()
    assert set(page) == {"values", "nextPageToken", "nextPageUrl"}
    values = list(page["values"])
    assert all(set(v) == {"id", "email", "updatedAt"} for v in values)
    pages = 1
    while page["nextPageUrl"]:
        assert page["nextPageUrl"].startswith(pardot.url) and page["nextPageToken"] in page["nextPageUrl"]
        page = (await pardot.client.get(page["nextPageUrl"])).json()
        values += page["values"]
        pages += 1
    assert pages == 2 and page["nextPageToken"] is None
    assert [v["email"] for v in values] == [f"tie{i}@example.com" for i in range(4)] + \
        ["late0@example.com", "late1@example.com"]
    assert values[0]["updatedAt"] == "2024-05-01T12:00:10+00:00"

    strict = await pardot.client.get(PROSPECTS, params={"fields": "email",
                                                         "updatedAtAfter": iso(T0 + timedelta(seconds=10))})
    assert [v["email"] for v in strict.json()["values"]] == ["late0@example.com", "late1@example.com"]
    newest = await pardot.client.get(PROSPECTS, params={"fields": "id", "orderBy": "updatedAt DESC", "limit": "1"})
    assert newest.json()["values"] == [{"id": values[-2]["id"]}]
    by_id = await pardot.client.get(PROSPECTS, params={"fields": "id", "idGreaterThan": str(values[-1]["id"] - 1)})
    assert by_id.json()["values"] == [{"id": values[-1]["id"]}]


async def test_a_prospect_updated_between_pages_is_seen_again_not_lost(pardot: Pardot) -> None:
    ids = [pardot.store.create_prospect(f"p{i}@example.com")["id"] for i in range(4)]
    first = (await pardot.client.get(PROSPECTS, params={"fields": "id", "orderBy": "updatedAt", "limit": "2"})).json()
    assert [v["id"] for v in first["values"]] == ids[:2]
    pardot.clock.advance(5)
    pardot.store.update_prospect(ids[0], company="Moved Inc")
    rest: list[int] = []
    url = first["nextPageUrl"]
    while url:
        page = (await pardot.client.get(url)).json()
        rest += [v["id"] for v in page["values"]]
        url = page["nextPageUrl"]
    assert rest == [ids[2], ids[3], ids[0]]


async def test_query_parameter_errors_use_pardot_codes(pardot: Pardot) -> None:
    pardot.store.create_prospect("x@example.com")
    cases: list[tuple[dict[str, str], int, int]] = [
        ({}, 400, 13),  # fields is required
        ({"fields": "id,favouriteColour"}, 400, 180),
        ({"fields": "id", "updatedAtAfter": "yesterday-ish"}, 400, 7),
        ({"fields": "id", "limit": "1001"}, 400, 23),
        ({"fields": "id", "orderBy": "email"}, 400, 19),
        ({"fields": "id", "frobnicate": "1"}, 400, 5),
        ({"fields": "id", "deleted": "maybe"}, 400, 27),
        ({"fields": "id", "idGreaterThan": "1", "email": "x@example.com", "createdAtAfter": iso(T0),
          "updatedAtBefore": iso(T0)}, 400, 209),
        ({"fields": "id", "nextPageToken": "garbage!!"}, 400, 211),
    ]
    for params, status, code in cases:
        assert_error(await pardot.client.get(PROSPECTS, params=params), status, code)
    for i in range(3):
        pardot.store.create_prospect(f"more{i}@example.com")
    page = (await pardot.client.get(PROSPECTS, params={"fields": "id", "limit": "2"})).json()
    assert_error(await pardot.client.get(PROSPECTS, params={"nextPageToken": page["nextPageToken"], "limit": "5"}),
                 400, 5)
    pardot.clock.advance(4 * 3600 + 1)
    assert_error(await pardot.client.get(PROSPECTS, params={"nextPageToken": page["nextPageToken"]}), 400, 210)


# -- prospects: writes ------------------------------------------------------------------------------

async def test_upsert_latest_by_email_creates_then_updates_the_same_prospect(pardot: Pardot) -> None:
    body = {"matchEmail": "ada@lovelace.example", "prospect": {"firstName": "Ada", "company": "Engines Ltd"},
            "fields": ["id", "email", "firstName", "lastName", "company", "createdAt", "updatedAt"]}
    created = await pardot.client.post(f"{PROSPECTS}/do/upsertLatestByEmail", json=body)
    assert created.status_code == 201
    first = created.json()
    assert (first["email"], first["firstName"], first["lastName"]) == ("ada@lovelace.example", "Ada", None)
    pardot.clock.advance(60)
    body["prospect"] = {"lastName": "Lovelace", "TIMS_Customer_ID__c": "C000042"}
    body["fields"] = ["id", "firstName", "lastName", "TIMS_Customer_ID__c", "createdAt", "updatedAt"]
    updated = await pardot.client.post(f"{PROSPECTS}/do/upsertLatestByEmail", json=body)
    assert updated.status_code == 200
    second = updated.json()
    assert second["id"] == first["id"] and second["firstName"] == "Ada" and second["lastName"] == "Lovelace"
    assert second["TIMS_Customer_ID__c"] == "C000042"
    assert second["createdAt"] == first["createdAt"] and second["updatedAt"] == "2024-05-01T12:01:00+00:00"
    assert len(pardot.store.prospects_by_email("ada@lovelace.example")) == 1
    assert pardot.store.get("prospects", first["id"])["updatedById"] == 1001  # the API user

    url = f"{PROSPECTS}/do/upsertLatestByEmail"
    assert_error(await pardot.client.post(url, json={"matchEmail": "not an email", "prospect": {}}), 400, 4)
    assert_error(await pardot.client.post(url, json={"prospect": {}}), 400, 153)
    assert_error(await pardot.client.post(url, json={"matchEmail": "a@b.example",
                                                     "prospect": {"salesforceId": "00Q000000000001"}}), 400, 180)
    assert_error(await pardot.client.post(url, json={"matchEmail": "a@b.example", "prospect": {"score": "high"}}),
                 400, 154)
    assert_error(await pardot.client.post(url, content=b"{oops", headers={"Content-Type": "application/json"}),
                 400, 150)


async def test_upsert_picks_the_latest_activity_and_undeletes_a_recycled_match(start: Start) -> None:
    pardot = await start()
    pardot.store.ampsea = True  # a business unit that allows two prospects with one email
    older = pardot.store.create_prospect("twin@example.com")
    newer = pardot.store.create_prospect("twin@example.com")
    pardot.clock.advance(5)
    pardot.store.add_visitor_activity(older["id"], 2, "View", "pricing page")
    r = await pardot.client.post(f"{PROSPECTS}/do/upsertLatestByEmail",
                                 json={"matchEmail": "twin@example.com", "prospect": {"jobTitle": "Buyer"}})
    assert r.json() == {"id": older["id"]} and pardot.store.get("prospects", newer["id"])["jobTitle"] is None

    gone = pardot.store.create_prospect("gone@example.com")
    pardot.store.delete("prospects", gone["id"])
    r = await pardot.client.post(f"{PROSPECTS}/do/upsertLatestByEmail",
                                 json={"matchEmail": "gone@example.com", "prospect": {}, "fields": ["id", "isDeleted"]})
    assert r.status_code == 200 and r.json() == {"id": gone["id"], "isDeleted": False}


async def test_prospect_create_read_update_delete(pardot: Pardot) -> None:
    r = await pardot.client.post(PROSPECTS, params={"fields": "id,email,score"},
                                 json={"email": "crud@example.com", "firstName": "Cru", "score": 12})
    assert r.status_code == 201
    pid = r.json()["id"]
    assert r.json() == {"id": pid, "email": "crud@example.com", "score": 12}
    assert r.headers["Location"].endswith(f"{PROSPECTS}/{pid}")
    assert_error(await pardot.client.post(PROSPECTS, json={"email": "crud@example.com"}), 400, 54)
    assert_error(await pardot.client.post(PROSPECTS, json={"firstName": "No email"}), 400, 153)

    read = await pardot.client.get(f"{PROSPECTS}/{pid}", params={"fields": "firstName,salesforceId,isDeleted"})
    assert read.json() == {"firstName": "Cru", "salesforceId": None, "isDeleted": False}
    assert_error(await pardot.client.get(f"{PROSPECTS}/{pid}"), 400, 13)

    r = await pardot.client.patch(f"{PROSPECTS}/{pid}", json={"grade": "B+"})
    assert r.status_code == 204
    r = await pardot.client.patch(f"{PROSPECTS}/{pid}", params={"fields": "grade,phone"}, json={"phone": "918-555-0142"})
    assert r.status_code == 200 and r.json() == {"grade": "B+", "phone": "918-555-0142"}
    assert_error(await pardot.client.patch(f"{PROSPECTS}/{pid}", json={"id": 5}), 400, 180)

    assert (await pardot.client.delete(f"{PROSPECTS}/{pid}")).status_code == 204
    assert_error(await pardot.client.get(f"{PROSPECTS}/{pid}", params={"fields": "id"}), 404, 192)
    assert_error(await pardot.client.patch(f"{PROSPECTS}/{pid}", json={"grade": "A"}), 400, 219)
    recycled = await pardot.client.get(f"{PROSPECTS}/{pid}", params={"fields": "id,isDeleted", "deleted": "true"})
    assert recycled.json() == {"id": pid, "isDeleted": True}
    listed = await pardot.client.get(PROSPECTS, params={"fields": "id,isDeleted", "deleted": "all"})
    assert listed.json()["values"] == [{"id": pid, "isDeleted": True}]
    assert (await pardot.client.get(PROSPECTS, params={"fields": "id"})).json()["values"] == []
    assert_error(await pardot.client.get(f"{PROSPECTS}/99999", params={"fields": "id"}), 404, 192)


async def test_null_clears_a_prospect_field(pardot: Pardot) -> None:
    pid = pardot.store.create_prospect("clear@example.com", phone="918-555-0142", city="Tulsa")["id"]
    pardot.clock.advance(5)
    r = await pardot.client.patch(f"{PROSPECTS}/{pid}", params={"fields": "phone,city,updatedAt"}, json={"phone": None})
    assert r.status_code == 200
    assert r.json() == {"phone": None, "city": "Tulsa", "updatedAt": iso(T0 + timedelta(seconds=5))}
    pardot.clock.advance(5)
    r = await pardot.client.patch(f"{PROSPECTS}/{pid}", params={"fields": "updatedAt"}, json={"phone": None})
    assert r.json() == {"updatedAt": iso(T0 + timedelta(seconds=5))}  # already empty: nothing changed


async def test_crm_ids_are_set_by_the_connector_not_the_api(pardot: Pardot) -> None:
    pid = pardot.store.create_prospect("lead@example.com")["id"]
    r = await pardot.client.post(f"/__admin/prospects/{pid}/crm", json={"lead_id": "00Q5g00000AbCdEAAV"})
    assert r.json()["salesforceId"] == "00Q5g00000AbCdEAAV" == r.json()["salesforceLeadId"]
    pardot.store.link_crm(pid, contact_id="0035g00000XyZaBAAV", account_id="0015g00000QwErTAAV")
    fields = "salesforceId,salesforceLeadId,salesforceContactId,salesforceAccountId"
    read = (await pardot.client.get(f"{PROSPECTS}/{pid}", params={"fields": fields})).json()
    assert read == {"salesforceId": "0035g00000XyZaBAAV", "salesforceLeadId": "00Q5g00000AbCdEAAV",
                    "salesforceContactId": "0035g00000XyZaBAAV", "salesforceAccountId": "0015g00000QwErTAAV"}
    ui = await pardot.client.patch(f"/__admin/prospects/{pid}", json={"score": 77, "grade": "A"})
    assert (ui.json()["score"], ui.json()["updatedById"]) == (77, 1000)


# -- lists and list memberships ----------------------------------------------------------------------

async def test_lists_and_list_memberships(pardot: Pardot) -> None:
    prospect = pardot.store.create_prospect("member@example.com")["id"]
    other = pardot.store.create_prospect("other@example.com")["id"]
    r = await pardot.client.post("/api/v5/objects/lists", params={"fields": "id,name,isDynamic"},
                                 json={"name": "Welding Expo 2024", "isPublic": True})
    assert r.status_code == 201 and r.json()["name"] == "Welding Expo 2024" and r.json()["isDynamic"] is False
    list_id = r.json()["id"]
    memberships = "/api/v5/objects/list-memberships"
    r = await pardot.client.post(memberships, params={"fields": "id,listId,prospectId,optedOut"},
                                 json={"listId": list_id, "prospectId": prospect})
    assert r.status_code == 201 and r.json()["listId"] == list_id and r.json()["optedOut"] is False
    membership = r.json()["id"]
    await pardot.client.post(memberships, json={"listId": list_id, "prospectId": other})
    assert_error(await pardot.client.post(memberships, json={"listId": list_id, "prospectId": prospect}), 400, 58)
    assert_error(await pardot.client.post(memberships, json={"listId": 1, "prospectId": prospect}), 400, 55)
    assert_error(await pardot.client.post(memberships, json={"listId": list_id, "prospectId": 7}), 400, 3)

    r = await pardot.client.get(memberships, params={"fields": "prospectId", "listId": str(list_id)})
    assert sorted(v["prospectId"] for v in r.json()["values"]) == sorted([prospect, other])
    r = await pardot.client.patch(f"{memberships}/{membership}", params={"fields": "optedOut"}, json={"optedOut": True})
    assert r.json() == {"optedOut": True}
    assert_error(await pardot.client.patch(f"{memberships}/{membership}", json={"listId": 5}), 400, 180)

    pardot.clock.advance(30)
    assert (await pardot.client.delete(f"{memberships}/{membership}")).status_code == 204
    live = await pardot.client.get(memberships, params={"fields": "prospectId", "prospectId": str(prospect)})
    assert live.json()["values"] == []
    changed = await pardot.client.get(memberships, params={
        "fields": "id,isDeleted,updatedAt", "deleted": "all", "updatedAtAfter": iso(T0)})
    assert changed.json()["values"] == [{"id": membership, "isDeleted": True, "updatedAt": "2024-05-01T12:00:30+00:00"}]
    assert [m["prospectId"] for m in pardot.store.memberships(list_id)] == [other]


# -- visitor activities and website forms --------------------------------------------------------------

async def test_visitor_activities_are_queried_by_updated_at(pardot: Pardot) -> None:
    pid = pardot.store.create_prospect("va@example.com")["id"]
    pardot.store.add_visitor_activity(pid, 2, "View", "home page")
    pardot.clock.advance(120)
    r = await pardot.client.post("/__admin/visitor-activities",
                                 json={"prospectId": pid, "type": 1, "typeName": "Click", "details": "cart: 2 x ARG-300"})
    assert r.status_code == 201
    query = {"fields": "id,prospectId,type,typeName,details,updatedAt", "orderBy": "updatedAt",
             "updatedAtAfter": iso(T0 + timedelta(seconds=60)), "prospectId": str(pid)}
    values = (await pardot.client.get("/api/v5/objects/visitor-activities", params=query)).json()["values"]
    assert values == [{"id": r.json()["id"], "prospectId": pid, "type": 1, "typeName": "Click",
                       "details": "cart: 2 x ARG-300", "updatedAt": "2024-05-01T12:02:00+00:00"}]
    everything = (await pardot.client.get("/api/v5/objects/visitor-activities", params={"fields": "typeName"})).json()
    assert [v["typeName"] for v in everything["values"]] == ["View", "Click"]
    assert pardot.store.get("prospects", pid)["lastActivityAt"] == T0 + timedelta(seconds=120)
    assert_error(await pardot.client.post("/api/v5/objects/visitor-activities", json={}), 405, 60)


async def test_form_handler_submission_captures_a_website_lead(pardot: Pardot) -> None:
    form = {"email": "new.lead@shop.example", "first_name": "New", "Last-Name": "Lead", "company": "Shop Co",
            "phone": "918-555-0199", "utm_junk": "ignored"}
    r = await pardot.client.post("/l/876543/2024-05-01/website-lead", data=form, headers={"Authorization": ""})
    assert r.status_code == 404  # the handler path is /l/<account>/<handler>
    r = await pardot.client.post("/l/876543/website-lead", data=form)
    assert r.status_code == 200 and r.json()["success"] is True
    pid = r.json()["prospectId"]
    fields = "email,firstName,lastName,company,phone,score,source,lastActivityAt"
    prospect = (await pardot.client.get(f"{PROSPECTS}/{pid}", params={"fields": fields})).json()
    assert prospect == {"email": "new.lead@shop.example", "firstName": "New", "lastName": "Lead",
                        "company": "Shop Co", "phone": "918-555-0199", "score": 50, "source": "Website",
                        "lastActivityAt": "2024-05-01T12:00:00+00:00"}
    activities = (await pardot.client.get("/api/v5/objects/visitor-activities",
                                          params={"fields": "prospectId,type,typeName,details,formHandlerId"})).json()
    assert activities["values"] == [{"prospectId": pid, "type": 4, "typeName": "Form Handler",
                                     "details": "website-lead", "formHandlerId": 5001}]

    pardot.clock.advance(3600)
    again, _ = pardot.store.submit_form("new.lead@shop.example", {"jobTitle": "Owner"}, handler="website-lead",
                                        account="876543")
    assert again["id"] == pid and again["score"] == 100 and again["jobTitle"] == "Owner" and again["firstName"] == "New"
    assert len(pardot.store.prospects_by_email("new.lead@shop.example")) == 1
    assert_error(await pardot.client.post("/l/876543/website-lead", data={"first_name": "Nobody"}), 400, 215)
    assert_error(await pardot.client.get("/l/876543/website-lead", params={"email": "bad@"}), 400, 4)


async def test_form_handler_redirects_when_a_success_location_is_set(start: Start) -> None:
    pardot = await start(success_location="https://www.example.com/thanks")
    r = await pardot.client.post("/l/1/contact-us", data={"email": "r@example.com"})
    assert r.status_code == 302 and r.headers["Location"] == "https://www.example.com/thanks"
    assert pardot.store.prospects_by_email("r@example.com")[0]["score"] == 50


# -- headers, tokens, limits ----------------------------------------------------------------------------

async def test_business_unit_header_and_token_are_required(start: Start) -> None:
    pardot = await start(business_unit_ids=[BU])
    q = {"fields": "id"}
    assert_error(await pardot.client.get(PROSPECTS, params=q, headers={"Pardot-Business-Unit-Id": ""}), 400, 181)
    assert_error(await pardot.client.get(PROSPECTS, params=q, headers={"Pardot-Business-Unit-Id": "12345"}), 400, 182)
    assert_error(await pardot.client.get(PROSPECTS, params=q, headers={"Pardot-Business-Unit-Id": "0Uv000000000001AAA"}),
                 400, 201)
    assert_error(await pardot.client.get(PROSPECTS, params=q, headers={"Authorization": ""}), 401, 184)
    assert_error(await pardot.client.get(PROSPECTS, params=q, headers={"Authorization": "Basic abc"}), 401, 184)
    assert (await pardot.client.get(PROSPECTS, params=q)).status_code == 200


async def test_an_injected_token_validator_decides(start: Start) -> None:
    async def salesforce_knows(token: str) -> bool:
        await asyncio.sleep(0)
        return token == "good-token"

    pardot = await start(token_validator=salesforce_knows)
    q = {"fields": "id"}
    assert_error(await pardot.client.get(PROSPECTS, params=q), 401, 184)
    ok = await pardot.client.get(PROSPECTS, params=q, headers={"Authorization": "Bearer good-token"})
    assert ok.status_code == 200

    sync = await start(token_validator=lambda token: token.startswith("00D"))
    assert (await sync.client.get(PROSPECTS, params=q)).status_code == 200


async def test_expired_tokens_are_refused_until_a_new_one_comes(pardot: Pardot) -> None:
    q = {"fields": "id"}
    assert (await pardot.client.get(PROSPECTS, params=q)).status_code == 200
    assert (await pardot.client.post("/__admin/expire-tokens")).status_code == 200
    assert_error(await pardot.client.get(PROSPECTS, params=q), 401, 184)
    await asyncio.sleep(0.01)
    fresh = await pardot.client.get(PROSPECTS, params=q, headers={"Authorization": "Bearer a-refreshed-token"})
    assert fresh.status_code == 200


async def test_a_sixth_concurrent_request_gets_error_66(pardot: Pardot) -> None:
    await pardot.client.put("/__admin/faults", json={"latency_ms": 1500})
    other_unit = {**HEADERS, "Pardot-Business-Unit-Id": "0Uv5g000000AbCdCAK"}
    calls = [pardot.client.get(PROSPECTS, params={"fields": "id"}) for _ in range(8)]
    calls += [pardot.client.get(PROSPECTS, params={"fields": "id"}, headers=other_unit)]
    responses = await asyncio.gather(*calls)
    outcome = Counter((r.status_code, r.json().get("code") if isinstance(r.json(), dict) else None) for r in responses)
    assert outcome == Counter({(200, None): 6, (429, 66): 3})
    assert responses[-1].status_code == 200  # the limit is per business unit
    limits = (await pardot.client.get("/__admin/limits")).json()
    assert limits["in_flight"] == {BU: 0, "0Uv5g000000AbCdCAK": 0} and limits["max_concurrent"] == 5
    await pardot.client.post("/__admin/faults/reset")
    assert (await pardot.client.get(PROSPECTS, params={"fields": "id"})).status_code == 200


async def test_daily_quota_gives_122_until_the_next_day(start: Start) -> None:
    pardot = await start(daily_limit=3)
    q = {"fields": "id"}
    usage = []
    for _ in range(3):
        r = await pardot.client.get(PROSPECTS, params=q, headers={"X-Return-Api-Usage": "true"})
        assert r.status_code == 200
        usage.append(r.headers["x-api-usage"])
    assert usage == ["1/3", "2/3", "3/3"]
    assert_error(await pardot.client.get(PROSPECTS, params=q), 429, 122)
    r = await pardot.client.post("/l/1/form", data={"email": "still@works.example"})
    assert r.status_code == 200  # form handlers are the website, not the API
    pardot.clock.advance(24 * 3600)
    assert (await pardot.client.get(PROSPECTS, params=q)).status_code == 200
    r = await pardot.client.put("/__admin/limits", json={"daily_limit": 1})
    assert r.json()["daily_limit"] == 1 and r.json()["used_today"] == 1
    assert_error(await pardot.client.get(PROSPECTS, params=q), 429, 122)
    await pardot.client.post("/__admin/limits/reset-usage")
    assert (await pardot.client.get(PROSPECTS, params=q)).status_code == 200


@pytest.mark.parametrize("kind,status,code", [
    ("429", 429, 66),
    ("503", 503, 183),
    ("lock", 409, 62),
    ("limit", 429, 122),
])
async def test_each_fault_kind_renders_as_a_pardot_error(pardot: Pardot, kind: str, status: int, code: int) -> None:
    await pardot.client.put("/__admin/faults", json={"error_rate": 1.0, "error_kinds": [kind], "paths": ["/api/v5/"]})
    r = await pardot.client.post(f"{PROSPECTS}/do/upsertLatestByEmail",
                                 json={"matchEmail": "f@example.com", "prospect": {}})
    assert_error(r, status, code)
    assert "Retry-After" not in r.headers  # Pardot sends none unless the fault names one
    assert pardot.store.prospects_by_email("f@example.com") == []
    assert pardot.faults.injected[kind] == 1


async def test_downtime_fails_api_and_forms_alike(pardot: Pardot) -> None:
    await pardot.client.post("/__admin/down", params={"seconds": 20})
    r = await pardot.client.get(PROSPECTS, params={"fields": "id"})
    assert_error(r, 503, 183)
    assert 19 <= int(r.headers["Retry-After"]) <= 20
    assert_error(await pardot.client.post("/l/1/form", data={"email": "d@example.com"}), 503, 183)
    await pardot.client.post("/__admin/faults/reset")
    assert (await pardot.client.get(PROSPECTS, params={"fields": "id"})).status_code == 200


async def test_admin_state_lists_every_object(pardot: Pardot) -> None:
    prospect, _ = pardot.store.submit_form("s@example.com", {"firstName": "S"})
    pardot.store.add_to_list(pardot.store.create_list("L")["id"], prospect["id"])
    state = (await pardot.client.get("/__admin/state")).json()
    assert state["counts"] == {"prospects": 1, "lists": 1, "list-memberships": 1, "custom-redirects": 0,
                               "visitor-activities": 1}
    assert state["records"]["prospects"][0]["email"] == "s@example.com"
    await pardot.client.post("/__admin/reset")
    assert pardot.store.snapshot()["counts"]["prospects"] == 0


async def test_custom_redirects_need_a_name_campaign_and_full_url_and_get_a_tracked_url(pardot: Pardot) -> None:
    base = "/api/v5/objects/custom-redirects"
    missing = await pardot.client.post(base, params={"fields": "id"}, json={"name": "Argon", "destinationUrl":
                                                                            "https://shop.example.com/products/argon"})
    assert_error(missing, 400, 153)
    relative = await pardot.client.post(base, params={"fields": "id"}, json={"name": "Argon", "campaignId": 7,
                                                                             "destinationUrl": "/products/argon"})
    assert_error(relative, 400, 154)
    made = await pardot.client.post(base, params={"fields": "id,url,folderId"}, json={
        "name": "Argon", "campaignId": 7, "destinationUrl": "https://shop.example.com/products/argon", "folderId": 11})
    assert made.status_code == 201 and made.json()["url"].startswith("https://go.connect-sandbox.test/l/")
    assert_error(await pardot.client.patch(f"{base}/{made.json()['id']}", params={"fields": "id"},
                                           json={"url": "https://elsewhere.example.com/"}), 400, 180)
    names = await pardot.client.get(base, params={"fields": "id,name", "orderBy": "id"})
    assert [r["name"] for r in names.json()["values"]] == ["Argon"]

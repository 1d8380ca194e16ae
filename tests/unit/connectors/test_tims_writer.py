"""TimsWriter: batches of ≤200 by external_id, per-record outcomes, order, whole-call failures."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from connectors.envelope import SinkCommand
from connectors.errors import FatalError
from connectors.retry import RetryPolicy
from connectors.tims.client import TimsClient
from connectors.tims.config import TimsConfig
from connectors.tims.writer import TimsWriter


def command(key_value: str, operation: str = "upsert", key: str = "external_id", **fields: Any) -> SinkCommand:
    return SinkCommand(system="tims", object="customer", operation=operation, external_id_field=key,
                       external_id=key_value, fields=fields or {"name": f"N {key_value}"}, version=1,
                       record_key=f"key-{key_value}")


class FakeTims:
    """Batch upsert that fails records without a name, plus by-id routes; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.ids: dict[str, str] = {}
        self.status = 200

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, request.url.path, body))
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"code": "unauthorized", "message": "no"}})
        if request.url.path.endswith("/batch-upsert"):
            return httpx.Response(200, json={"results": [self._upsert(i, r) for i, r in enumerate(body["records"])]})
        if request.url.path.startswith("/v1/customers/by-external-id/"):
            ext = request.url.path.rsplit("/", 1)[1]
            if ext in self.ids:
                return httpx.Response(200, json={"customer_id": self.ids[ext], "external_id": ext})
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})
        if request.method == "PATCH":
            if request.url.path.endswith("C404"):
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such record"}})
            return httpx.Response(200, json={"customer_id": request.url.path.rsplit("/", 1)[1], **body})
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    def _upsert(self, index: int, record: dict[str, Any]) -> dict[str, Any]:
        ext = record["external_id"]
        if not record.get("name"):
            return {"index": index, "success": False, "external_id": ext,
                    "error": {"code": "validation_error", "message": "name is required", "field": "name"}}
        if record.get("segment_ids"):
            return {"index": index, "success": False, "external_id": ext,
                    "error": {"code": "unknown_reference", "message": "segment missing", "field": "segment_ids[0]"}}
        created = ext not in self.ids
        self.ids.setdefault(ext, f"C{len(self.ids) + 1:06d}")
        return {"index": index, "success": True, "external_id": ext, "id": self.ids[ext], "created": created,
                "changed": True, "version": 1}

    def batches(self) -> list[int]:
        return [len(body["records"]) for method, path, body in self.calls if path.endswith("/batch-upsert")]


def writer(fake: FakeTims) -> TimsWriter:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    config = TimsConfig(base_url="https://tims.example", api_key="k")
    return TimsWriter(config, client=TimsClient(config, policy=RetryPolicy(max_attempts=1), http=http))


async def test_upserts_go_out_in_batches_of_at_most_200_with_one_outcome_each() -> None:
    fake = FakeTims()
    commands = [command(f"001A{i:05d}") for i in range(450)]
    outcomes = await writer(fake).write(commands)
    assert fake.batches() == [200, 200, 50]
    assert [o.command for o in outcomes] == commands
    assert all(o.ok and o.created for o in outcomes)
    assert outcomes[0].target_id == "C000001" and outcomes[-1].target_id == "C000450"


async def test_record_errors_are_outcomes_validation_final_and_missing_references_retryable() -> None:
    fake = FakeTims()
    good, bad, dangling = command("001A"), command("001B", name=""), command("001C", name="C", segment_ids=["SEG9"])
    ok, invalid, later = await writer(fake).write([good, bad, dangling])
    assert ok.ok and ok.target_id == "C000001"
    assert (invalid.ok, invalid.retryable, invalid.error_code) == (False, False, "validation_error")
    assert "(name)" in (invalid.error or "")
    assert (later.ok, later.retryable, later.error_code) == (False, True, "unknown_reference")


async def test_the_same_record_twice_keeps_its_tims_id() -> None:
    fake = FakeTims()
    first = await writer(fake).write([command("001A")])
    again = await writer(fake).write([command("001A", name="Renamed")])
    assert first[0].target_id == again[0].target_id == "C000001"
    assert (first[0].created, again[0].created) == (True, False)


async def test_commands_by_tims_id_and_deletes_keep_their_place_in_the_batch() -> None:
    fake = FakeTims()
    fake.ids["001Z"] = "C000099"
    commands = [command("001A"), command("C000007", key="customer_id", external_id="001Q"),
                command("001B"), command("001Z", operation="delete"), command("001Y", operation="delete")]
    outcomes = await writer(fake).write(commands)
    assert [(m, p) for m, p, _ in fake.calls] == [
        ("POST", "/v1/customers/batch-upsert"), ("PATCH", "/v1/customers/C000007"),
        ("POST", "/v1/customers/batch-upsert"), ("GET", "/v1/customers/by-external-id/001Z"),
        ("DELETE", "/v1/customers/C000099"), ("GET", "/v1/customers/by-external-id/001Y"),
    ]
    assert fake.calls[1][2] == {"external_id": "001Q"}
    assert [o.ok for o in outcomes] == [True] * 5
    assert outcomes[1].target_id == "C000007" and outcomes[3].target_id == "C000099"
    assert outcomes[4].target_id is None, "deleting what is gone is done"


async def test_a_missing_record_by_tims_id_is_a_final_outcome() -> None:
    [outcome] = await writer(FakeTims()).write([command("C404", key="customer_id", name="X")])
    assert (outcome.ok, outcome.retryable, outcome.error_code) == (False, False, "not_found")


async def test_unknown_objects_and_keys_are_refused_per_command() -> None:
    odd = SinkCommand(system="tims", object="widget", external_id_field="external_id", external_id="1",
                      version=1, record_key="k")
    by_email = command("ada@example.com", key="email")
    unknown, unsupported = await writer(FakeTims()).write([odd, by_email])
    assert unknown.error_code == "unknown_object"
    assert unsupported.error_code == "unsupported_key" and not unsupported.retryable


async def test_a_rejected_api_key_fails_the_whole_call() -> None:
    fake = FakeTims()
    fake.status = 401
    with pytest.raises(FatalError, match="CONNECT_TIMS_API_KEY"):
        await writer(fake).write([command("001A")])

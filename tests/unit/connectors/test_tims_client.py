"""The TIMS client against an in-process fake (httpx.MockTransport): errors at the boundary."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors.errors import FatalError, RetryableError
from connectors.retry import RetryPolicy
from connectors.tims.client import MAX_BATCH, TimsClient
from connectors.tims.config import TimsConfig

BASE = "https://tims.example"
KEY = "k-123-secret"


def error(status: int, code: str, message: str = "nope", retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(status, json={"error": {"code": code, "message": message, "details": {}}}, headers=headers)


class FakeTims:
    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answers:
            return self.answers.pop(0)
        return httpx.Response(200, json={"changes": [], "next_cursor": "c0", "has_more": False})


def client(fake: FakeTims, attempts: int = 3) -> TimsClient:
    config = TimsConfig(base_url=BASE, api_key=KEY, client_name="connect")
    return TimsClient(config, policy=RetryPolicy(max_attempts=attempts, base_delay=0.001, max_delay=0.01),
                      http=httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)))


async def test_calls_carry_the_api_key_and_page_the_feed_by_cursor_or_since() -> None:
    fake = FakeTims()
    tims = client(fake)
    page = await tims.changes(cursor="abc", limit=50, entities=["customer", "invoice"])
    await tims.changes(since="2026-01-01T00:00:00.000Z")
    first, second = fake.requests
    assert first.headers["Authorization"] == f"Bearer {KEY}"
    assert "connect" in first.headers["User-Agent"]
    assert dict(first.url.params) == {"cursor": "abc", "limit": "50", "entity": "customer,invoice"}
    assert dict(second.url.params) == {"since": "2026-01-01T00:00:00.000Z", "limit": "100"}
    assert page.next_cursor == "c0" and page.has_more is False


async def test_429_and_503_are_retried_with_retry_after_then_succeed() -> None:
    fake = FakeTims(error(429, "rate_limited", retry_after="0"), error(503, "service_unavailable", retry_after="0"))
    tims = client(fake)
    page = await tims.changes()
    assert page.changes == [] and len(fake.requests) == 3
    assert tims.stats.retries == 2


async def test_retryable_error_carries_the_code_and_retry_after_when_attempts_run_out() -> None:
    fake = FakeTims(*[error(503, "service_unavailable", retry_after="0")] * 2)
    with pytest.raises(RetryableError) as caught:
        await client(fake, attempts=2).changes()
    assert caught.value.code == "service_unavailable" and caught.value.retry_after == 0
    assert caught.value.status == 503


async def test_record_locked_is_retryable() -> None:
    fake = FakeTims(error(409, "record_locked", retry_after="0"),
                    httpx.Response(200, json={"results": [{"index": 0, "success": True, "id": "C000001",
                                                           "created": True, "changed": True, "version": 1}]}))
    [result] = await client(fake).batch_upsert("customer", [{"external_id": "001A", "name": "A"}])
    assert result.success and result.id == "C000001" and len(fake.requests) == 2


async def test_401_is_fatal_at_once_and_names_the_setting_without_the_key() -> None:
    fake = FakeTims(error(401, "unauthorized", "Missing or unknown API key"))
    with pytest.raises(FatalError) as caught:
        await client(fake).changes()
    assert len(fake.requests) == 1, "an API key cannot be refreshed: no retry"
    assert "CONNECT_TIMS_API_KEY" in str(caught.value) and KEY not in str(caught.value)
    assert caught.value.code == "unauthorized"


async def test_other_4xx_are_fatal_with_the_contract_code() -> None:
    fake = FakeTims(error(400, "invalid_cursor", "The cursor is not one this server issued"))
    with pytest.raises(FatalError) as caught:
        await client(fake).changes(cursor="bogus")
    assert caught.value.code == "invalid_cursor" and caught.value.status == 400


async def test_transport_errors_are_retryable() -> None:
    calls = []

    def broken(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    config = TimsConfig(base_url=BASE, api_key=KEY)
    tims = TimsClient(config, policy=RetryPolicy(max_attempts=2, base_delay=0.001),
                      http=httpx.AsyncClient(transport=httpx.MockTransport(broken)))
    with pytest.raises(RetryableError):
        await tims.changes()
    assert len(calls) == 2


async def test_batch_upsert_posts_records_and_reads_each_result() -> None:
    body = {"results": [
        {"index": 1, "success": False, "external_id": "001B",
         "error": {"code": "validation_error", "message": "name is required", "field": "name"}},
        {"index": 0, "success": True, "external_id": "001A", "id": "C000007", "created": False, "changed": False,
         "version": 3},
    ]}
    fake = FakeTims(httpx.Response(200, json=body))
    ok, bad = await client(fake).batch_upsert("customer", [{"external_id": "001A", "name": "A"},
                                                            {"external_id": "001B"}])
    request = fake.requests[0]
    assert request.method == "POST" and request.url.path == "/v1/customers/batch-upsert"
    assert json.loads(request.content)["records"][1] == {"external_id": "001B"}
    assert (ok.id, ok.created, ok.changed, ok.version) == ("C000007", False, False, 3)
    assert (bad.success, bad.error_code, bad.error_field) == (False, "validation_error", "name")


async def test_batch_upsert_refuses_more_than_the_contract_allows() -> None:
    with pytest.raises(ValueError):
        await client(FakeTims()).batch_upsert("customer", [{"external_id": str(i)} for i in range(MAX_BATCH + 1)])


async def test_reads_by_id_and_external_id_answer_none_when_missing() -> None:
    fake = FakeTims(error(404, "not_found"), httpx.Response(200, json={"customer_id": "C000001"}))
    tims = client(fake)
    assert await tims.get_by_external_id("customer", "001/odd id") is None
    assert await tims.get("customer", "C000001") == {"customer_id": "C000001"}
    assert fake.requests[0].url.raw_path == b"/v1/customers/by-external-id/001%2Fodd%20id"


async def test_unknown_entity_is_refused_before_any_call() -> None:
    fake = FakeTims()
    with pytest.raises(ValueError, match="unknown TIMS entity"):
        await client(fake).list_page("widget")
    assert fake.requests == []

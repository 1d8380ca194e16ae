"""The Pardot client against a fake (httpx.MockTransport): headers, token refresh, limits."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from connectors.budget import ApiBudget
from connectors.errors import FatalError, QuotaExhaustedError, RetryableError
from connectors.pardot.client import DailyUsage, PardotClient
from connectors.pardot.config import PardotConfig
from connectors.retry import RetryPolicy
from tests.support.tokens import Tokens

BU = "0Uv5e0000000001AAA"


def pardot_error(status: int, code: int, message: str = "no", retry_after: str | None = None) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message},
                          headers={"Retry-After": retry_after} if retry_after else {})


class FakePardot:
    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.delay = 0.0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.answers:
            return self.answers.pop(0)
        return httpx.Response(200, json={"values": [], "nextPageToken": None})


def client(fake: FakePardot, tokens: Tokens | None = None, daily_limit: int = 25_000,
           budget: ApiBudget | None = None) -> PardotClient:
    config = PardotConfig(base_url="https://pi.example", business_unit_id=BU, daily_limit=daily_limit)
    return PardotClient(config, tokens or Tokens(), budget,
                        policy=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01),
                        http=httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)))


async def test_every_call_carries_the_salesforce_token_and_the_business_unit() -> None:
    fake = FakePardot()
    pages = [page async for page in client(fake).query("prospects", ["id", "email"], {"orderBy": "updatedAt"})]
    assert pages == [[]]
    [request] = fake.requests
    assert request.headers["Authorization"] == "Bearer tok1"
    assert request.headers["Pardot-Business-Unit-Id"] == BU
    assert request.url.path == "/api/v5/objects/prospects"
    assert dict(request.url.params) == {"fields": "id,email", "limit": "200", "orderBy": "updatedAt"}


async def test_query_follows_next_page_tokens_with_fields_only() -> None:
    fake = FakePardot(httpx.Response(200, json={"values": [{"id": 1}], "nextPageToken": "p2"}),
                      httpx.Response(200, json={"values": [{"id": 2}], "nextPageToken": None}))
    pages = [page async for page in client(fake).query("prospects", ["id"], {"updatedAtAfterOrEqualTo": "x"})]
    assert pages == [[{"id": 1}], [{"id": 2}]]
    assert dict(fake.requests[1].url.params) == {"nextPageToken": "p2", "fields": "id"}


async def test_an_invalid_token_is_refreshed_once_then_the_call_succeeds() -> None:
    tokens = Tokens()
    fake = FakePardot(pardot_error(401, 184, "access_token is invalid"))
    await client(fake, tokens).read("prospects", 1001, ["id"])
    assert tokens.refreshes == 1
    assert [r.headers["Authorization"] for r in fake.requests] == ["Bearer tok1", "Bearer tok2"]


async def test_a_token_rejected_after_two_refreshes_is_fatal() -> None:
    fake = FakePardot(pardot_error(401, 184), pardot_error(401, 184), pardot_error(401, 184))
    with pytest.raises(FatalError):
        await client(fake).read("prospects", 1001, ["id"])


async def test_the_concurrency_limit_is_retried_and_the_daily_limit_stops_at_once() -> None:
    fake = FakePardot(pardot_error(429, 66, retry_after="0"))
    pardot = client(fake)
    await pardot.read("prospects", 1, ["id"])
    assert pardot.stats.retries == 1
    fake.answers = [pardot_error(429, 122, "Daily API rate limit met")]
    with pytest.raises(QuotaExhaustedError) as caught:
        await pardot.read("prospects", 1, ["id"])
    assert caught.value.code == "122"
    assert pardot.budget.exhausted(), "the budget now holds further calls"


async def test_outages_are_retryable_and_bad_requests_fatal_with_pardots_code() -> None:
    fake = FakePardot(*[pardot_error(503, 183)] * 3)
    with pytest.raises(RetryableError):
        await client(fake).read("prospects", 1, ["id"])
    fake = FakePardot(pardot_error(400, 180, "One or more of the specified fields are invalid: bogus"))
    with pytest.raises(FatalError) as caught:
        await client(fake).read("prospects", 1, ["bogus"])
    assert caught.value.code == "180"


async def test_error_messages_are_masked() -> None:
    fake = FakePardot(pardot_error(400, 54, "Email address is already in use: ada.lovelace@example.com"))
    with pytest.raises(FatalError) as caught:
        await client(fake).create("prospects", {"email": "ada.lovelace@example.com"})
    assert "ada.lovelace" not in str(caught.value) and "@example.com" in str(caught.value)


async def test_no_more_than_the_configured_requests_run_at_once() -> None:
    fake = FakePardot()
    fake.delay = 0.02
    pardot = client(fake, budget=ApiBudget("pardot", max_concurrent=5))
    await asyncio.gather(*(pardot.read("prospects", i, ["id"]) for i in range(20)))
    assert len(fake.requests) == 20
    assert fake.most_in_flight == 5


async def test_upsert_latest_by_email_says_whether_it_created() -> None:
    fake = FakePardot(httpx.Response(201, json={"id": 1005}), httpx.Response(200, json={"id": 1005}))
    pardot = client(fake)
    assert await pardot.upsert_latest_by_email("a@example.com", {"firstName": "A"}) == ({"id": 1005}, True)
    assert await pardot.upsert_latest_by_email("a@example.com", {"firstName": "B"}) == ({"id": 1005}, False)
    body = json.loads(fake.requests[0].content)
    assert body == {"matchEmail": "a@example.com", "prospect": {"firstName": "A"}, "fields": ["id"]}
    assert fake.requests[0].url.path == "/api/v5/objects/prospects/do/upsertLatestByEmail"


def test_daily_usage_is_counted_per_utc_day() -> None:
    now = [1_780_000_000.0]
    budget = ApiBudget("pardot", reserve=0.1)
    usage = DailyUsage(budget, daily_limit=10, clock=lambda: now[0])
    for _ in range(9):
        usage.count()
    assert budget.exhausted()
    now[0] += 86_400
    usage.count()
    assert usage.used == 1 and not budget.exhausted()

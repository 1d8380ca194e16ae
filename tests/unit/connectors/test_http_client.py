"""The shared request skeleton (connectors.http_client) through a minimal client and httpx.MockTransport."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.budget import ApiBudget
from connectors.errors import AuthExpiredError, FatalError, RetryableError
from connectors.http_client import HttpClient
from connectors.retry import RetryPolicy
from tests.support.tokens import Token, Tokens

BASE = "https://api.example"


class ExampleClient(HttpClient):
    """Reads errors as ``{"code": ..., "message": ...}`` and records its accounting hooks."""

    system = "Example"
    retryable_codes = frozenset({"busy"})

    def __init__(self, handler: Any, tokens: Tokens | None = None, budget: ApiBudget | None = None) -> None:
        super().__init__(timeout=5.0, tokens=tokens, budget=budget,
                         policy=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01),
                         http=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        self.counted = 0
        self.observed: list[int] = []

    def _url(self, credential: Any, path: str) -> str:
        return BASE + path

    def _headers(self, credential: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {credential.access_token if credential else 'key'}"}

    def _read_error(self, response: httpx.Response) -> tuple[str, str]:
        body = response.json() if response.content else {}
        return str(body.get("code") or ""), str(body.get("message") or "")

    def _count_request(self) -> None:
        self.counted += 1

    def _observe_usage(self, response: httpx.Response) -> None:
        self.observed.append(response.status_code)


class Answers:
    """Answers in order, then 200; remembers each request's Authorization header."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.auth: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.auth.append(request.headers["Authorization"])
        answer = self.answers.pop(0) if self.answers else httpx.Response(200, json={"ok": True})
        if isinstance(answer, Exception):
            raise answer
        return answer


def error(status: int, code: str = "", message: str = "no", retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(status, json={"code": code, "message": message}, headers=headers)


async def test_a_401_refreshes_the_stale_token_once_and_the_retry_carries_the_new_one() -> None:
    answers, tokens = Answers(error(401)), Tokens()
    client = ExampleClient(answers, tokens)
    response = await client.request("GET", "/things", params={"a": 1})
    assert response.json() == {"ok": True}
    assert answers.auth == ["Bearer tok1", "Bearer tok2"] and tokens.stale_seen == [Token("tok1")] and tokens.refreshes == 1
    assert client.stats.auth_refreshes == 1 and client.stats.retries == 0 and client.calls == 2


async def test_a_third_401_in_a_row_in_one_call_is_fatal() -> None:
    client = ExampleClient(Answers(error(401), error(401), error(401)), Tokens())
    with pytest.raises(FatalError, match="still rejected"):
        await client.request("GET", "/things")
    assert client.stats.gave_up == 1


async def test_without_tokens_a_401_is_not_refreshed() -> None:
    client = ExampleClient(Answers(error(401, "unauthorized")))
    with pytest.raises(FatalError) as caught:
        await client.request("GET", "/things")
    assert isinstance(caught.value.__cause__, AuthExpiredError) and client.calls == 1


async def test_429_5xx_and_retryable_codes_are_retried_honouring_retry_after() -> None:
    answers = Answers(error(429, retry_after="0"), error(503, retry_after="0"))
    client = ExampleClient(answers)
    await client.request("POST", "/things", json={"x": 1})
    assert client.stats.retries == 2 and client.calls == 3
    assert client.counted == 3 and client.observed == [429, 503, 200], "accounting hooks run on every attempt"

    client = ExampleClient(Answers(error(409, "busy", "locked", retry_after="1.5")))
    client.policy = RetryPolicy(max_attempts=1)
    with pytest.raises(RetryableError) as caught:
        await client.request("PATCH", "/things/1")
    assert caught.value.code == "busy" and caught.value.status == 409 and caught.value.retry_after == 1.5
    assert str(caught.value) == "Example PATCH /things/1: 409 busy locked"


async def test_other_4xx_are_fatal_with_the_api_code_else_the_status() -> None:
    client = ExampleClient(Answers(error(400, "bad_field", "Name is required"), error(404, message="")))
    with pytest.raises(FatalError) as caught:
        await client.request("POST", "/things")
    assert caught.value.code == "bad_field" and caught.value.status == 400
    with pytest.raises(FatalError) as caught:
        await client.request("GET", "/things/9")
    assert caught.value.code == "404" and str(caught.value) == "Example GET /things/9: 404"
    assert client.stats.retries == 0 and client.calls == 2


async def test_transport_errors_are_retryable_and_keep_their_cause() -> None:
    failure = httpx.ConnectError("refused")
    client = ExampleClient(Answers(failure, failure, failure))
    with pytest.raises(RetryableError, match="Example GET /things: ConnectError") as caught:
        await client.request("GET", "/things")
    assert caught.value.__cause__ is failure and client.calls == 3 and client.counted == 3
    assert client.observed == [], "no response, nothing to observe"


async def test_each_attempt_holds_one_budget_slot() -> None:
    budget = ApiBudget("example", max_concurrent=1)
    seen: list[bool] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(budget.slots is not None and budget.slots.busy == budget.slots.size)
        return httpx.Response(200)

    await ExampleClient(handler, budget=budget).request("GET", "/things")
    assert seen == [True] and budget.slots is not None and budget.slots.busy == 0


async def test_request_unless_missing_answers_none_on_404_only() -> None:
    client = ExampleClient(Answers(error(404, "not_found"), error(410, "gone")))
    assert await client.request_unless_missing("DELETE", "/things/1") is None
    with pytest.raises(FatalError) as caught:
        await client.request_unless_missing("DELETE", "/things/1")
    assert caught.value.status == 410
    assert (await client.request_unless_missing("GET", "/things/2")).json() == {"ok": True}  # type: ignore[union-attr]

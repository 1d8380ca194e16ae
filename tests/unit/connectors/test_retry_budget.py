"""The shared retry policy and API budget, with a fake clock and sleep."""

from __future__ import annotations

import random

import pytest

from connectors.budget import ApiBudget, parse_limit_info
from connectors.errors import AuthExpiredError, FatalError, RetryableError
from connectors.retry import RetryPolicy, RetryStats


class Flaky:
    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def no_sleep(_: float) -> None:
    return None


async def test_retryable_errors_are_retried_until_success() -> None:
    call = Flaky(RetryableError("503"), RetryableError("lock"))
    stats = RetryStats()
    assert await RetryPolicy().run(call, stats=stats, sleep=no_sleep) == "ok"
    assert call.calls == 3 and stats.retries == 2


async def test_retry_after_is_honoured_and_backoff_is_bounded() -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(base_delay=1.0, max_delay=4.0, rng=random.Random(1))
    call = Flaky(RetryableError("429", retry_after=2.5), *[RetryableError("503") for _ in range(5)])
    await policy.run(call, sleep=record)
    assert slept[0] == 2.5
    assert all(0 <= s <= 4.0 for s in slept[1:])


async def test_gives_up_after_max_attempts() -> None:
    call = Flaky(*[RetryableError("503") for _ in range(10)])
    stats = RetryStats()
    with pytest.raises(RetryableError):
        await RetryPolicy(max_attempts=3).run(call, stats=stats, sleep=no_sleep)
    assert call.calls == 3 and stats.gave_up == 1


async def test_auth_expiry_refreshes_once_then_retries() -> None:
    refreshed: list[bool] = []

    async def refresh() -> None:
        refreshed.append(True)

    call = Flaky(AuthExpiredError("401"))
    stats = RetryStats()
    assert await RetryPolicy().run(call, on_auth_expired=refresh, stats=stats, sleep=no_sleep) == "ok"
    assert refreshed == [True] and stats.auth_refreshes == 1


async def test_auth_rejected_after_two_refreshes_in_a_row_is_fatal() -> None:
    refreshed: list[bool] = []

    async def refresh() -> None:
        refreshed.append(True)

    call = Flaky(AuthExpiredError("401"), AuthExpiredError("401 again"), AuthExpiredError("401 still"))
    with pytest.raises(FatalError, match="after 2 refresh"):
        await RetryPolicy().run(call, on_auth_expired=refresh, sleep=no_sleep)
    assert call.calls == 3 and len(refreshed) == 2


async def test_a_new_token_ended_before_its_first_use_is_refreshed_once_more() -> None:
    """401 → refresh → 401 (the new token expired at once) → refresh → 200."""
    call = Flaky(AuthExpiredError("401"), AuthExpiredError("401 again"))
    stats = RetryStats()

    async def refresh() -> None:
        return None

    assert await RetryPolicy().run(call, on_auth_expired=refresh, stats=stats, sleep=no_sleep) == "ok"
    assert stats.auth_refreshes == 2


async def test_one_refresh_in_a_row_can_be_asked_for() -> None:
    async def refresh() -> None:
        return None

    call = Flaky(AuthExpiredError("401"), AuthExpiredError("401 again"))
    with pytest.raises(FatalError, match="after 1 refresh"):
        await RetryPolicy(auth_refreshes=1).run(call, on_auth_expired=refresh, sleep=no_sleep)


async def test_expiry_again_after_a_retryable_failure_refreshes_again() -> None:
    """401 → refresh → 409 (lock) → 401: the token expired while the call waited (the chaos run's
    Pardot source exited on this): the count of refreshes in a row starts again."""
    refreshed: list[bool] = []

    async def refresh() -> None:
        refreshed.append(True)

    call = Flaky(AuthExpiredError("401"), RetryableError("lock"), AuthExpiredError("401 later"))
    stats = RetryStats()
    assert await RetryPolicy().run(call, on_auth_expired=refresh, stats=stats, sleep=no_sleep) == "ok"
    assert refreshed == [True, True] and stats.auth_refreshes == 2 and stats.retries == 1


async def test_expiries_between_retryable_failures_are_bounded_by_max_attempts() -> None:
    async def refresh() -> None:
        return None

    call = Flaky(*[AuthExpiredError("401") if i % 2 == 0 else RetryableError("503") for i in range(40)])
    with pytest.raises(RetryableError):
        await RetryPolicy(max_attempts=4).run(call, on_auth_expired=refresh, sleep=no_sleep)
    assert call.calls == 8


async def test_fatal_errors_are_not_retried() -> None:
    call = Flaky(FatalError("INVALID_FIELD"))
    with pytest.raises(FatalError):
        await RetryPolicy().run(call, sleep=no_sleep)
    assert call.calls == 1


def test_limit_info_is_parsed() -> None:
    assert parse_limit_info("api-usage=25/15000") == (25, 15000)
    assert parse_limit_info("api-usage=25/15000, per-app-api-usage=17/250(appName=x)") == (25, 15000)
    assert parse_limit_info(None) is None and parse_limit_info("garbage") is None


async def test_budget_pauses_at_its_reserve_until_the_reading_is_stale() -> None:
    now = [1000.0]
    budget = ApiBudget("salesforce", reserve=0.1, pause=5.0, clock=lambda: now[0])
    budget.observe_header("api-usage=100/1000")
    assert not budget.exhausted()
    await budget.wait_for_budget()  # plenty left: returns at once
    budget.observe_header("api-usage=950/1000")
    assert budget.exhausted() and budget.remaining_fraction == pytest.approx(0.05)
    now[0] += 6.0  # the reading is older than the pause: one call may go and re-read it
    await budget.wait_for_budget()
    assert budget.waits == 0

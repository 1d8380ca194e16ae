"""The one retry policy every client uses: exponential backoff with full jitter.

``Retry-After`` from the server wins over the computed delay. ``AuthExpiredError`` triggers a
credential refresh (through the ``on_auth_expired`` hook) and an immediate retry. The new
credential refused too is tried once more (``auth_refreshes``, 2): a token can be ended between
its issue and its first use (an expiry or a revocation at that moment; the chaos run expires
every token now and then, and a source exited when that fell between a refresh and the retry);
a third refusal in a row is fatal, as a login that does not work is not transient. A retryable
failure between two expiries starts the count again: the token can expire while a call waits
out a 429 or a lock (the chaos run saw a source exit on 401 → refresh → 409 → 401). Such
refreshes are bounded by ``max_attempts``, as the retryable failures between them count. Other
errors are not retried.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

from connectors.errors import AuthExpiredError, FatalError, RetryableError

__all__ = ["RetryPolicy", "RetryStats", "CostStats"]

T = TypeVar("T")


@dataclass
class RetryStats:
    """Counters a client exposes (and the metrics layer reads)."""

    retries: int = 0
    auth_refreshes: int = 0
    gave_up: int = 0


@dataclass
class CostStats:
    """What a client of an API throttled by query cost (a bucket of points that refills at a
    rate: Shopify's GraphQL, docs/adr/0033) counts, for the metrics layer: answers refused as
    throttled, seconds spent waiting for the bucket (before a query, or told to by a refusal),
    points charged, and the bucket as the API last reported it."""

    throttled: int = 0
    waited: float = 0.0
    points: float = 0.0
    available: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 0.2
    max_delay: float = 30.0
    #: refreshes in a row (each new credential refused at once) before the call is fatal
    auth_refreshes: int = 2
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return self.rng.uniform(0, ceiling)

    async def run(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        on_auth_expired: Callable[[], Awaitable[None]] | None = None,
        stats: RetryStats | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> T:
        """Run ``call`` (which rebuilds its request on each attempt) under this policy."""
        stats = stats if stats is not None else RetryStats()
        refreshed = 0  # refreshes since the last answer that was not an expiry
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except AuthExpiredError as exc:
                if refreshed >= self.auth_refreshes or on_auth_expired is None:
                    stats.gave_up += 1
                    raise FatalError(f"authentication still rejected after {refreshed} refresh(es): {exc}",
                                     code=exc.code, status=exc.status) from exc
                refreshed += 1
                stats.auth_refreshes += 1
                await on_auth_expired()
                attempt -= 1  # a refresh is not a failed attempt
            except RetryableError as exc:
                refreshed = 0  # the next expiry is a new one, not the refreshed credential refused
                if attempt >= self.max_attempts:
                    stats.gave_up += 1
                    raise
                stats.retries += 1
                await sleep(self.delay(attempt, exc.retry_after))

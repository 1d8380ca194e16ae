"""One API budget per external system, shared by every caller in the process.

Salesforce reports usage on each response (``Sforce-Limit-Info: api-usage=USED/LIMIT``); the
budget keeps the latest figure and makes callers wait once only ``reserve`` of the daily limit
is left, so sources and sinks together never blow the quota. A concurrency cap (Pardot allows 5
concurrent requests) is part of the same object; its size may change while the process runs
(a budget shared across processes through Kafka gives each process its share,
``connectors/pardot/quota.py``).
"""

from __future__ import annotations

import asyncio
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

__all__ = ["ApiBudget", "Slots", "parse_limit_info"]

_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def parse_limit_info(header: str | None) -> tuple[int, int] | None:
    """``"api-usage=25/15000"`` → ``(25, 15000)``; None when absent or unreadable."""
    match = _USAGE.search(header or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass
class _Usage:
    used: int = 0
    limit: int = 0
    seen_at: float = 0.0


class Slots:
    """A concurrency cap whose size may change: holders beyond a smaller size finish, newcomers
    wait until the count is under it. Size 0 holds every newcomer."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self.peak = 0
        self._changed = asyncio.Condition()

    async def resize(self, size: int) -> None:
        async with self._changed:
            self.size = size
            self._changed.notify_all()

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.busy < self.size)
            self.busy += 1
            self.peak = max(self.peak, self.busy)
        try:
            yield
        finally:
            async with self._changed:
                self.busy -= 1
                self._changed.notify_all()


class ApiBudget:
    """Daily quota guard and concurrency cap for one system."""

    def __init__(
        self,
        name: str,
        *,
        reserve: float = 0.1,
        max_concurrent: int | None = None,
        pause: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.reserve = reserve
        self.pause = pause
        self._clock = clock
        self.usage = _Usage()
        self.waits = 0
        self.slots = Slots(max_concurrent) if max_concurrent else None
        #: what shares this budget with other processes (it is joined before the first call), if anything
        self.sharing: Any = None

    def observe(self, used: int, limit: int) -> None:
        self.usage = _Usage(used, limit, self._clock())

    def observe_header(self, header: str | None) -> None:
        parsed = parse_limit_info(header)
        if parsed:
            self.observe(*parsed)

    @property
    def remaining_fraction(self) -> float | None:
        if not self.usage.limit:
            return None
        return max(0.0, (self.usage.limit - self.usage.used) / self.usage.limit)

    def exhausted(self) -> bool:
        remaining = self.remaining_fraction
        return remaining is not None and remaining <= self.reserve

    async def wait_for_budget(self) -> None:
        """Pause while the quota is at its reserve. Usage is only learnt from responses, so once
        the last reading is older than ``pause`` one call goes through to read it again. A
        budget shared with other processes is joined first (their counts read)."""
        if self.sharing is not None:
            await self.sharing.joined()
        while self.exhausted() and self._clock() - self.usage.seen_at < self.pause:
            self.waits += 1
            await asyncio.sleep(min(1.0, self.pause))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the concurrent-request slots (no-op without a cap)."""
        if self.slots is None:
            yield
            return
        async with self.slots.hold():
            yield

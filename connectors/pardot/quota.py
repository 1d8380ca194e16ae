"""Pardot's limits shared by every process that calls Pardot, through a compacted Kafka topic.

Pardot's daily quota (25,000–100,000 calls by edition) and its 5 concurrent requests are per
business unit, whichever process makes the calls: the Pardot source process, each worker's
Pardot writers, a second source. Pardot reports no usage on its responses, so each process
counts its own calls (``DailyUsage``) and publishes the count on ``connect.quota.pardot``
(one partition, compacted), key ``<business unit>|<UTC day>|<member>``; every process follows the
topic and adds the others' counts of the day to its own, so its budget holds calls once the
business unit as a whole reaches the reserve. A process that restarts comes back as a new
member; its earlier count stays in the day's sum.

Concurrency: each process also publishes a heartbeat (``<business unit>|member|<member>``); the
live members (a heartbeat within ``member_ttl``) split the slots between them by rank, the first
``max_concurrent % n`` taking one more. With more members than slots, the last ones get none and
wait until a member leaves (a clean stop deletes its heartbeat; a crashed one ages out). Until the
process has read the topic once it takes one slot.

Between two publications the others do not see this process's latest calls: the interval
(1 s) times the call rate is how far the business unit may pass the reserve, which is 10 % of
the quota (docs/adr/0026).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any, Callable

from aiokafka import AIOKafkaProducer

from connectors.budget import ApiBudget
from connectors.kafka_admin import ensure_topics, follow
from connectors.kafka_io import KafkaTarget
from connectors.kafka_security import client_options

__all__ = ["SharedQuota", "TOPIC", "shares"]

log = logging.getLogger(__name__)
TOPIC = "connect.quota.pardot"


def shares(members: list[str], me: str, slots: int) -> int:
    """This member's share of ``slots`` among the live ``members`` (sorted by id)."""
    ranked = sorted(set(members) | {me})
    rank, count = ranked.index(me), len(ranked)
    return slots // count + (1 if rank < slots % count else 0)


class SharedQuota:
    """One process's seat at the shared Pardot budget (started on the budget's first call)."""

    def __init__(self, target: KafkaTarget, budget: ApiBudget, usage: Any, business_unit: str, max_concurrent: int,
                 *, member: str | None = None, interval: float = 1.0, member_ttl: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.target, self.budget, self.usage = target, budget, usage
        self.business_unit, self.max_concurrent = business_unit, max_concurrent
        self.member = member or uuid.uuid4().hex[:12]
        self.interval, self.member_ttl, self._clock = interval, member_ttl, clock
        self.topic = target.topic(TOPIC)
        self.entries: dict[str, dict[str, Any]] = {}
        self.others = 0
        self.share = 1
        self._ready = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._published: tuple[str, int] | None = None

    async def joined(self) -> None:
        """Start following the topic (once) and wait until it was read through."""
        if not self._tasks:
            async with self._start_lock:
                if not self._tasks:
                    await self._start()
        await self._ready.wait()

    async def _start(self) -> None:
        await ensure_topics(self.target.bootstrap, [self.topic], partitions=1, replication=self.target.replication,
                            compacted=True)
        self._producer = AIOKafkaProducer(bootstrap_servers=self.target.bootstrap, acks="all",
                                          enable_idempotence=True, **client_options())
        await self._producer.start()
        if self.budget.slots is not None:
            await self.budget.slots.resize(1)
        self._tasks = [asyncio.ensure_future(self._follow()), asyncio.ensure_future(self._publish_loop())]
        log.info("Pardot budget shared through %s as member %s", self.topic, self.member)

    async def aclose(self) -> None:
        """Publish the last count and leave (the other members take the slots at once)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._publish_count(force=True)
                await self._producer.send_and_wait(self.topic, None, key=self._member_key().encode())
            await self._producer.stop()
            self._producer = None
        self._tasks = []

    def _member_key(self, member: str | None = None) -> str:
        return f"{self.business_unit}|member|{member or self.member}"

    def _count_key(self, day: str) -> str:
        return f"{self.business_unit}|{day}|{self.member}"

    async def _follow(self) -> None:
        while True:
            try:
                async for records, caught_up in follow(self.target.bootstrap, self.topic,
                                                       client_id=f"pardot-quota-{self.member}"):
                    for record in records:
                        self._apply(record.key, record.value)
                    if caught_up:
                        self._ready.set()
                    await self.recompute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broker restart: read the topic again
                log.warning("Pardot budget reader interrupted (%s); reading again", exc)
                await asyncio.sleep(1.0)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode(errors="replace")
        if value is None:
            self.entries.pop(name, None)
            return
        try:
            entry = json.loads(value)
        except ValueError:
            return
        if isinstance(entry, dict):
            self.entries[name] = entry

    async def recompute(self) -> None:
        """The business unit's count today and this process's share of the slots, into the budget."""
        day, now = self.usage.current_day(), self._clock()
        prefix, mine = f"{self.business_unit}|{day}|", self._count_key(day)
        self.others = sum(int(entry.get("used", 0)) for name, entry in self.entries.items()
                          if name.startswith(prefix) and name != mine)
        self.usage.others = self.others
        self.usage.observe()
        alive = [name.rsplit("|", 1)[1] for name, entry in self.entries.items()
                 if name.startswith(f"{self.business_unit}|member|") and now - float(entry.get("at", 0)) < self.member_ttl]
        share = shares(alive, self.member, self.max_concurrent)
        if share != self.share and self.budget.slots is not None:
            log.info("Pardot budget: %d processes share %d concurrent requests; this one takes %d",
                     len(set(alive) | {self.member}), self.max_concurrent, share)
        self.share = share
        if self.budget.slots is not None and self._ready.is_set():
            await self.budget.slots.resize(share)

    async def _publish_count(self, force: bool = False) -> None:
        assert self._producer is not None
        day, used = self.usage.current_day(), self.usage.used
        if force or self._published != (day, used):
            value = json.dumps({"used": used, "at": self._clock()}).encode()
            await self._producer.send_and_wait(self.topic, value, key=self._count_key(day).encode())
            self._published = (day, used)

    async def _publish_loop(self) -> None:
        """The count when it changed, and the heartbeat, every ``interval``."""
        while True:
            try:
                await self._publish_count()
                value = json.dumps({"at": self._clock()}).encode()
                await self._producer.send_and_wait(self.topic, value, key=self._member_key().encode())  # type: ignore[union-attr]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next round publishes again
                log.warning("Pardot budget: publishing this process's count failed (%s)", exc)
            await asyncio.sleep(self.interval)

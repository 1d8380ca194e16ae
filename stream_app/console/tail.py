"""What the console shows of a topic, held in memory and brought up to date when a page asks.

A page must not read 100,000 dead letters from the broker each time it is drawn (docs/adr/0031):
a :class:`TopicTail` keeps one consumer (no group: it commits nothing and moves nobody's
offsets), reads only what arrived since the last page, and drops what Kafka deleted (a purge,
retention) so the console never shows a message the broker no longer holds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_security import client_options

__all__ = ["TopicTail", "newest_records"]

#: seconds between two looks for topics that did not exist yet (a DLQ appears with its first entry)
TOPIC_RECHECK = 5.0


class TopicTail:
    """Reads ``topics`` from their start and, on each :meth:`catch_up`, up to their current end.

    ``keep(record)`` gets every record once, in order per partition; ``trim(tp, first)`` is told
    when a partition's first retained offset moved past records already kept."""

    def __init__(self, bootstrap: str, topics: Iterable[str], keep: Callable[[ConsumerRecord], None],
                 trim: Callable[[TopicPartition, int], None], client_id: str = "connect-console") -> None:
        self.bootstrap = bootstrap
        self.topics = list(dict.fromkeys(topics))
        self.keep, self.trim = keep, trim
        self.client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._checked_at = float("-inf")
        self._first: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()

    async def catch_up(self) -> None:
        """Read what arrived since the last call (up to the end as it is now)."""
        async with self._lock:
            consumer = await self._ready()
            if not self._partitions:
                return
            assert self._offsets is not None
            starts = await self._offsets.beginning_offsets(self._partitions)
            ends = await self._offsets.end_offsets(self._partitions)
            for tp in self._partitions:
                if starts[tp] > self._first.get(tp, 0):
                    self.trim(tp, starts[tp])
                    self._first[tp] = starts[tp]
                    if await consumer.position(tp) < starts[tp]:
                        consumer.seek(tp, starts[tp])
            pending = {tp for tp in self._partitions if await consumer.position(tp) < ends[tp]}
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=500, max_records=10_000)
                for tp, records in batch.items():
                    for record in records:
                        self.keep(record)
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}

    async def _ready(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = self._new_consumer()
            await self._consumer.start()
            # offsets are asked of a consumer that fetches nothing: the reading one keeps a fetch
            # waiting at the broker once caught up, and its offset requests would queue behind it
            self._offsets = self._new_consumer()
            await self._offsets.start()
        now = time.monotonic()
        if len({tp.topic for tp in self._partitions}) < len(self.topics) and now - self._checked_at > TOPIC_RECHECK:
            self._checked_at = now
            async with KafkaAdmin(self.bootstrap, client_id=self.client_id) as kafka:
                found = await kafka.partitions(self.topics)
            new = [tp for tp in found if tp not in self._partitions]
            if new:
                # assign() forgets the positions held so far: note them and seek back after
                held = {tp: await self._consumer.position(tp) for tp in self._partitions}
                self._partitions += new
                self._consumer.assign(self._partitions)
                starts = await self._offsets.beginning_offsets(new)
                for tp in new:
                    self._first[tp] = held[tp] = starts[tp]
                for tp, offset in held.items():  # explicit seeks (see connectors.kafka_admin.read_to_end)
                    self._consumer.seek(tp, offset)
        return self._consumer

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id=self.client_id, **client_options())

    async def close(self) -> None:
        for consumer in (self._consumer, self._offsets):
            if consumer is not None:
                await consumer.stop()
        self._consumer = self._offsets = None


async def newest_records(bootstrap: str, topics: Iterable[str], timeout_ms: int = 2000) -> dict[str, ConsumerRecord]:
    """The newest record (by its timestamp) of each of ``topics`` that holds any: the last
    record of each partition is read, nothing more, without a consumer group."""
    newest: dict[str, ConsumerRecord] = {}
    async with KafkaAdmin(bootstrap, client_id="connect-console-newest") as kafka:
        partitions = await kafka.partitions(list(dict.fromkeys(topics)))
    if not partitions:
        return newest
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                client_id="connect-console-newest", **client_options())
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > starts[tp]}
        if not pending:
            return newest
        consumer.assign(list(pending))
        for tp in pending:
            consumer.seek(tp, ends[tp] - 1)
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=timeout_ms)
            if not batch:
                break
            for tp, records in batch.items():
                pending.discard(tp)
                for record in records:
                    held = newest.get(record.topic)
                    if held is None or record.timestamp > held.timestamp:
                        newest[record.topic] = record
        return newest
    finally:
        await consumer.stop()

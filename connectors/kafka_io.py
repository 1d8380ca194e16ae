"""Kafka plumbing for the processes that feed the stream (sources), without Faust.

- :class:`Publisher`: an idempotent producer (acks=all) that creates our topics with the
  configured partition count before first use (the broker does not auto-create).
- :class:`PositionStore`: source positions (replay ids, cursors) in a compacted topic, written
  only after the events before them were acked, so a new machine resumes where the old one
  stopped. Like Kafka Connect's offsets topic.
- :meth:`Publisher.quarantine`: malformed input goes to ``quarantine.<source>`` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

__all__ = ["KafkaTarget", "Publisher", "PositionStore", "ensure_topics", "list_topics"]


@dataclass(frozen=True)
class KafkaTarget:
    """Where and how sources write: the bootstrap servers and our topic naming."""

    bootstrap: str
    prefix: str = ""
    partitions: int = 4
    replication: int = 1

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"


async def list_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


#: Topics a state rebuild reads from the start: kept forever (change events carry only changed
#: fields, so compaction would lose data). Other topics keep the broker's default retention.
_KEEP_FOREVER = re.compile(r"(^|\.)(src\.[^.]+\.[^.]+|links\.tims)$")


def _topic_configs(name: str, compacted: bool) -> dict[str, str]:
    if compacted:
        return {"cleanup.policy": "compact"}
    return {"retention.ms": "-1"} if _KEEP_FOREVER.search(name) else {}


async def ensure_topics(target: KafkaTarget, names: Iterable[str], *, compacted: bool = False) -> None:
    """Create the topics that do not exist yet (source topics and links kept forever)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=target.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, 1 if compacted else target.partitions, target.replication,
                        topic_configs=_topic_configs(n, compacted))
               for n in dict.fromkeys(names) if n not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


class Publisher:
    """Idempotent JSON producer; ``send`` returns once the broker acked the message."""

    def __init__(self, target: KafkaTarget, client_id: str = "connect-source") -> None:
        self.target = target
        self._producer = AIOKafkaProducer(
            bootstrap_servers=target.bootstrap, client_id=client_id, acks="all",
            enable_idempotence=True, linger_ms=5,
        )
        self._known: set[str] = set()
        self.sent = 0
        self.quarantined = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def _ensure(self, topic: str) -> None:
        if topic not in self._known:
            await ensure_topics(self.target, [topic])
            self._known.add(topic)

    async def send_many(self, topic: str, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Publish (key, value) pairs to one of our topics and wait for every ack."""
        full = self.target.topic(topic)
        await self._ensure(full)
        futures = [
            await self._producer.send(full, json.dumps(value, default=str).encode(), key=key.encode())
            for key, value in records
        ]
        await asyncio.gather(*futures)
        self.sent += len(futures)
        return len(futures)

    async def quarantine(self, source: str, reason: str, raw: Any, context: dict[str, Any] | None = None) -> None:
        """Keep what could not be read, with why, on ``quarantine.<source>``."""
        value = {"source": source, "reason": reason, "raw": raw, "context": context or {},
                 "quarantined_at": int(time.time() * 1000)}
        await self.send_many(f"quarantine.{source}", [(source, value)])
        self.quarantined += 1


class PositionStore:
    """Positions per stream key in a compacted topic (one partition, last write wins)."""

    TOPIC = "connect.positions"

    def __init__(self, target: KafkaTarget) -> None:
        self.target = target
        self.topic = target.topic(self.TOPIC)
        self._producer = AIOKafkaProducer(bootstrap_servers=target.bootstrap, acks="all", enable_idempotence=True)
        #: the last position saved per key, with when (epoch seconds): read by the metrics layer
        self.saved: dict[str, tuple[float, dict[str, Any]]] = {}

    async def start(self) -> None:
        await ensure_topics(self.target, [self.topic], compacted=True)
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def load(self) -> dict[str, dict[str, Any]]:
        """Every stream's last saved position (read to the end of the topic)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.target.bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        positions: dict[str, dict[str, Any]] = {}
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            await consumer.seek_to_beginning(tp)
            while end and await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    key = record.key.decode()
                    if record.value is None:
                        positions.pop(key, None)
                    else:
                        positions[key] = json.loads(record.value)
        finally:
            await consumer.stop()
        return positions

    async def save(self, key: str, position: dict[str, Any]) -> None:
        """Durably record ``position`` (call only after the events up to it were acked)."""
        await self._producer.send_and_wait(self.topic, json.dumps(position).encode(), key=key.encode())
        self.saved[key] = (time.time(), position)

"""Kafka plumbing for the processes that feed the stream (sources), without Faust.

- :class:`Publisher`: an idempotent producer (acks=all) that creates our topics with the
  configured partition count before first use (the broker does not auto-create).
- :class:`PositionStore`: source positions (replay ids, cursors) in a compacted topic, written
  only after the events before them were acked, so a new machine resumes where the old one
  stopped. Like Kafka Connect's offsets topic.
- :meth:`Publisher.quarantine`: malformed input goes to ``quarantine.<source>`` with the reason,
  bounded in size; so does an event too large for its topic, refused before it is produced
  (``connectors.kafka_limits``, docs/adr/0020).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from connectors.kafka_admin import ensure_topics, read_to_end
from connectors.kafka_limits import MessageLimits, OversizeMessage, kept
from connectors.kafka_security import client_options

__all__ = ["KafkaTarget", "Publisher", "PositionStore", "ensure_source_topics", "keeps_history"]

#: the publisher's ``max_request_size`` (aiokafka's default, said out loud: the size check uses it)
MAX_REQUEST_SIZE = 1_048_576
#: the most of a value a quarantine entry keeps (its size and hash say the rest)
KEEP_BYTES = 64 * 1024
#: attempts at producing a batch that meets retriable broker errors, and the first pause (seconds)
SEND_ATTEMPTS = 5
RETRY_DELAY = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaTarget:
    """Where and how sources write: the bootstrap servers and our topic naming."""

    bootstrap: str
    prefix: str = ""
    partitions: int = 4
    replication: int = 1

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"


def keeps_history(name: str) -> bool:
    """Whether a topic the sources write is kept forever: the source topics
    (``[<prefix>]src.<system>.<entity>``), which a state rebuild reads from the start (change events
    carry only the changed fields, so compaction would lose data). Quarantine topics keep the
    broker's default retention."""
    parts = name.split(".")
    return len(parts) >= 3 and parts[-3] == "src" and all(parts[-2:])


async def ensure_source_topics(target: KafkaTarget, names: Iterable[str]) -> None:
    """Create topics as the sources' publisher does: ``target``'s partitions and replication,
    source topics kept forever."""
    names = list(names)
    await ensure_topics(target.bootstrap, names, partitions=target.partitions, replication=target.replication,
                        keep_forever=[name for name in names if keeps_history(name)])


class Publisher:
    """Idempotent JSON producer; ``send`` returns once the broker acked the message."""

    def __init__(self, target: KafkaTarget, client_id: str = "connect-source") -> None:
        self.target = target
        self._producer = AIOKafkaProducer(
            bootstrap_servers=target.bootstrap, client_id=client_id, acks="all",
            enable_idempotence=True, linger_ms=5, max_request_size=MAX_REQUEST_SIZE, **client_options(),
        )
        self.limits = MessageLimits(target.bootstrap, producer_limit=MAX_REQUEST_SIZE)
        self._known: set[str] = set()
        self.sent = 0
        self.quarantined = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def _ensure(self, topic: str) -> None:
        if topic not in self._known:
            await ensure_source_topics(self.target, [topic])
            self._known.add(topic)

    async def send_many(self, topic: str, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Publish (key, value) pairs to one of our topics and wait for every ack. A value too
        large for the topic is not produced: it goes to ``quarantine.<system>`` with its size and
        the limit. Returns how many were published."""
        full = self.target.topic(topic)
        await self._ensure(full)
        fitting = []
        for key, value in records:
            key_bytes, data = key.encode(), json.dumps(value, default=str).encode()
            try:
                await self.limits.check(full, key_bytes, data)
            except OversizeMessage as exc:
                await self.quarantine(_system_of(topic), f"publish refused: {exc}", value,
                                      {"topic": full, "key": key[:200]})
                continue
            fitting.append((key_bytes, data))
        await self._produce(full, fitting)
        self.sent += len(fitting)
        return len(fitting)

    async def _produce(self, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
        """Produce and wait for every ack. An error the broker calls retriable (a partition whose
        leader is moving, right after the topic was made or the broker restarted) sends the
        messages again, a few times, before it stops the source: the acked ones come twice,
        which the flows take as duplicates (same event ids)."""
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                await asyncio.gather(*[await self._producer.send(topic, data, key=key) for key, data in messages])
                return
            except KafkaError as exc:
                if not exc.retriable or attempt == SEND_ATTEMPTS:
                    raise
                log.warning("publishing to %s failed (%s); attempt %d of %d in %.1fs", topic, type(exc).__name__,
                            attempt + 1, SEND_ATTEMPTS, RETRY_DELAY * attempt)
                await asyncio.sleep(RETRY_DELAY * attempt)

    async def quarantine(self, source: str, reason: str, raw: Any, context: dict[str, Any] | None = None) -> None:
        """Keep what could not be read, with why, on ``quarantine.<source>``; ``raw`` kept whole
        when it takes at most 64 KiB (and half the topic's limit), else its size, hash and start."""
        topic = f"quarantine.{source}"
        keep = min(KEEP_BYTES, await self.limits.limit(self.target.topic(topic)) // 2)
        value = {"source": source, "reason": reason[:2000], "raw": kept(raw, json.dumps(raw, default=str).encode(), keep),
                 "context": context or {}, "quarantined_at": int(time.time() * 1000)}
        await self.send_many(topic, [(source, value)])
        self.quarantined += 1


def _system_of(topic: str) -> str:
    """``src.<system>.<entity>`` → ``<system>``; any other topic name → its last part."""
    parts = topic.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "src" else parts[-1]


class PositionStore:
    """Positions per stream key in a compacted topic (one partition, last write wins)."""

    TOPIC = "connect.positions"

    def __init__(self, target: KafkaTarget) -> None:
        self.target = target
        self.topic = target.topic(self.TOPIC)
        self._producer = AIOKafkaProducer(bootstrap_servers=target.bootstrap, acks="all", enable_idempotence=True,
                                          **client_options())
        #: the last position saved per key, with when (epoch seconds): read by the metrics layer
        self.saved: dict[str, tuple[float, dict[str, Any]]] = {}

    async def start(self) -> None:
        await ensure_topics(self.target.bootstrap, [self.topic], partitions=1, replication=self.target.replication,
                            compacted=True)
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def load(self) -> dict[str, dict[str, Any]]:
        """Every stream's last saved position (read to the end of the topic)."""
        positions: dict[str, dict[str, Any]] = {}
        async for record in read_to_end(self.target.bootstrap, [self.topic]):
            key = record.key.decode()
            if record.value is None:
                positions.pop(key, None)
            else:
                positions[key] = json.loads(record.value)
        return positions

    async def save(self, key: str, position: dict[str, Any]) -> None:
        """Durably record ``position`` (call only after the events up to it were acked)."""
        await self._producer.send_and_wait(self.topic, json.dumps(position).encode(), key=key.encode())
        self.saved[key] = (time.time(), position)

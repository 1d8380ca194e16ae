"""The lifecycle every source follows.

``start()`` connects and loads the last saved position; ``run()`` reads changes and publishes
them until ``stop()`` is called; ``close()`` releases connections. A source publishes each change
as a :class:`~connectors.envelope.SourceEvent` on ``src.<system>.<entity>`` keyed by record id,
waits until the broker acked them, and only then saves its position: after a crash it reads
some changes again (same event ids, deduped downstream), never fewer.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections import Counter
from typing import Any

from connectors.envelope import SourceEvent
from connectors.kafka_io import PositionStore, Publisher

__all__ = ["Source"]


class Source(abc.ABC):
    #: "salesforce", "tims", "pardot"
    system: str

    def __init__(self, publisher: Publisher, positions: PositionStore) -> None:
        self.publisher = publisher
        self.positions = positions
        self._stopping = asyncio.Event()
        self.published = 0
        #: read by the metrics layer: events acked per topic, and when each stream last read its
        #: system successfully (epoch seconds; see :meth:`polled`)
        self.published_per_topic: Counter[str] = Counter()
        self.last_poll: dict[str, float] = {}

    async def start(self) -> None:
        await self.publisher.start()
        await self.positions.start()

    @abc.abstractmethod
    async def run(self) -> None:
        """Read and publish until ``stop()``."""

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def close(self) -> None:
        await self.positions.stop()
        await self.publisher.stop()

    async def sleep(self, seconds: float) -> bool:
        """Wait, waking early on stop(); True when stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    def polled(self, stream: str) -> None:
        """Record a successful read of ``stream`` (named as in its position key, after
        ``<system>:``), also one that found nothing: a quiet source is not a stalled one."""
        self.last_poll[stream] = time.time()

    async def publish(self, events: list[SourceEvent]) -> None:
        """Publish events (grouped per entity topic) and wait for all acks."""
        by_topic: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for event in events:
            by_topic.setdefault(f"src.{event.source}.{event.entity}", []).append(
                (event.record_id, event.model_dump(mode="json")))
        for topic, records in by_topic.items():
            await self.publisher.send_many(topic, records)
            self.published_per_topic[topic] += len(records)
        self.published += len(events)

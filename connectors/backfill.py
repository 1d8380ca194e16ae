"""What every backfill shares: a publisher and the position store, started around the work.

A backfill records the live source's starting position (when it has none) and then publishes
the records that exist as SNAPSHOT events; each system's ``backfill.py`` says how.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable, Sequence

from connectors.kafka_io import KafkaTarget, PositionStore, Publisher

__all__ = ["publishing", "snapshot_each"]

log = logging.getLogger(__name__)


@asynccontextmanager
async def publishing(target: KafkaTarget, client_id: str) -> AsyncIterator[tuple[Publisher, PositionStore]]:
    """A started (publisher, position store), stopped however the work ends."""
    publisher, positions = Publisher(target, client_id=client_id), PositionStore(target)
    await publisher.start()
    await positions.start()
    try:
        yield publisher, positions
    finally:
        await positions.stop()
        await publisher.stop()


async def snapshot_each(target: KafkaTarget, system: str, entities: Sequence[str],
                        snapshot: Callable[[Publisher, PositionStore, str], Awaitable[int]],
                        before: Callable[[PositionStore], Awaitable[object]] | None = None) -> int:
    """Run ``before(positions)`` (a hand-over shared by every entity), then
    ``snapshot(publisher, positions, entity)`` for each entity in turn; returns the events published."""
    async with publishing(target, f"{system}-backfill") as (publisher, positions):
        if before is not None:
            await before(positions)
        total = 0
        for entity in entities:
            published = await snapshot(publisher, positions, entity)
            log.info("%s backfill: %d %s records published", system, published, entity)
            total += published
        return total

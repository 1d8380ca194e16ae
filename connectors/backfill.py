"""What every backfill shares: a publisher and the position store, started around the work.

A backfill records the live source's starting position (when it has none) and then publishes
the records that exist as SNAPSHOT events; each system's ``backfill.py`` says how.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from connectors.kafka_io import KafkaTarget, PositionStore, Publisher

__all__ = ["publishing"]


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

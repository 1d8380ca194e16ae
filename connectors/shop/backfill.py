"""Snapshot the shop's records into ``src.shop.<entity>`` as SNAPSHOT events (``stream-app backfill shop``).

The live position is recorded first where the source has none (its window starts now, less the
overlap), then every record is read: a change made during the snapshot is read twice, never
missed. A snapshot event has the same id as the live event of the same state, so the flows
take a record the source already published as a duplicate.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from typing import Sequence

from tqdm import tqdm

from connectors.backfill import snapshot_each
from connectors.errors import ConfigError
from connectors.kafka_io import PositionStore, Publisher
from connectors.shop.config import ShopConfig
from connectors.shop.platform import Platform
from connectors.shop.records import RECONCILED
from connectors.shop.source import position_key
from connectors.spec import ConnectorContext

__all__ = ["run_backfill", "snapshot_entity"]


def make_platform(config: ShopConfig) -> Platform:
    """The adapter ``config.platform`` names (one module per platform, imported when asked for)."""
    if config.platform == "shopify":
        from connectors.shop.shopify import Shopify

        return Shopify(config)
    raise ConfigError("shop", [("platform", f"no adapter for {config.platform!r}")])


async def record_handover(positions: PositionStore, entity: str, overlap: float) -> None:
    saved = (await positions.load()).get(position_key(entity))
    if saved:
        return
    start = datetime.now(timezone.utc) - timedelta(seconds=overlap)
    await positions.save(position_key(entity), {"since": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "cursor": None})


async def snapshot_entity(platform: Platform, publisher: Publisher, entity: str, page_size: int) -> int:
    count, cursor = 0, None
    with tqdm(desc=f"shop {entity}", unit=" records", file=sys.stderr) as bar:
        while True:
            page = await platform.changed_since(entity, None, cursor, page_size)
            events = [record.event(platform.name, "backfill", "SNAPSHOT") for record in page.records]
            if events:
                await publisher.send_many(f"src.shop.{entity}",
                                          [(e.record_id, e.model_dump(mode="json")) for e in events])
                count += len(events)
                bar.update(len(events))
            cursor = page.cursor
            if cursor is None:
                return count


async def run_backfill(config: ShopConfig, context: ConnectorContext, entities: Sequence[str] | None) -> int:
    """Snapshot ``entities`` (default: the source's, else every one it reconciles); returns events published."""
    wanted = list(entities or config.entities or RECONCILED)
    unknown = sorted(set(wanted) - set(RECONCILED))
    if unknown:
        raise ConfigError("shop", [("entities", f"cannot snapshot {unknown}; choose from {', '.join(RECONCILED)}")])
    platform = make_platform(config)

    async def snapshot(publisher: Publisher, positions: PositionStore, entity: str) -> int:
        await record_handover(positions, entity, config.overlap_seconds)
        return await snapshot_entity(platform, publisher, entity, config.page_size)

    try:
        return await snapshot_each(context.target, "shop", wanted, snapshot)
    finally:
        await platform.aclose()

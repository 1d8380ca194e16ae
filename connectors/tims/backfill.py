"""Snapshot TIMS records into ``src.tims.<entity>`` as SNAPSHOT events (``stream-app backfill``).

Order matters for a gap-free hand-over: the live position is recorded first (when the source
has none yet), then the records are read. A change committed during the snapshot is therefore
both in the snapshot and after the live position: read twice, never missed. An existing live
position is kept: moving it forward could skip deletes that no snapshot shows.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

from tqdm import tqdm

from connectors.backfill import snapshot_each
from connectors.envelope import SourceEvent
from connectors.errors import ConfigError
from connectors.kafka_io import PositionStore, Publisher
from connectors.spec import ConnectorContext
from connectors.tims.client import RESOURCES, TimsClient, resource_for
from connectors.tims.config import TimsConfig
from connectors.tims.source import POSITION_KEY, FeedPosition, format_ts, parse_ts

__all__ = ["run_backfill", "record_handover", "snapshot_entity", "snapshot_event"]

#: how far back the hand-over reads the feed to find its end (covers clock skew up to this)
HANDOVER_LOOKBACK = timedelta(hours=1)
PAGE_SIZE = 500
log = logging.getLogger(__name__)


def snapshot_event(entity: str, record: Mapping[str, Any]) -> SourceEvent:
    """A SNAPSHOT event; its id names the record version, so re-running a backfill repeats ids."""
    resource = resource_for(entity)
    record_id = str(record[resource.id_field])
    version = record.get("version")
    updated_at = record.get("updated_at")
    stamp = int(parse_ts(updated_at).timestamp() * 1000) if isinstance(updated_at, str) else 0
    return SourceEvent(
        event_id=f"tims:{entity}:{record_id}:v{version}", source="tims", entity=entity, record_id=record_id,
        change_type="SNAPSHOT", fields=dict(record), full_state=True, commit_timestamp=stamp,
        change_origin=record.get("modified_by"), commit_user=record.get("modified_by"),
        position={"snapshot": True, "version": version},
    )


async def record_handover(client: TimsClient, positions: PositionStore, config: TimsConfig,
                          now: datetime | None = None) -> FeedPosition:
    """Save the end of the change feed as the live position unless one exists; return it."""
    saved = (await positions.load()).get(POSITION_KEY)
    if saved:
        position = FeedPosition.from_dict(saved)
        log.info("TIMS backfill: the live source already has a position (after %s); keeping it",
                 position.describe())
        return position
    position = FeedPosition()
    since = format_ts((now or datetime.now(timezone.utc)) - HANDOVER_LOOKBACK)
    cursor: str | None = None
    while True:
        page = await client.changes(cursor=cursor, since=None if cursor else since, limit=1000,
                                    entities=config.entities or None)
        for change in page.changes:
            position.note(str(change["change_id"]), str(change["updated_at"]))
        cursor = page.next_cursor
        if not page.has_more:
            break
    position.cursor = cursor
    position.prune(config.overlap_seconds)
    await positions.save(POSITION_KEY, position.as_dict())
    log.info("TIMS backfill: live position recorded after %s", position.describe())
    return position


async def snapshot_entity(client: TimsClient, publisher: Publisher, entity: str,
                          page_size: int = PAGE_SIZE) -> int:
    """Publish every record of one entity, page by page (each page acked before the next)."""
    topic = f"src.tims.{entity}"
    count = 0
    after: str | None = None
    with tqdm(desc=f"TIMS {resource_for(entity).name}", unit=" records", file=sys.stderr) as bar:
        while True:
            records, more = await client.list_page(entity, after=after, limit=page_size)
            events = [snapshot_event(entity, r) for r in records]
            if events:
                await publisher.send_many(topic, [(e.record_id, e.model_dump(mode="json")) for e in events])
                count += len(events)
                bar.update(len(events))
                after = events[-1].record_id
            if not more or not records:
                return count


async def run_backfill(config: TimsConfig, context: ConnectorContext, entities: Sequence[str] | None) -> int:
    """Snapshot ``entities`` (default: the source's entities, else all); returns events published."""
    wanted = list(entities or config.entities or RESOURCES)
    unknown = sorted(set(wanted) - set(RESOURCES))
    if unknown:
        raise ConfigError("tims", [("entities", f"unknown {unknown}; known: {', '.join(RESOURCES)}")])
    client = TimsClient(config)

    async def snapshot(publisher: Publisher, positions: PositionStore, entity: str) -> int:
        return await snapshot_entity(client, publisher, entity)

    try:
        return await snapshot_each(context.target, "tims", wanted, snapshot,
                                   before=lambda positions: record_handover(client, positions, config))
    finally:
        await client.aclose()

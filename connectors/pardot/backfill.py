"""Snapshot Pardot prospects and visitor activities into their topics as SNAPSHOT events.

For each stream without a live position, the newest (updatedAt, id) in Pardot is recorded first;
the live source then starts an overlap window before it, so anything that changes during the
snapshot is read again rather than missed. Snapshot event ids equal the live ones
(``pardot:<entity>:<id>:<updatedAt>``): a record read by both is one event downstream.
"""

from __future__ import annotations

import logging
import sys
from contextlib import aclosing
from typing import Sequence

from tqdm import tqdm

from connectors.backfill import snapshot_each
from connectors.errors import ConfigError
from connectors.kafka_io import PositionStore, Publisher
from connectors.pardot.client import PardotClient, shared_budget
from connectors.pardot.config import PardotConfig
from connectors.pardot.source import STREAMS, Stream, StreamPosition, row_event, stream_for
from connectors.salesforce.auth import TokenProvider
from connectors.spec import ConnectorContext

__all__ = ["run_backfill", "record_handover", "snapshot_stream"]

log = logging.getLogger(__name__)


async def record_handover(client: PardotClient, positions: PositionStore, stream: Stream) -> StreamPosition:
    """Save the newest (updatedAt, id) as the stream's live position unless it has one."""
    saved = (await positions.load()).get(stream.position_key)
    if saved:
        log.info("Pardot backfill: %s already has a live position; keeping it", stream.entity)
        return StreamPosition.from_dict(saved)
    position = StreamPosition()
    params = {"orderBy": "updatedAt DESC,id DESC", **({"deleted": "all"} if stream.soft_delete else {})}
    async with aclosing(client.query(stream.collection, ("id", "updatedAt"), params, limit=1)) as pages:
        async for rows in pages:
            if rows:
                position.updated_at, position.id = str(rows[0]["updatedAt"]), str(rows[0]["id"])
            break
    if position.updated_at is not None:
        await positions.save(stream.position_key, position.as_dict())
        log.info("Pardot backfill: %s live position recorded at %s", stream.entity, position.updated_at)
    return position


async def snapshot_stream(client: PardotClient, publisher: Publisher, stream: Stream, page_size: int = 1000) -> int:
    """Publish every current (not deleted) record of the stream, page by page."""
    topic = f"src.pardot.{stream.entity}"
    count = 0
    with tqdm(desc=f"Pardot {stream.collection}", unit=" records", file=sys.stderr) as bar:
        async for rows in client.query(stream.collection, stream.fields, {"orderBy": "id"}, limit=page_size):
            events = [row_event(stream, row, "SNAPSHOT") for row in rows]
            if events:
                await publisher.send_many(topic, [(e.record_id, e.model_dump(mode="json")) for e in events])
                count += len(events)
                bar.update(len(events))
    return count


async def run_backfill(config: PardotConfig, context: ConnectorContext, entities: Sequence[str] | None) -> int:
    """Snapshot ``entities`` (``prospect``, ``visitor_activity``; default: the source's); returns
    the events published."""
    wanted = list(entities or config.entities)
    unknown = set(wanted) - set(STREAMS)
    if unknown:
        raise ConfigError("pardot", [("entities", f"unknown {sorted(unknown)}; choose from {', '.join(STREAMS)}")])
    tokens = TokenProvider(context.config("salesforce"))
    client = PardotClient(config, tokens, shared_budget(config))

    async def snapshot(publisher: Publisher, positions: PositionStore, entity: str) -> int:
        stream = stream_for(config, entity)
        await record_handover(client, positions, stream)
        return await snapshot_stream(client, publisher, stream)

    try:
        return await snapshot_each(context.target, "pardot", wanted, snapshot)
    finally:
        await client.aclose()
        await tokens.aclose()

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
from typing import TYPE_CHECKING

from tqdm import tqdm

from connectors.kafka_io import PositionStore, Publisher
from connectors.pardot.client import PardotClient
from connectors.pardot.source import STREAMS, PardotSourceOptions, Stream, StreamPosition, build_client, row_event

if TYPE_CHECKING:
    from stream_app.settings import Settings

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


async def run_backfill(settings: "Settings", entities: list[str] | None) -> int:
    """Snapshot ``entities`` (``prospect``, ``visitor_activity``; default: the source's); returns
    the events published."""
    from stream_app.run_source import kafka_target

    options = PardotSourceOptions.from_settings(settings)
    wanted = list(entities or options.entities)
    unknown = set(wanted) - set(STREAMS)
    if unknown:
        raise ValueError(f"unknown Pardot entities {sorted(unknown)}; choose from {', '.join(STREAMS)}")
    target = kafka_target(settings)
    client, tokens = build_client(settings)
    publisher, positions = Publisher(target, client_id="pardot-backfill"), PositionStore(target)
    await publisher.start()
    await positions.start()
    try:
        total = 0
        for entity in wanted:
            stream = options.stream(entity)
            await record_handover(client, positions, stream)
            published = await snapshot_stream(client, publisher, stream)
            log.info("Pardot backfill: %d %s records published", published, entity)
            total += published
        return total
    finally:
        await client.aclose()
        await tokens.aclose()
        await positions.stop()
        await publisher.stop()

"""Initial load: snapshot the records that exist into ``src.salesforce.<Entity>`` (SNAPSHOT events).

The handover to the live stream: before the first SOQL page is read, each channel that has no
saved position gets one, the channel's latest replay id (the first answer of a LATEST
subscription). Every change committed after that point is then delivered by the live source,
which resumes from it; every change before it is in the snapshot, which is read afterwards. So
nothing falls between them, whichever of the two runs first. A channel that already has a
position is left alone: the live source is already covering it. Overlap (a change both in the
snapshot and in the stream) is harmless: same record state, later commit time wins downstream.

``stream-app backfill salesforce [--entity X]`` calls :func:`run_backfill`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

from tqdm import tqdm

from connectors.backfill import publishing
from connectors.errors import ConfigError, ConnectorError, FatalError
from connectors.kafka_io import KafkaTarget, PositionStore
from connectors.salesforce.auth import TokenProvider
from connectors.salesforce.cdc import MalformedEvent
from connectors.salesforce.client import SalesforceRest
from connectors.salesforce.config import SalesforceConfig
from connectors.salesforce.pubsub import PubSubClient
from connectors.salesforce.source import Snapshots, position_key
from connectors.spec import ConnectorContext

__all__ = ["BackfillReport", "backfill", "run_backfill"]

log = logging.getLogger(__name__)


@dataclass
class BackfillReport:
    records: dict[str, int] = field(default_factory=dict)
    #: channels whose starting position the backfill recorded (replay id, hex)
    handed_over: dict[str, str] = field(default_factory=dict)
    #: channels that already had a position (the live source covers them)
    kept: list[str] = field(default_factory=list)


async def _hand_over(config: SalesforceConfig, entities: Sequence[str], pubsub: PubSubClient,
                     positions: PositionStore, started_ms: int, timeout: float, report: BackfillReport) -> None:
    saved = await positions.load()
    channels = [c for c in config.channel_list() if config.entities_of(c) & set(entities)]
    missing = [c for c in channels if not (saved.get(position_key(c)) or {}).get("replay_id")]
    report.kept = [c for c in channels if c not in missing]
    latest = await asyncio.gather(*(pubsub.latest_replay_id(c, timeout) for c in missing))
    for channel, replay_id in zip(missing, latest):
        await positions.save(position_key(channel), {
            "replay_id": replay_id.hex(), "commit_timestamp": started_ms, "saved_at": started_ms,
            "saved_by": "backfill"})
        report.handed_over[channel] = replay_id.hex()
        log.info("backfill: %s starts the live stream at replay id %s", channel, replay_id.hex())


async def _count(rest: SalesforceRest, entity: str) -> int | None:
    try:
        response = await rest.request("GET", "query", params={"q": f"SELECT COUNT() FROM {entity}"})
        return int(response.json().get("totalSize"))
    except (ConnectorError, TypeError, ValueError):
        return None  # a progress bar without a total is still a progress bar


async def backfill(
    target: KafkaTarget,
    rest: SalesforceRest,
    pubsub: PubSubClient,
    entities: Sequence[str],
    *,
    config: SalesforceConfig,
    progress: bool = True,
    handover_timeout: float = 300.0,
) -> BackfillReport:
    """Record the handover positions, then publish every record of ``entities`` as SNAPSHOT."""
    report = BackfillReport()
    async with publishing(target, "salesforce-backfill") as (publisher, positions):
        started_ms = int(time.time() * 1000)
        await _hand_over(config, entities, pubsub, positions, started_ms, handover_timeout, report)
        snapshots = Snapshots(rest, pubsub, config.snapshot_chunk)
        for entity in entities:
            position = {"backfill": started_ms}
            total = await _count(rest, entity)
            published = 0
            with tqdm(total=total, desc=entity, unit="rec", file=sys.stderr, disable=not progress) as bar:
                async for chunk in snapshots.since(entity, None, position, include_deleted=False):
                    await publisher.send_many(f"src.salesforce.{entity}",
                                              [(e.record_id, e.model_dump(mode="json")) for e in chunk])
                    published += len(chunk)
                    bar.update(len(chunk))
            report.records[entity] = published
            log.info("backfill: %d %s record(s) published", published, entity)
    return report


async def run_backfill(config: SalesforceConfig, context: ConnectorContext, entities: Sequence[str] | None) -> int:
    """``stream-app backfill salesforce [--entity X]``: returns the records published; ConfigError
    for an entity that CONNECT_SALESFORCE_ENTITIES does not list."""
    chosen = list(dict.fromkeys(entities or config.entities))
    unknown = [e for e in chosen if e not in config.entities]
    if unknown:
        raise ConfigError("salesforce", [("entities", f"does not list {', '.join(unknown)} "
                                                      f"({', '.join(config.entities)})")])
    tokens = TokenProvider(config)
    rest = SalesforceRest(config, tokens)
    pubsub = PubSubClient(config, tokens)
    try:
        report = await backfill(context.target, rest, pubsub, chosen, config=config)
    except MalformedEvent as exc:
        raise FatalError(f"a change event schema could not be read: {exc}") from exc
    finally:
        await pubsub.close()
        await rest.aclose()
        await tokens.aclose()
    for entity, count in report.records.items():
        print(f"{entity}: {count} record(s) published to src.salesforce.{entity}", file=sys.stderr)
    for channel, replay_id in report.handed_over.items():
        print(f"{channel}: the live source starts at replay id {replay_id}", file=sys.stderr)
    for channel in report.kept:
        print(f"{channel}: already followed by the live source; position left as it was", file=sys.stderr)
    return sum(report.records.values())

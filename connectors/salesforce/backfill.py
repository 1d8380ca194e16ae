"""Initial load: snapshot the records that exist into ``src.salesforce.<Entity>`` (SNAPSHOT events).

The handover to the live stream, without waiting on the stream: before the first SOQL page is
read, each channel that has no saved position gets one that says "resync since the backfill
began" (less the resync margin, for clock skew). The live source, on its start, subscribes at
LATEST and, once the stream first answers, reads over REST what changed since then (the same
path as after an expired replay id); every change after the stream's start comes through the
stream, every change before the backfill began is in the snapshot. So nothing falls between
them, whichever runs first, and the backfill never waits for a quiet channel's keep-alive (up to
270 s). A channel that already has a position is left alone: the live source is already
covering it. Overlap (a change in the snapshot and again in the resync or the stream) is
harmless: same record state, later commit time wins downstream.

``stream-app backfill salesforce [--entity X]`` calls :func:`run_backfill`.
"""

from __future__ import annotations

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
from connectors.salesforce.cdc import MalformedEvent, soql_datetime
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
    #: channels the backfill handed over: the live source reads the changes since this time (epoch ms)
    handed_over: dict[str, int] = field(default_factory=dict)
    #: channels that already had a position (the live source covers them)
    kept: list[str] = field(default_factory=list)


async def _hand_over(config: SalesforceConfig, entities: Sequence[str], positions: PositionStore, started_ms: int,
                     report: BackfillReport) -> None:
    saved = await positions.load()
    channels = [c for c in config.channel_list() if config.entities_of(c) & set(entities)]
    missing = [c for c in channels if not (saved.get(position_key(c)) or {}).get("replay_id")]
    report.kept = [c for c in channels if c not in missing]
    since = started_ms - config.margin_ms
    for channel in missing:
        await positions.save(position_key(channel), {"resync_since": since, "saved_at": started_ms,
                                                     "saved_by": "backfill"})
        report.handed_over[channel] = since
        log.info("backfill: %s is handed over: the live source reads the changes since %s", channel,
                 soql_datetime(since))


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
) -> BackfillReport:
    """Record the handover positions, then publish every record of ``entities`` as SNAPSHOT."""
    report = BackfillReport()
    async with publishing(target, "salesforce-backfill") as (publisher, positions):
        started_ms = int(time.time() * 1000)
        await _hand_over(config, entities, positions, started_ms, report)
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
    for channel, since in report.handed_over.items():
        print(f"{channel}: handed over: the live source follows the stream from its start and reads the changes "
              f"since {soql_datetime(since)} over REST", file=sys.stderr)
    for channel in report.kept:
        print(f"{channel}: already followed by the live source; position left as it was", file=sys.stderr)
    return sum(report.records.values())

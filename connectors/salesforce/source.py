"""The Salesforce CDC source: Pub/Sub API change events → ``src.salesforce.<Entity>``.

One subscription per channel (``/data/<Entity>ChangeEvent`` per configured entity, or channels
given explicitly). Each FetchResponse is decoded (connectors.salesforce.cdc), published keyed by
record id, and only once Kafka acked all of it is the channel's position saved under
``salesforce:<channel>``: the replay id, the last commit timestamp, the latest replay id.
docs/adr/0005-salesforce-cdc-source.md says why each rule below is what it is:

- start: CUSTOM from the saved replay id; with none, EARLIEST (everything retained is replayed).
- keep-alive: its latest_replay_id becomes the saved position, so a quiet channel never holds a
  replay id that ages out of retention.
- gap events: the named records are read over REST → SNAPSHOT (or DELETE when gone).
- GAP_OVERFLOW: the entity is resynced over REST since the overflow's commit time minus a margin.
- saved replay id past retention: counted, logged at ERROR, resubscribed at LATEST, and every
  entity of the channel resynced since the last saved commit time minus the margin.
- auth error: token refreshed, resubscribed from the saved position; UNAVAILABLE and friends:
  resubscribed after exponential backoff with jitter.
- malformed events: quarantined with the reason; the stream goes on.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from aiokafka.errors import KafkaError

from connectors.envelope import SourceEvent
from connectors.errors import AuthExpiredError, RetryableError
from connectors.kafka_io import PositionStore, Publisher
from connectors.retry import RetryPolicy
from connectors.salesforce.auth import Token
from connectors.salesforce.cdc import (
    ChangeSchema,
    DecodedChange,
    MalformedEvent,
    change_events,
    channel_for,
    decode_change,
    gap_delete_event,
    snapshot_event,
    soql_datetime,
)
from connectors.salesforce.client import SalesforceRest
from connectors.salesforce.config import SalesforceConfig
from connectors.salesforce.pubsub import (
    FetchBatch,
    PubSubClient,
    ReceivedEvent,
    ReplayIdExpired,
    ReplayPreset,
    SchemaNotFound,
    Subscription,
)
from connectors.redact import redact_fields
from connectors.source import Source

__all__ = ["SalesforceCdcSource", "Snapshots", "position_key"]

log = logging.getLogger(__name__)


def position_key(channel: str) -> str:
    return f"salesforce:{channel}"


class Snapshots:
    """Records read over REST as SNAPSHOT (or DELETE) events: gap refetch, resync, backfill.

    The SELECT list is the entity's change-event schema flattened, so a snapshot carries the
    same fields, named the same way, as a CREATE event."""

    def __init__(self, rest: SalesforceRest, pubsub: PubSubClient, chunk: int = 500) -> None:
        self.rest = rest
        self.pubsub = pubsub
        self.chunk = chunk
        self._schemas: dict[str, ChangeSchema] = {}

    def remember(self, entity: str, schema: ChangeSchema) -> None:
        self._schemas[entity] = schema

    async def fields(self, entity: str) -> list[str]:
        if entity not in self._schemas:
            self._schemas[entity] = await self.pubsub.topic_schema(channel_for(entity))
        names = self._schemas[entity].flat_field_names()
        return list(dict.fromkeys(["Id", *names, "LastModifiedDate"]))

    async def by_ids(self, change: DecodedChange, channel: str) -> list[SourceEvent]:
        """A gap event's records as they are now; the ones REST no longer has were deleted."""
        fields = await self.fields(change.entity)
        rows = await self.rest.retrieve(change.entity, list(change.record_ids), fields[1:])
        position = {"channel": channel, "replay_id": change.replay_id.hex(), "refetch": change.change_type}
        found = {str(row["Id"]): row for row in rows}
        events: list[SourceEvent] = []
        for record_id in change.record_ids:
            row = found.get(record_id) or next((r for i, r in found.items() if i[:15] == record_id[:15]), None)
            if row is None:
                events.append(gap_delete_event(change, record_id, channel))
            else:
                events.append(snapshot_event(change.entity, row, position, change.commit_timestamp))
        return events

    async def since(self, entity: str, since_ms: int | None, position: dict[str, Any], *,
                    include_deleted: bool = True) -> AsyncIterator[list[SourceEvent]]:
        """Every record modified since ``since_ms`` (all records when None), in chunks.

        Filters on SystemModstamp: it is never older than LastModifiedDate, also moves on
        deletes and system updates, and is the indexed field Salesforce recommends for this."""
        fields = await self.fields(entity)
        if include_deleted:
            fields.append("IsDeleted")
        soql = f"SELECT {', '.join(fields)} FROM {entity}"
        if since_ms is not None:
            soql += f" WHERE SystemModstamp >= {soql_datetime(since_ms)} ORDER BY SystemModstamp, Id"
        now = int(time.time() * 1000)
        chunk: list[SourceEvent] = []
        async for row in self.rest.query(soql, include_deleted=include_deleted):
            chunk.append(snapshot_event(entity, row, position, now))
            if len(chunk) >= self.chunk:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def fill_diffs(self, change: DecodedChange, events: list[SourceEvent]) -> list[SourceEvent]:
        """Fields sent as a diff carry no value: read their current values over REST."""
        rows = await self.rest.retrieve(change.entity, list(change.record_ids), change.diff_fields)
        by_id = {str(row["Id"]): row for row in rows}
        out = []
        for event in events:
            row = by_id.get(event.record_id, {})
            values = {name: row.get(name) for name in change.diff_fields}
            out.append(event.model_copy(update={"fields": {**event.fields, **values}}))
        return out


@dataclass
class _Channel:
    """One channel's progress; ``replay_id`` only moves after Kafka acked and the save landed."""

    name: str
    entities: frozenset[str]
    replay_id: bytes | None = None
    commit_timestamp: int | None = None
    latest_replay_id: bytes | None = None
    force_latest: bool = False
    #: after an expired replay id, or a backfill's handover: resync on the first answer of the
    #: LATEST stream
    resync_pending: bool = False
    resync_since: int | None = None
    #: when a keep-alive last showed this source had read everything (epoch ms): a bound for the
    #: resync after an expiry on a channel that never saw a change
    caught_up_at: int | None = None

    @property
    def key(self) -> str:
        return position_key(self.name)


class SalesforceCdcSource(Source):
    system = "salesforce"

    def __init__(
        self,
        publisher: Publisher,
        positions: PositionStore,
        pubsub: PubSubClient,
        rest: SalesforceRest,
        config: SalesforceConfig,
        *,
        policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__(publisher, positions)
        self.pubsub = pubsub
        self.rest = rest
        self.config = config
        self.policy = policy or RetryPolicy(base_delay=0.5, max_delay=30.0)
        self.snapshots = Snapshots(rest, pubsub, config.snapshot_chunk)
        self.channels: dict[str, _Channel] = {}
        # counters (the metrics layer reads them)
        self.replay_expired = 0
        self.resyncs = 0
        self.gap_refetches = 0
        self.quarantined = 0
        self.reconnects = 0
        self.auth_refreshes = 0
        self.keepalives = 0

    async def start(self) -> None:
        await super().start()
        saved = await self.positions.load()
        for name in self.config.channel_list():
            channel = _Channel(name, self.config.entities_of(name))
            position = saved.get(channel.key)
            if position and position.get("replay_id"):
                channel.replay_id = bytes.fromhex(position["replay_id"])
                channel.commit_timestamp = position.get("commit_timestamp")
                latest = position.get("latest_replay_id")
                channel.latest_replay_id = bytes.fromhex(latest) if latest else None
                channel.caught_up_at = position.get("caught_up_at")
            elif position and isinstance(position.get("resync_since"), int):
                # handed over by a backfill (connectors/salesforce/backfill.py): the stream from
                # LATEST, and what changed since the snapshot began read over REST once it answers
                channel.force_latest = channel.resync_pending = True
                channel.resync_since = position["resync_since"]
                log.info("%s: taking over from a backfill: following the stream from now on, and reading "
                         "the changes since %s over REST once it answers", name, soql_datetime(channel.resync_since))
            self.channels[name] = channel

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._follow(c), name=f"salesforce {c.name}") for c in self.channels.values()]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    self.stop()
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        try:
            await self.pubsub.close()
            await self.rest.aclose()
            await self.rest.tokens.aclose()
        finally:
            await super().close()

    # -- one channel -----------------------------------------------------------------------------
    def _subscription(self, channel: _Channel) -> Subscription:
        if channel.replay_id:
            preset, replay_id = ReplayPreset.CUSTOM, channel.replay_id
        elif channel.force_latest:
            preset, replay_id = ReplayPreset.LATEST, b""
        else:
            preset, replay_id = getattr(ReplayPreset, self.config.first_start), b""
        return self.pubsub.subscribe(channel.name, preset, replay_id, self.config.batch_size)

    async def _follow(self, channel: _Channel) -> None:
        failures = 0
        stale: Token | None = None
        while not self.stopping:
            subscription = self._subscription(channel)
            try:
                if stale is not None:
                    await self.pubsub.tokens.refresh(stale)
                    stale = None
                async with subscription:
                    log.info("subscribed to %s from %s", channel.name,
                             channel.replay_id.hex() if channel.replay_id else
                             "LATEST" if channel.force_latest else self.config.first_start)
                    while True:
                        batch = await self._next(subscription)
                        if batch is None:
                            return
                        failures = 0
                        await self._handle(channel, batch)
                        self.polled(channel.name)
                        await subscription.consumed()
            except ReplayIdExpired as exc:
                self._replay_expired(channel, exc)
            except AuthExpiredError as exc:
                failures += 1
                self.auth_refreshes += 1
                log.warning("Pub/Sub %s: token rejected (%s); refreshing it and resubscribing from the saved "
                            "position", channel.name, exc.code)
                stale = subscription.token
                if failures > 1 and await self.sleep(self.policy.delay(failures - 1)):
                    return
            except (RetryableError, KafkaError) as exc:
                failures += 1
                self.reconnects += 1
                delay = self.policy.delay(failures, getattr(exc, "retry_after", None))
                log.warning("Pub/Sub %s: %s; resubscribing from the saved position in %.1fs",
                            channel.name, exc, delay)
                if await self.sleep(delay):
                    return

    async def _next(self, subscription: Subscription) -> FetchBatch | None:
        """The next batch, or None once stop() was called (a batch in hand is finished first)."""
        read = asyncio.ensure_future(subscription.next_batch())
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if read.done():
            return read.result()
        read.cancel()
        await asyncio.gather(read, return_exceptions=True)
        return None

    def _replay_expired(self, channel: _Channel, exc: ReplayIdExpired) -> None:
        self.replay_expired += 1
        # everything before the last change taken, or the last keep-alive (caught up), was handled
        known = max((t for t in (channel.commit_timestamp, channel.caught_up_at) if t), default=None)
        since = known - self.config.margin_ms if known else None
        log.error(
            "Pub/Sub %s: the saved replay id %s was refused (%s: past the retention window?). Events "
            "since then cannot be replayed: resubscribing at LATEST and resyncing %s over REST %s "
            "(replay id expiries so far: %d)",
            channel.name, channel.replay_id.hex() if channel.replay_id else "-", exc.code,
            ", ".join(sorted(channel.entities)),
            f"since {soql_datetime(since)}" if since is not None else "in full (no change or keep-alive saved)",
            self.replay_expired,
        )
        channel.replay_id = None
        channel.force_latest = True
        channel.resync_pending = True
        channel.resync_since = since

    async def _handle(self, channel: _Channel, batch: FetchBatch) -> None:
        if channel.resync_pending:
            # The LATEST stream has answered, so its start is fixed: the resync covers up to now,
            # the stream everything after its start. Nothing falls between.
            for entity in sorted(channel.entities):
                await self._resync(channel, entity, channel.resync_since, "expired replay id")
            channel.resync_pending = False
        pending: list[SourceEvent] = []
        for received in batch.events:
            change = await self._decode(channel, received)
            if change is None:
                continue
            channel.commit_timestamp = max(channel.commit_timestamp or 0, change.commit_timestamp)
            if change.is_overflow or change.is_wildcard:
                await self.publish(pending)
                pending = []
                since = None if change.is_wildcard else change.commit_timestamp - self.config.margin_ms
                await self._resync(channel, change.entity, since, change.change_type if change.is_overflow
                                   else "wildcard record ids", replay_id=change.replay_id)
            elif change.is_gap:
                self.gap_refetches += 1
                log.info("Pub/Sub %s: %s for %d %s record(s); reading them over REST", channel.name,
                         change.change_type, len(change.record_ids), change.entity)
                pending.extend(await self.snapshots.by_ids(change, channel.name))
            else:
                events = change_events(change, channel.name)
                if change.diff_fields:
                    events = await self.snapshots.fill_diffs(change, events)
                pending.extend(events)
        if log.isEnabledFor(logging.DEBUG):
            for event in pending:
                log.debug("%s %s %s %s %s", channel.name, event.change_type, event.entity, event.record_id,
                          redact_fields(event.fields))
        await self.publish(pending)
        await self._save(channel, batch)

    async def _resync(self, channel: _Channel, entity: str, since: int | None, why: str,
                      replay_id: bytes | None = None) -> None:
        self.resyncs += 1
        log.warning("Pub/Sub %s: %s; resyncing %s over REST %s", channel.name, why, entity,
                    f"since {soql_datetime(since)}" if since is not None else "in full")
        position: dict[str, Any] = {"channel": channel.name, "resync": why}
        if replay_id:
            position["replay_id"] = replay_id.hex()
        count = 0
        async for chunk in self.snapshots.since(entity, since, position, include_deleted=since is not None):
            await self.publish(chunk)
            count += len(chunk)
        log.warning("Pub/Sub %s: resync of %s published %d record(s)", channel.name, entity, count)

    async def _decode(self, channel: _Channel, received: ReceivedEvent) -> DecodedChange | None:
        try:
            schema = await self.pubsub.schema(received.schema_id)
            change = decode_change(received.payload, schema, received.replay_id, channel.entities)
        except MalformedEvent as exc:
            await self._quarantine(channel, received, exc.reason)
            return None
        except SchemaNotFound:
            await self._quarantine(channel, received, f"unknown schema {received.schema_id}")
            return None
        self.snapshots.remember(change.entity, schema)
        return change

    async def _quarantine(self, channel: _Channel, received: ReceivedEvent, reason: str) -> None:
        context = {"channel": channel.name, "replay_id": received.replay_id.hex(),
                   "schema_id": received.schema_id, "event_uuid": received.event_uuid}
        await self.publisher.quarantine("salesforce", reason, base64.b64encode(received.payload).decode(), context)
        self.quarantined += 1
        log.warning("Pub/Sub %s: event %s quarantined: %s", channel.name, received.replay_id.hex(), reason)

    async def _save(self, channel: _Channel, batch: FetchBatch) -> None:
        if batch.keepalive:
            self.keepalives += 1
        if not batch.events and batch.latest_replay_id:
            channel.caught_up_at = int(time.time() * 1000)
        replay_id = batch.events[-1].replay_id if batch.events else batch.latest_replay_id
        if not replay_id or (replay_id == channel.replay_id and batch.latest_replay_id == channel.latest_replay_id):
            return
        position: dict[str, Any] = {"replay_id": replay_id.hex(), "commit_timestamp": channel.commit_timestamp,
                                    "saved_at": int(time.time() * 1000)}
        if batch.latest_replay_id:
            position["latest_replay_id"] = batch.latest_replay_id.hex()
        if channel.caught_up_at:
            position["caught_up_at"] = channel.caught_up_at
        await self.positions.save(channel.key, position)
        channel.replay_id = replay_id
        channel.latest_replay_id = batch.latest_replay_id or None
        channel.force_latest = False

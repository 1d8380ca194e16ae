"""Faust agents of the customer sync, thin around the pure modules beside them.

Stages, each keyed so that its table lookups run on the partition that owns the key:

    src.* ──ingest──► customer_sync.identify (key: system:entity:id)  id_map, pending
                          │ hit                 │ miss, has email
                          │                     ▼
                          │           customer_sync.match (key: email)  email_index
                          ▼                     │
                      customer_sync.merge (key: customer key)  customer_master
                          ├─► sink.<system>.<object>   (writes)
                          ├─► audit.conflicts
                          └─► identify / match          (new links)
    links.tims ──ingest──► merge

Where a table write would stop a redone event from producing its output again (the golden
record remembers event ids; released parked events leave ``pending``), the stage waits for the
acks of its outputs before the write. Elsewhere sends are not awaited: Faust flushes the
producer before committing offsets, so a crash redoes the event and nothing is lost.

``merge`` does that wait once per batch rather than once per event (docs/adr/0011): it takes
``stream.noack_take(CONNECT_FLOW_BATCH_SIZE, within=CONNECT_FLOW_LINGER)`` batches, folds each
event into the batch's copy of its customer record (several events for one key see each other,
in offset order), publishes as it goes, then (:meth:`Batch.settle`) awaits every output's ack
at once, writes each changed record under its own event (Faust picks a table key's partition
from the current event, and RocksDB reads only that partition), and only then acks the events,
in order. A batch interrupted before its acks is redone whole: its outputs go out again, which
downstream tolerates (sinks are version-guarded, links are idempotent). ``take()`` is never
used: it acks a batch whose generator is closed mid-way (docs/adr/0007). The other stages
handle one event at a time: batching them measured no gain (the worker is CPU-bound in Faust's
per-message work) and each batched hop adds up to a linger of latency.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import Counter
from typing import Any, Awaitable, Callable

from faust.types import EventT, StreamT
from pydantic import ValidationError

from connectors.envelope import SourceEvent
from stream_app import metrics
from stream_app.app import app, settings
from stream_app.batching import as_current
from stream_app.topics import owned_topic
from topologies.customer_sync.cleansing import Uncleanable
from topologies.customer_sync.golden import Policy, apply_event, apply_tims_link, new_record
from topologies.customer_sync.identity import crossrefs, mint_key, normalize_email, source_ref
from topologies.customer_sync.mapping import load_mappings

__all__ = ["counters", "SOURCE_TOPICS"]

log = logging.getLogger(__name__)
FLOW = "customer_sync"
SOURCE_TOPICS = ["src.salesforce.Lead", "src.salesforce.Contact", "src.salesforce.Account",
                 "src.pardot.prospect", "src.tims.customer"]
PENDING_LIMIT = 50

mappings = load_mappings(settings.mappings_dir)
policy = Policy(our_clients={"salesforce": settings.salesforce_client_name, "tims": settings.tims_client_name})
counters: Counter[str] = Counter()
metrics.declare_flow(FLOW, ("salesforce", "pardot", "tims"))

source_topic = owned_topic(*SOURCE_TOPICS)
tims_links_topic = owned_topic("links.tims")
identify_topic = owned_topic(f"{FLOW}.identify")
match_topic = owned_topic(f"{FLOW}.match")
merge_topic = owned_topic(f"{FLOW}.merge")
conflicts_topic = owned_topic("audit.conflicts")
quarantine_topic = owned_topic(f"quarantine.{FLOW}")
sink_topics = {target: owned_topic(f"sink.{target}") for target in mappings.outbound}

id_map = app.Table("id_map", default=None, key_type=str)
pending = app.Table("pending_identity", default=None, key_type=str)
email_index = app.Table("email_index", default=None, key_type=str)
customer_master = app.Table("customer_master", default=None, key_type=str)


async def _send(topic: Any, key: str, value: Any) -> Any:
    """Publish; returns the future of the broker's ack. Faust flushes the producer before it
    commits offsets, so a send nobody awaits is still never lost: the event is redone."""
    return await topic.send(key=key.encode(), value=value)


async def _acked(*futures: Any) -> None:
    """Wait for the acks of sends that a table write is about to make unrepeatable."""
    if futures:
        await asyncio.gather(*futures)


class Batch:
    """The working state of one batch, settled as a whole by :meth:`settle`.

    A table row is read once per batch, as a copy, under the event that first asks for it;
    later events of the batch read and change that copy, so events for one key see each
    other's changes in offset order while the table itself stays as it was until the batch
    settles: an interrupted batch leaves nothing half-done, whatever the store."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], Any] = {}
        self._changed: dict[tuple[str, str], tuple[Any, EventT]] = {}
        self._sent: list[Any] = []

    def get(self, table: Any, key: str, event: EventT) -> Any:
        slot = (table.name, key)
        if slot not in self._rows:
            with as_current(event):
                self._rows[slot] = copy.deepcopy(table.get(key))
        return self._rows[slot]

    def put(self, table: Any, key: str, value: Any, event: EventT) -> None:
        """Write ``value`` when the batch settles, under ``event`` (the latest event for the key:
        it came from the partition that owns the key)."""
        slot = (table.name, key)
        self._rows[slot] = value
        self._changed[slot] = (table, event)

    async def send(self, topic: Any, key: str, value: Any) -> None:
        """Publish now; the batch's writes wait for the ack (they would stop a redone event from
        publishing it again)."""
        self._sent.append(await _send(topic, key, value))

    async def settle(self) -> None:
        """One wait for every ack, then the writes, each under its own event."""
        await _acked(*self._sent)
        for (_, key), (table, event) in self._changed.items():
            with as_current(event):
                table[key] = self._rows[(table.name, key)]
        self._sent.clear()
        self._changed.clear()


Handler = Callable[[Batch, EventT], Awaitable[None]]


async def run_batches(stream: StreamT, handle: Handler, *, size: int, linger: float) -> None:
    """A batched stage: ``handle`` each event of a batch in turn, settle the batch, then ack its
    events in order, so the offsets Faust commits never pass an event whose work is not safe."""
    async for events in stream.noack_take(size, within=linger):
        batch = Batch()
        for event in events:
            await handle(batch, event)
        await batch.settle()
        for event in events:
            await stream.ack(event)


async def _quarantine(reason: str, raw: Any) -> None:
    counters["quarantined"] += 1
    metrics.observe_quarantined(FLOW)
    await _send(quarantine_topic, FLOW, {"flow": FLOW, "reason": reason, "raw": raw})


def _email_of(event: SourceEvent) -> str | None:
    return normalize_email(event.fields.get("Email", event.fields.get("email")))


@app.agent(source_topic, concurrency=1)
async def ingest(stream):  # type: ignore[no-untyped-def]
    """Validate source events and re-key them by source reference."""
    async for value in stream:
        try:
            event = SourceEvent.model_validate(value)
        except ValidationError as exc:
            await _quarantine(f"not a source event: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", value)
            continue
        counters["events_in"] += 1
        metrics.observe_event_in(FLOW, event.source, event.entity)
        ref = source_ref(event)
        tries = [ref, *crossrefs(event)]
        await _send(identify_topic, ref, {"kind": "event", "event": event.model_dump(mode="json"),
                                          "tries": tries, "i": 0})


@app.agent(tims_links_topic, concurrency=1)
async def tims_links(stream):  # type: ignore[no-untyped-def]
    """TIMS ids from the TIMS writer go to the customer they were created for."""
    async for value in stream:
        key, tims_id = value.get("record_key"), value.get("tims_id")
        if not key or not tims_id:
            await _quarantine("links.tims entry without record_key or tims_id", value)
            continue
        await _send(merge_topic, key, {"kind": "tims_link", "tims_id": tims_id})


@app.agent(identify_topic, concurrency=1)
async def identify(stream):  # type: ignore[no-untyped-def]
    async for message in stream:
        if message["kind"] == "link":
            ref, key = message["ref"], message["customer_key"]
            await _acked(*[await _send(merge_topic, key, {"kind": "event", "event": parked})
                           for parked in pending.get(ref) or []])
            if id_map.get(ref) is None:
                id_map[ref] = key
            if pending.get(ref) is not None:
                pending.pop(ref)
            continue
        tries, i = message["tries"], message["i"]
        known = id_map.get(tries[i])
        event = message["event"]
        if known is not None:
            counters["identified_by_ref"] += 1
            await _send(merge_topic, known, {"kind": "event", "event": event})
        elif i + 1 < len(tries):
            await _send(identify_topic, tries[i + 1], {**message, "i": i + 1})
        elif (email := _email_of(SourceEvent.model_validate(event))) is not None:
            await _send(match_topic, email, {"kind": "event", "event": event})
        elif message.get("park") or len(tries) == 1:
            parked = (pending.get(tries[i]) or [])[-(PENDING_LIMIT - 1):]
            pending[tries[i]] = parked + [event]
            counters["parked"] += 1
        else:
            await _send(identify_topic, tries[0], {**message, "tries": [tries[0]], "i": 0, "park": True})


@app.agent(match_topic, concurrency=1)
async def match(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        email = event.key.decode()
        message = event.value
        if message["kind"] == "link":
            if email_index.get(email) is None:
                email_index[email] = message["customer_key"]
            continue
        key = email_index.get(email)
        if key is None:
            key = mint_key(email)
            counters["customers_minted"] += 1
        await _send(merge_topic, key, {"kind": "event", "event": message["event"]})
        if email_index.get(email) is None:
            email_index[email] = key


async def merge_one(batch: Batch, event: EventT) -> None:
    """Fold one event into its customer's record (the batch's copy) and publish what follows."""
    key = event.key.decode()
    message = event.value
    record = batch.get(customer_master, key, event) or new_record(key)
    before_email = (record["fields"].get("email") or {}).get("v")
    if message["kind"] == "tims_link":
        outcome = apply_tims_link(record, message["tims_id"], mappings)
    else:
        source_event = SourceEvent.model_validate(message["event"])
        try:
            outcome = apply_event(record, source_event, mappings, policy)
        except Uncleanable as exc:  # the record is left as it was (golden.apply_event)
            await _quarantine(f"{source_event.source}.{source_event.entity} {source_event.record_id}: {exc}",
                              message["event"])
            return
        if outcome.duplicate:
            counters["duplicates"] += 1
            metrics.observe_duplicate(FLOW, source_event.source)
            return
        counters["echo_fields"] += len(outcome.echo_fields)
        metrics.observe_echo_fields(FLOW, source_event.source, len(outcome.echo_fields))
    # The record now remembers this event (dedupe): its outputs must be safe before it is written.
    for command in outcome.commands:
        await batch.send(sink_topics[f"{command.system}.{command.object}"], command.partition_key,
                         command.model_dump(mode="json"))
        metrics.observe_command_out(FLOW, command.system, command.object, command.source_commit_timestamp)
    for conflict in outcome.conflicts:
        await batch.send(conflicts_topic, key, conflict)
        metrics.observe_conflict(FLOW, conflict.get("owner"), conflict.get("rule", "unknown"))
    for ref in outcome.new_refs:
        await batch.send(identify_topic, ref, {"kind": "link", "ref": ref, "customer_key": key})
    email = (record["fields"].get("email") or {}).get("v")
    if email and email != before_email:
        await batch.send(match_topic, email, {"kind": "link", "customer_key": key})
    counters["commands"] += len(outcome.commands)
    counters["conflicts"] += len(outcome.conflicts)
    batch.put(customer_master, key, record, event)


@app.agent(merge_topic, concurrency=1)
async def merge(stream):  # type: ignore[no-untyped-def]
    """Keep the golden records, in batches: one wait for the acks per batch, not per event."""
    await run_batches(stream, merge_one, size=settings.flow_batch_size, linger=settings.flow_linger)

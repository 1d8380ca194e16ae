"""The customer sync's stages, thin around the pure modules beside them.

Identity is resolved where events come in (docs/adr/0019): every worker holds the identity
index whole (``FlowContext.replicated``: source reference or ``email:<address>`` → customer
key), so ``ingest`` sends a source event straight to its customer, keyed so that ``merge``
runs on the partition that owns the golden record:

    src.* ──ingest──► customer_sync.merge (key: customer key)  customer_master
              │           ├─► sink.<system>.<object>   (writes)
              │           ├─► audit.conflicts
              │           ├─► identity index            (new references and emails)
              │           └─► customer_sync.identify    (new links: release parked events)
              ▼ no known reference, no email
        customer_sync.identify (key: system:entity:id)  id_map, pending (parked until linked)
    links.tims ──tims_links──► merge
    an email the index does not know (a would-be new customer) ──► customer_sync.matching
        (one partition; link, review or new by probabilistic matching, then ──► merge;
        matching_stage.py, docs/adr/0036)

A hit on a reference (the record itself, then the people it names) wins over the email, so an
email change does not split a customer; a new email mints the deterministic key ``uuid5`` of
it, so two workers that meet a new person at once mint the same key. ``ingest`` waits until
this worker has read the whole index before it takes events.

Where a table write would stop a redone event from producing its output again (the golden
record remembers event ids; released parked events leave ``pending``), the stage waits for the
acks of its outputs before the write, once per batch (docs/adr/0011): ``merge``, ``identify``
and ``matching`` run outside Faust as direct table stages that keep their tables themselves
(``customer_master``; ``id_map`` and ``pending``; ``match_index``: ``FlowContext.direct_batches``,
docs/adr/0038); a batch interrupted before its acks is redone whole, which downstream tolerates
(sinks are version-guarded, links and index entries are idempotent, a released event is
deduped by its customer's record). Only ``tims_links`` is still a Faust agent.

Every stage runs behind the stage boundary (what cannot be decoded, or makes a stage raise, is
quarantined with the stage and the reason) and validates its input (``messages``). In ``merge``, an unexpected error on one event quarantines that
event with the error and rebuilds its customer's working row from the table and the batch's
earlier events for it, so one bad event never stalls a batch or kills the worker.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import EventT
from pydantic import ValidationError

from connectors.envelope import SourceEvent
from quality.matching import default_model
from topologies import customer_links
from topologies.customer_sync.cleansing import Uncleanable
from topologies.customer_sync.golden import Policy, apply_event, apply_tims_link, new_record
from topologies.customer_sync.identity import crossrefs, normalize_email, source_ref
from topologies.customer_sync.mapping import DEFAULT_MAPPING_DIR, Mappings, load_mappings
from topologies.customer_sync.matching_stage import MatchStage, Merges
from topologies.customer_sync.messages import (
    IDENTIFY, MATCH_KEY, MERGE, IdentifyErase, IdentifyEvent, IdentifyLink, MatchCandidate, MergeAbsorb,
    MergeAbsorbed, MergeErase, MergeEvent, MergeRestore, MergeTimsLink, MergeUnmerge, TimsLinkEntry,
)
from topologies.customer_sync.privacy import erased_email
from topologies.flow import BatchLike, FlowContext
from topologies.stage import agent_named, read_message, read_source_event

__all__ = ["CustomerSync", "install", "FLOW_NAME", "SOURCE_TOPICS", "LINK_TOPICS", "STAGE_TOPICS", "TABLES"]

log = logging.getLogger(__name__)
FLOW_NAME = "customer_sync"
SOURCE_TOPICS = ("src.salesforce.Lead", "src.salesforce.Contact", "src.salesforce.Account",
                 "src.pardot.prospect", "src.tims.customer", "src.shop.customer")
LINK_TOPICS = ("links.tims",)
STAGE_TOPICS = (f"{FLOW_NAME}.identify", f"{FLOW_NAME}.merge", f"{FLOW_NAME}.matching")
TABLES = ("customer_master", "id_map", "pending_identity", f"{FLOW_NAME}_identity", "match_index")
_MERGING = (MergeAbsorb, MergeAbsorbed, MergeUnmerge, MergeRestore)
PENDING_LIMIT = 50


def _email_of(event: SourceEvent) -> str | None:
    return normalize_email(event.fields.get("Email", event.fields.get("email")))


class CustomerSync:
    """The flow's topics, tables and stage bodies, built once per app by :func:`install`."""

    def __init__(self, ctx: FlowContext, mappings: Mappings, policy: Policy) -> None:
        self.ctx = ctx
        self.mappings = mappings
        self.policy = policy
        self.counters = ctx.counters
        self.source_topic = ctx.topic(*SOURCE_TOPICS)
        self.tims_links_topic = ctx.topic(*LINK_TOPICS)
        self.identify_topic, self.merge_topic, self.match_topic = (ctx.topic(name) for name in STAGE_TOPICS)
        self.conflicts_topic = ctx.topic("audit.conflicts")
        self.links_topic = ctx.topic(customer_links.TOPIC)
        self.sink_topics = {target: ctx.topic(f"sink.{target}") for target in mappings.outbound}
        #: kept by the direct ``identify`` stage (docs/adr/0038): reference → customer key, and the
        #: events parked under a reference until it is linked
        self.id_map = ctx.direct_table("id_map")
        self.pending = ctx.direct_table("pending_identity")
        #: source reference or ``email:<address>`` → customer key, on every worker
        self.identity = ctx.replicated("identity")
        #: people erased by ``stream-app privacy erase``: ``key:<customer>``, ``ref:<reference>``,
        #: ``email:<sha256>`` → the erasure id; their events are dropped wherever they arrive
        self.erased = ctx.replicated("erased", lasting=True)
        #: the golden records, kept by the direct ``merge`` stage (docs/adr/0038)
        self.customer_master = ctx.direct_table("customer_master")
        self.merges = Merges(self)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def reload_mappings(self) -> str:
        """Read the mapping files again and use them from the next event on (the console's save,
        docs/adr/0037). ValueError, and the mappings in use stay, when the files are wrong or
        name a target this worker has no sink topic for (a new target needs a restart)."""
        mappings = load_mappings(self.ctx.mappings_dir(DEFAULT_MAPPING_DIR))
        new_targets = sorted(set(mappings.outbound) - set(self.sink_topics))
        if new_targets:
            raise ValueError(f"new targets {', '.join(new_targets)} need their sink topics: restart the workers")
        self.mappings = mappings
        return f"{len(mappings.files)} files: {', '.join(mappings.files)}"

    async def ready(self) -> None:
        """The whole identity index and list of erased people read: ``ingest`` may decide."""
        await self.identity.ready()
        await self.erased.ready()

    async def tell_links(self, batch: BatchLike, record: dict[str, Any]) -> None:
        """Other flows learn a record's ids in each system when they change (a flow cannot read
        this one's tables; ``topologies.customer_links``)."""
        told = customer_links.links_to_tell(record)
        if told is not None:
            await batch.send(self.links_topic, told.customer_key, told.wire())
            self.count("links_told")

    async def _send(self, topic: Any, key: str, value: Any) -> Any:
        return await self.ctx.send(topic, key, value)

    # -- ingest ----------------------------------------------------------------------------------
    async def ingest_one(self, message: EventT) -> None:
        """Validate a source event and send it to its customer: by a known reference, else by
        its email; with neither, to ``identify`` to wait for a link."""
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        refs = [source_ref(event), *crossrefs(event)]
        email = _email_of(event)
        if self._erased(refs, email):
            return
        key = self._resolve(refs, email)
        if key is not None:
            # MergeEvent's wire form, without validating the event a second time
            await self._send(self.merge_topic, key, {"kind": "event", "event": message.value})
        elif email is not None:  # a would-be new customer: matching decides (docs/adr/0036)
            await self._send(self.match_topic, MATCH_KEY, MatchCandidate(event=message.value, email=email).wire())
        else:
            out = IdentifyEvent(event=message.value, tries=refs)
            await self._send(self.identify_topic, refs[0], out.wire())

    def _erased(self, refs: list[str], email: str | None, key: str | None = None) -> bool:
        """Whether the event belongs to an erased person (counted, never kept or forwarded): a
        late event or a replay must not bring them back."""
        if not self.erased.any():  # nobody erased yet: no lookups, no email hash
            return False
        if ((key is not None and self.erased.get(f"key:{key}") is not None)
                or any(self.erased.get(f"ref:{ref}") is not None for ref in refs)
                or (email is not None and self.erased.get(erased_email(email)) is not None)):
            self.count("erased_dropped")
            return True
        return False

    def _known(self, refs: list[str]) -> str | None:
        """The customer of the first of ``refs`` the identity index knows."""
        for ref in refs:
            if (key := self.identity.get(ref)) is not None:
                self.count("identified_by_ref")
                return key
        return None

    def known_customer(self, refs: list[str], email: str | None) -> str | None:
        """The customer the identity index gives the references, else the email (uncounted)."""
        for ref in refs:
            if (key := self.identity.get(ref)) is not None:
                return key
        return self.identity.get(f"email:{email}") if email else None

    def _resolve(self, refs: list[str], email: str | None) -> str | None:
        """The known customer of a reference, else of the email; None for a would-be new one."""
        key = self._known(refs)
        if key is not None or email is None:
            return key
        return self.identity.get(f"email:{email}")

    async def tims_links(self, stream: Any) -> None:
        await self.ctx.each("tims_links", stream, self.tims_link_one)

    async def tims_link_one(self, message: EventT) -> None:
        """TIMS ids from the TIMS writer go to the customer they were created for."""
        try:
            entry = TimsLinkEntry.model_validate(message.value)
        except ValidationError:
            await self.ctx.quarantine("links.tims entry without record_key or tims_id", message.value)
            return
        if entry.object not in ("customer", "customers"):
            return  # another flow's record (docs/adr/0021)
        await self._send(self.merge_topic, entry.record_key,
                         MergeTimsLink(kind="tims_link", tims_id=entry.tims_id).wire())

    # -- identify --------------------------------------------------------------------------------
    async def identify_one(self, batch: BatchLike, event: EventT) -> None:
        """One message of an ``identify`` batch (a direct table stage keeping ``id_map`` and
        ``pending``): an event parked or sent on, a link that releases what waits, an erasure.
        What makes it raise is quarantined."""
        read = await read_message(self.ctx, "identify", IDENTIFY, event)
        if read is None:
            return
        ref, message = read
        try:
            if isinstance(message, IdentifyErase):
                for table in (self.pending, self.id_map):
                    if batch.get(table, ref, event) is not None:
                        batch.put(table, ref, None, event)
            elif isinstance(message, IdentifyLink):
                await self._link_ref(batch, event, message)
            else:
                await self._identify(batch, event, message)
        except Exception as exc:  # noqa: BLE001 - a bug on one message must not stall the batch
            log.exception("customer_sync identify: a message for %s raised; quarantined", ref)
            await self.ctx.quarantine(f"identify raised {type(exc).__name__}: {exc}", event.value)

    async def _link_ref(self, batch: BatchLike, event: EventT, message: IdentifyLink) -> None:
        """The reference is linked: what was parked under it goes to its customer (the batch
        writes the tables only once those sends are acked)."""
        ref, key = message.ref, message.customer_key
        for parked in batch.get(self.pending, ref, event) or []:
            await batch.send(self.merge_topic, key, MergeEvent(event=parked).wire())
        if batch.get(self.id_map, ref, event) is None:
            batch.put(self.id_map, ref, key, event)
        if batch.get(self.pending, ref, event) is not None:
            batch.put(self.pending, ref, None, event)

    async def _identify(self, batch: BatchLike, event: EventT, message: IdentifyEvent) -> None:
        """An event with no known reference and no email: to its customer once one of its
        references is linked (the link may have arrived meanwhile), else parked under its own."""
        ref = message.tries[0]
        key = batch.get(self.id_map, ref, event)
        if key is None:
            key = self._known(message.tries)
        else:
            self.count("identified_by_ref")
        if key is not None:
            await batch.send(self.merge_topic, key, MergeEvent(event=message.event).wire())
            return
        parked = (batch.get(self.pending, ref, event) or [])[-(PENDING_LIMIT - 1):]
        batch.put(self.pending, ref, parked + [message.event], event)
        self.count("parked")

    # -- merge -----------------------------------------------------------------------------------
    async def merge(self, stream: Any) -> None:
        """Keep the golden records, in batches, as a Faust agent over a Faust table (the unit tests
        run it so; the worker runs :meth:`merge_one` as a direct table stage)."""
        await self.ctx.run_batches(stream, self.merge_one)

    async def merge_one(self, batch: BatchLike, event: EventT) -> None:
        """Fold one event into its customer's record (the batch's copy) and publish what follows;
        an event that cannot be read, or that makes the merge raise, is quarantined."""
        read = await read_message(self.ctx, "merge", MERGE, event)
        if read is None:
            return
        key, message = read
        earlier = _earlier_events(batch, key)
        try:
            await self._merge(batch, event, key, message)
        except Exception as exc:  # noqa: BLE001 - a bug on one event must not stall the batch
            log.exception("customer_sync merge: event for customer %s raised; quarantined", key)
            await self.ctx.quarantine(f"merge raised {type(exc).__name__}: {exc}", event.value)
            await self._rebuild_row(batch, key, earlier)
        else:
            earlier.append(event)

    async def _index(self, batch: BatchLike, entry: str, key: str) -> None:
        """Make ``entry`` (a reference, or ``email:<address>``) lead to ``key`` on every worker;
        the first customer to claim an entry keeps it."""
        if self.identity.get(entry) is None:
            await batch.send(*self.identity.entry(entry, key))

    async def _rebuild_row(self, batch: BatchLike, key: str, earlier: list[EventT]) -> None:
        """The failed event may have changed the working row half-way: read the row from the table
        again and fold in the batch's earlier events for it (their outputs go out once more,
        which downstream tolerates)."""
        batch.forget(self.customer_master, key)
        replay = list(earlier)
        earlier.clear()
        for previous in replay:
            await self.merge_one(batch, previous)

    async def _merge(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        if isinstance(message, MergeErase):
            await self.merges.forget(batch, key)
            batch.put(self.customer_master, key, None, event)
            self.count("erased")
            return
        if self._erased([], None, key):
            return
        if isinstance(message, _MERGING):  # two customers become one, or one is split again
            await self.merges.handle(batch, event, key, message)
            return
        record = batch.get(self.customer_master, key, event)
        if await self.merges.forward(batch, record, message):  # merged into another customer
            return
        fresh, record = record is None, record or new_record(key)
        before_email = (record["fields"].get("email") or {}).get("v")
        if isinstance(message, MergeTimsLink):
            outcome = apply_tims_link(record, message.tims_id, self.mappings)
        else:
            source_event = SourceEvent.model_validate(message.event)
            try:
                outcome = apply_event(record, source_event, self.mappings, self.policy)
            except Uncleanable as exc:  # the record is left as it was (golden.apply_event)
                await self.ctx.quarantine(
                    f"{source_event.source}.{source_event.entity} {source_event.record_id}: {exc}", message.event)
                return
            if outcome.duplicate:
                self.count("duplicates")
                self.ctx.metrics.duplicate(source_event.source)
                return
            self.count("echo_fields", len(outcome.echo_fields))
            self.ctx.metrics.echo_fields(source_event.source, len(outcome.echo_fields))
        # The record now remembers this event (dedupe): its outputs must be safe before it is written.
        for command in outcome.commands:
            await batch.send(self.sink_topics[f"{command.system}.{command.object}"], command.partition_key,
                             command.model_dump(mode="json"))
            self.ctx.metrics.command_out(command.system, command.object, command.source_commit_timestamp)
        for conflict in outcome.conflicts:
            await batch.send(self.conflicts_topic, key, conflict)
            self.ctx.metrics.conflict(conflict.get("owner"), conflict.get("rule", "unknown"))
        for ref in outcome.new_refs:
            await self._index(batch, ref, key)
            await batch.send(self.identify_topic, ref, IdentifyLink(kind="link", ref=ref, customer_key=key).wire())
        email = (record["fields"].get("email") or {}).get("v")
        if email and email != before_email:
            await self._index(batch, f"email:{email}", key)
        await self.merges.profile(batch, key, record, outcome.changed, fresh)
        self.count("commands", len(outcome.commands))
        self.count("conflicts", len(outcome.conflicts))
        await self.tell_links(batch, record)
        batch.put(self.customer_master, key, record, event)


def _earlier_events(batch: BatchLike, key: str) -> list[EventT]:
    """The batch's events already folded into ``key``'s working row (kept on the batch)."""
    return batch.notes.setdefault((FLOW_NAME, key), [])  # type: ignore[no-any-return]


def install(ctx: FlowContext) -> CustomerSync:
    """Build the flow on ``ctx.app``: mappings (validated now: a wrong file stops start-up),
    topics, tables, the direct ``ingest``, ``identify``, ``merge`` and ``matching`` stages and the
    ``tims_links`` agent."""
    mappings = load_mappings(ctx.mappings_dir(DEFAULT_MAPPING_DIR))
    settings = ctx.settings
    policy = Policy(our_clients={"salesforce": settings.salesforce_client_name, "tims": settings.tims_client_name})
    flow = CustomerSync(ctx, mappings, policy)
    matcher = MatchStage(flow, default_model())
    app = ctx.app
    # ingest keeps no table: it runs outside Faust's per-message path (docs/adr/0028), once this
    # worker has read the whole identity index; merge keeps its table itself (docs/adr/0038)
    ctx.direct("ingest", flow.source_topic, flow.ingest_one, before=flow.ready)
    ctx.direct_batches("merge", flow.merge_topic, flow.merge_one, tables=[flow.customer_master])
    # matching too: every new customer of every worker passes its one partition (docs/adr/0036)
    ctx.direct_batches("matching", flow.match_topic, matcher.match_one, tables=[matcher.table], before=flow.ready)
    ctx.direct_batches("identify", flow.identify_topic, flow.identify_one, tables=[flow.id_map, flow.pending],
                       before=flow.ready)
    for name, topic, body in (("tims_links", flow.tims_links_topic, flow.tims_links),):
        app.agent(topic, name=f"topologies.customer_sync.agents.{name}", concurrency=1)(agent_named(body, name))
    return flow

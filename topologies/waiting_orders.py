"""What the flows whose orders wait for references share (orders, docs/adr/0021; web orders,
docs/adr/0035): the decision an event leads to, its bookkeeping on the order's row, and the
``merge`` stage that publishes it.

An order row (a JSON dict) holds ``key``, ``waiting`` (the references it waits for and since
when), ``held``/``reported`` (why it is held, and the reason last quarantined), ``version`` (of
its writes, for the sinks' version guard) and ``seen`` (the ids of its last events). The
``waiting`` stage parks an order under each reference it waits for and sends it a
:class:`Recheck` when the reference is linked. A flow whose orders wait for one of several
references (a web order's buyer: its shop customer or its email) lets go of the others once one
released the order (:class:`Unpark`), so nothing stays parked, and counted as waiting, for
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import time
from typing import TYPE_CHECKING, Any, Callable, Literal, Union

from pydantic import Field, TypeAdapter

from connectors.envelope import SinkCommand, SourceEvent
from topologies.messages import EventMessage, StageMessage
from topologies.sales_order_status import advances
from topologies.stage import agent_named, read_message
from topologies.told_links import Told

if TYPE_CHECKING:
    from faust.types import EventT

    from topologies.flow import BatchLike, FlowContext

__all__ = ["Decision", "Write", "seen", "hold", "conclude", "tims_progress", "now_ms", "OrderStages", "Recheck", "Park", "Linked", "Expire",
           "Unpark", "MERGE", "WAITING"]


class Recheck(StageMessage):
    """A reference the order waited for is linked: evaluate the order again."""

    kind: Literal["recheck"]
    #: the order's grace is over: what still does not hold is quarantined
    final: bool = False
    #: the links that released the order (reference → linked id): the order's stage may read the
    #: replicated link map before its own copy has caught up with them (docs/adr/0021, addendum)
    links: dict[str, str] = Field(default_factory=dict)


class Park(StageMessage):
    """The order ``key`` waits for the message key's reference (since ``since``, epoch ms)."""

    kind: Literal["park"]
    key: str = Field(min_length=1)
    since: int = Field(ge=0)


class Linked(StageMessage):
    """The message key's reference is linked now: release what waits for it."""

    kind: Literal["linked"]
    #: the id it is linked to (absent in messages from before it was carried)
    value: str | None = None


class Expire(StageMessage):
    """The orders waiting under the message key have waited their grace: recheck them, finally."""

    kind: Literal["expire"]


class Unpark(StageMessage):
    """The order ``key`` waits no longer for the message key's reference, which is not linked:
    another reference released it."""

    kind: Literal["unpark"]
    key: str = Field(min_length=1)


#: what ``merge`` reads (keyed by the order) and what ``waiting`` reads (keyed by a reference)
MERGE = TypeAdapter(Union[Recheck, EventMessage])
WAITING = TypeAdapter(Union[Park, Linked, Expire, Unpark])

#: (system, object, external id field, external id, fields)
Write = tuple[str, str, str, str, dict[str, Any]]


@dataclass
class Decision:
    commands: list[SinkCommand] = field(default_factory=list)
    #: references the order waits for (``account:…``, ``sku:…``, ``email:…``)
    wait_for: list[str] = field(default_factory=list)
    #: why the order is held (new this time: quarantine it)
    rejected: str | None = None
    duplicate: bool = False
    #: a source event older than what the order shows (late, replayed, reordered)
    stale: bool = False
    echo_fields: int = 0


def seen(row: dict[str, Any], event: SourceEvent, limit: int) -> bool:
    """Whether the row took this event already; remember it (the last ``limit``) if not."""
    if event.event_id in row["seen"]:
        return True
    row["seen"] = [*row["seen"], event.event_id][-limit:]
    return False


def hold(row: dict[str, Any], reason: str, decision: Decision) -> None:
    """Hold the order and quarantine it with the reason (once per reason)."""
    if row.get("reported") != reason:
        decision.rejected = reason
    row["held"] = row["reported"] = reason


def tims_progress(row: dict[str, Any], event: SourceEvent, limit: int) -> dict[str, Any] | Decision:
    """The id, status and version of a TIMS sales order event that moves the order (``row["tims"]``)
    forward; else the decision that it is a duplicate or stale (late, replayed, reordered)."""
    if seen(row, event, limit):
        return Decision(duplicate=True)
    fields = event.fields
    version = fields.get("version") if isinstance(fields.get("version"), int) else event.commit_timestamp
    status = str(fields.get("status") or "")
    if not advances(row["tims"].get("status"), row["tims"].get("version"), status, version):
        return Decision(stale=True)
    return {"sales_order_id": fields.get("sales_order_id") or event.record_id, "status": status, "version": version}


def conclude(row: dict[str, Any], decision: Decision, writes: list[Write], event: SourceEvent | None,
             now_ms: int) -> Decision:
    """Note what the order waits for (keeping the first ``since``) and turn ``writes`` into sink
    commands under the row's next version."""
    row["waiting"] = ({"refs": decision.wait_for, "since": (row["waiting"] or {}).get("since", now_ms)}
                      if decision.wait_for else None)
    if writes:
        row["version"] += 1
    for system, target, key_field, key, fields in writes:
        decision.commands.append(SinkCommand(
            system=system, object=target, external_id_field=key_field, external_id=key,  # type: ignore[arg-type]
            fields=fields, version=row["version"], record_key=row["key"],
            source_commit_timestamp=event.commit_timestamp if event else None,
            source_event_id=event.event_id if event else None))
    return decision


def now_ms() -> int:
    return int(time.time() * 1000)


class OrderStages:
    """The ``merge`` stage of such a flow: fold an event or a recheck into the order's row, then
    publish the commands, park the order under new references and quarantine a new hold. A
    flow says how an event applies (:meth:`apply`) and how a recheck does (:meth:`recheck`)."""

    #: how a held order is named in the quarantine's reason
    noun = "order"
    #: source system → ``apply(row, event, mapping, links, now_ms)``
    appliers: dict[str, Callable[..., Decision]] = {}
    #: ``recheck(row, mapping, links, now_ms, final=…)`` and ``new_row(key)`` of the flow
    rechecker: Callable[..., Decision]
    new_row: Callable[[str], dict[str, Any]]
    #: what the subclass sets up: its mapping, link map, topics, ``merge`` stage and stage bodies
    mapping: Any
    links: Any
    source_topic: Any
    merge_topic: Any
    merge: Any
    #: reference → the orders parked under it (a table keyed like the ``waiting`` topic)
    waiting: Any
    #: an order released by one reference leaves the others it was parked under (:class:`Unpark`):
    #: for flows whose orders wait for one reference *or* another
    unpark_released = False

    def __init__(self, ctx: "FlowContext", table: Any, waiting_topic: Any, sink_topics: dict[str, Any]) -> None:
        self.ctx, self.table, self.waiting_topic, self.sink_topics = ctx, table, waiting_topic, sink_topics

    def count(self, name: str, n: int = 1) -> None:
        self.ctx.counters[name] += n

    def apply(self, row: dict[str, Any], event: SourceEvent, links: Any = None) -> Decision:
        return self.appliers[event.source](row, event, self.mapping, links or self.links, now_ms())

    def recheck(self, row: dict[str, Any], final: bool, links: Any = None) -> Decision:
        return self.rechecker(row, self.mapping, links or self.links, now_ms(), final=final)

    def install_stages(self, flow: str, report_interval: float) -> None:
        """``ingest`` on its own group (it keeps no table, docs/adr/0028), the ``waiting`` and
        ``merge`` agents, and the timer that reports what waits."""
        ctx = self.ctx
        ctx.direct("ingest", self.source_topic, self.ingest_one, before=self.links.ready)
        for name, topic, body in (("waiting", self.waiting_topic, self.wait), ("merge", self.merge_topic, self.merge.run)):
            ctx.app.agent(topic, name=f"topologies.{flow}.agents.{name}", concurrency=1)(agent_named(body, name))
        ctx.app.timer(report_interval, name=f"topologies.{flow}.report_waiting")(self.report_waiting)

    async def ingest_one(self, message: Any) -> None:
        raise NotImplementedError

    async def report_waiting(self) -> None:
        raise NotImplementedError

    async def link(self, ref: str, value: str, release: bool = True) -> None:
        """Record a link on every worker; release the orders that wait for it."""
        if self.links.get(ref) == value:
            return
        await self.ctx.send(*self.links.entry(ref, value))
        self.count("links")
        if release:
            await self.ctx.send(self.waiting_topic, ref, Linked(kind="linked", value=value).wire())

    # -- waiting: a row per reference, {"orders": {order key: since ms}, ...} -----------------------
    async def wait(self, stream: Any) -> None:
        await self.ctx.each("waiting", stream, self.wait_one)

    def empty_entry(self) -> dict[str, Any]:
        return {"orders": {}, "expired": []}

    def after_link(self, value: str | None) -> dict[str, Any]:
        return self.empty_entry()

    def linked_already(self, ref: str, entry: dict[str, Any]) -> bool:
        return self.links.get(ref) is not None

    def expire(self, entry: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """The orders whose grace is over (to recheck a last time) and the entry after: by default
        they stay parked, held by ``merge``, so that the reference linked later still releases them."""
        due = [key for key in entry["orders"] if key not in entry["expired"]]
        return due, {**entry, "expired": [*entry["expired"], *due]}

    async def wait_one(self, event: "EventT") -> None:
        read = await read_message(self.ctx, "waiting", WAITING, event)
        if read is None:
            return
        ref, message = read
        waiting = self.waiting
        entry = waiting.get(ref) or self.empty_entry()
        if isinstance(message, Linked):
            told = {ref: message.value} if message.value else {}
            self.count("released", await self._recheck_all(entry["orders"], links=told))
            waiting[ref] = self.after_link(message.value)
        elif isinstance(message, Expire):
            due, after = self.expire(entry)
            await self._recheck_all(due, final=True)
            waiting[ref] = after
        elif isinstance(message, Unpark):
            if message.key in entry["orders"]:
                waiting[ref] = {**entry, "orders": {k: v for k, v in entry["orders"].items() if k != message.key},
                                "expired": [k for k in entry["expired"] if k != message.key]}
                self.count("unparked")
        elif self.linked_already(ref, entry):
            value = entry.get("value") or self.links.get(ref)
            await self.ctx.send(self.merge_topic, message.key,
                                Recheck(kind="recheck", links={ref: value} if value else {}).wire())
        elif message.key not in entry["orders"] and len(entry["orders"]) >= self.mapping.waiting_limit:
            await self.ctx.quarantine(f"waiting: more than {self.mapping.waiting_limit} orders wait for {ref}",
                                      event.value)
        else:
            waiting[ref] = {**entry, "orders": {**entry["orders"], message.key: message.since}}
            self.count("parked")

    async def _recheck_all(self, keys: Any, final: bool = False, links: dict[str, str] | None = None) -> int:
        """Recheck these orders; wait for the acks (the entry's next write forgets them)."""
        recheck = Recheck(kind="recheck", final=final, links=links or {}).wire()
        acks = [await self.ctx.send(self.merge_topic, key, recheck) for key in keys]
        for ack in acks:
            await ack
        return len(acks)

    async def merge_one(self, batch: "BatchLike", event: "EventT", key: str, message: Any) -> None:
        stored = batch.get(self.table, key, event)
        row = stored or self.new_row(key)
        waiting = row["waiting"] or {}
        waited = set(waiting.get("refs", []))
        # Links this order was told of by the rechecks that released it: this worker's copy of the
        # replicated link map may not have them yet (docs/adr/0021, "Waiting references", addendum).
        told = {**waiting.get("told", {}), **(message.links if isinstance(message, Recheck) else {})}
        links = Told(told, self.links) if told else None
        if isinstance(message, Recheck):
            if stored is None or not waited:
                return
            decision = self.recheck(row, message.final, links)
        else:
            source_event = SourceEvent.model_validate(message.event)
            decision = self.apply(row, source_event, links)
            self.ctx.metrics.echo_fields(source_event.source, decision.echo_fields)
            if decision.duplicate or decision.stale:
                self.count("stale" if decision.stale else "duplicates")
                self.ctx.metrics.duplicate(source_event.source)
                return
        if row["waiting"] is not None and told:
            row["waiting"]["told"] = told
        # After a recheck the order parks again under every reference it still waits for: the
        # waiting stage may have let go of it when it sent the recheck (parking twice is harmless).
        await self._publish(batch, key, row, decision, set() if isinstance(message, Recheck) else waited)
        if self.unpark_released and (left := waited - set(decision.wait_for)):
            await self._unpark(batch, key, left, links or self.links)
        batch.put(self.table, key, row, event)

    async def _unpark(self, batch: "BatchLike", key: str, refs: set[str], links: Any) -> None:
        """The order left ``refs`` without them being linked (another reference released it):
        their parking goes, or it would count as waiting for ever."""
        for ref in sorted(refs):
            if links.get(ref) is None:
                await batch.send(self.waiting_topic, ref, Unpark(kind="unpark", key=key).wire())

    async def _publish(self, batch: "BatchLike", key: str, row: dict[str, Any], decision: Decision,
                       waited: set[str]) -> None:
        for command in decision.commands:
            await batch.send(self.sink_topics[f"{command.system}.{command.object}"], command.partition_key,
                             command.model_dump(mode="json"))
            self.ctx.metrics.command_out(command.system, command.object, command.source_commit_timestamp)
        self.count("commands", len(decision.commands))
        for ref in decision.wait_for:
            if ref not in waited:
                park = Park(kind="park", key=key, since=row["waiting"]["since"])
                await batch.send(self.waiting_topic, ref, park.wire())
        if decision.rejected is not None:
            self.count("held")
            await self.ctx.quarantine(f"merge: {self.noun} {key} held: {decision.rejected}", row)


"""Faust agents of the receivables flow, thin around ``rollup`` (docs/adr/0032).

    src.tims.invoice ──┐
    src.tims.payment ──┼─ingest─► receivables.merge (key: TIMS customer id)  receivables
    src.tims.customer ─┤    ▲          ├─► sink.salesforce.Account  (the roll-up, where it changed)
    src.tims.sales_order, src.tims.item (the last purchase; item names into the map)
    src.salesforce.Account ┤    │          ├─► sink.salesforce.Contact
    src.salesforce.Contact ┤    │          ├─► sink.pardot.prospect
    src.pardot.prospect ───┘    │          └─► audit.conflicts (an edit of our fields, won back)
                                └── review (timer: the date turned for customers with open invoices)

``ingest`` sends each TIMS event to its customer, and learns the customer's target records from
the sources themselves: an Account's or a Contact's ``TIMS_Customer_ID__c`` (the customer sync
writes it), a prospect's ``salesforceContactId`` (Salesforce's connector sets it). The links go
into a map every worker holds (``account:``/``contact:<Id>`` → customer, ``prospect_of:<Contact
Id>`` → prospect, ``item:<id>`` → item name), and to the customer's row as ``Linked``, so ``merge`` knows its targets without
reading the map. What a target record shows of our fields goes to ``merge`` as ``Observed``.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime, timezone
from typing import Any

from faust.types import EventT

from connectors.envelope import SourceEvent
from quality.anomalies import AnomalyDetector
from topologies.flow import BatchLike, FlowContext
from topologies.mapping_file import ReloadsMapping
from topologies.origin import written_by_us
from topologies.receivables.messages import MERGE, Linked, MergeEvent, Observed, Release, Review
from topologies.receivables.rollup import (
    BUCKETS, DEFAULT_MAPPING_DIR, TARGETS, Decision, ReceivablesMapping, Unusable, evaluate, fold, judge, link,
    load_mapping, new_row, observe, release,
)
from topologies.stage import KeyedBatchStage, agent_named, read_source_event

__all__ = ["Receivables", "install", "FLOW_NAME", "SOURCE_TOPICS", "STAGE_TOPICS", "TABLES", "SINK_OBJECTS"]

FLOW_NAME = "receivables"
SOURCE_TOPICS = ("src.tims.invoice", "src.tims.payment", "src.tims.customer", "src.tims.sales_order", "src.tims.item",
                 "src.salesforce.Account", "src.salesforce.Contact", "src.pardot.prospect")
STAGE_TOPICS = (f"{FLOW_NAME}.merge",)
TABLES = (FLOW_NAME, f"{FLOW_NAME}_index", f"{FLOW_NAME}_links")
SINK_OBJECTS = tuple(TARGETS)
CUSTOMER_FIELD = "TIMS_Customer_ID__c"
log = logging.getLogger(__name__)
#: seconds between measurements of the customers waiting for their Account
WAITING_REPORT_INTERVAL = 10.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def today() -> date:
    """The date overdue figures are computed for (UTC)."""
    return datetime.now(timezone.utc).date()


class Receivables(ReloadsMapping):
    """The flow's topics, tables and stage bodies, built once per app by :func:`install`."""

    mapping_source = (load_mapping, DEFAULT_MAPPING_DIR)
    #: the review timer's interval is set at install
    fixed_at_start = ("review_interval_seconds",)

    def __init__(self, ctx: FlowContext, mapping: ReceivablesMapping) -> None:
        self.ctx = ctx
        self.mapping = mapping
        self.source_topic = ctx.topic(*SOURCE_TOPICS)
        self.merge_topic = ctx.topic(*STAGE_TOPICS)
        self.conflicts_topic = ctx.topic("audit.conflicts")
        self.anomalies_topic = ctx.topic("audit.anomalies")
        #: the anomaly rules; each worker keeps its own sample of everyone's amounts (the
        #: customer's own history is its row)
        self.detector = AnomalyDetector()
        self.sink_topics = {name: ctx.topic(f"sink.{name}") for name in SINK_OBJECTS if name in mapping.targets}
        self.table = ctx.table(FLOW_NAME, default=None, key_type=str)
        #: per customer that waits for its Account or has figures that change with the date:
        #: ``{"waiting_since": ms, "review_on": "YYYY-MM-DD"}`` (the timers read this, not every row)
        self.index = ctx.table(f"{FLOW_NAME}_index", default=None, key_type=str)
        #: ``account:``/``contact:<Id>`` → TIMS customer, ``prospect_of:<Contact Id>`` → prospect id
        self.links = ctx.replicated("links")
        settings = ctx.settings
        self.our_clients = {"salesforce": settings.salesforce_client_name, "tims": settings.tims_client_name}
        self.merge = KeyedBatchStage(ctx, "merge", MERGE, self.table, self._merge)

    def refuse_reload(self, mapping: ReceivablesMapping) -> list[str]:
        new = sorted(name for name in SINK_OBJECTS if name in mapping.targets and name not in self.sink_topics)
        return [f"new targets {', '.join(new)} need their sink topics"] if new else []

    # -- ingest ----------------------------------------------------------------------------------
    async def ingest_one(self, message: EventT) -> None:
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        if event.source == "tims" and event.entity == "item":
            await self._item(event)
        elif event.source == "tims":
            customer = event.record_id if event.entity == "customer" else event.fields.get("customer_id")
            if not customer:
                await self.ctx.quarantine(f"ingest: {event.entity} {event.record_id} names no customer_id",
                                          message.value)
                return
            await self.ctx.send(self.merge_topic, str(customer), MergeEvent(event=message.value).wire())
        elif event.entity in ("Account", "Contact"):
            await self._salesforce(event)
        elif event.entity == "prospect":
            await self._prospect(event)

    async def _item(self, event: SourceEvent) -> None:
        """An item's name, for the last purchase's text (``item:<id>`` in the map)."""
        name = event.fields.get("name")
        if event.change_type != "DELETE" and name and self.links.get(f"item:{event.record_id}") != str(name):
            await self.ctx.send(*self.links.entry(f"item:{event.record_id}", str(name)))
            self.ctx.counters["links"] += 1

    async def _salesforce(self, event: SourceEvent) -> None:
        if event.change_type == "DELETE":
            return
        kind, target = event.entity.lower(), f"salesforce.{event.entity}"
        ref = f"{kind}:{event.record_id}"
        stated = event.fields.get(CUSTOMER_FIELD)
        customer = str(stated) if stated else self.links.get(ref)
        if customer is None:
            return
        if stated and self.links.get(ref) != customer:
            await self.ctx.send(*self.links.entry(ref, customer))
            self.ctx.counters["links"] += 1
        if stated:
            await self._linked(customer, target, event.record_id)
            prospect = self.links.get(f"prospect_of:{event.record_id}") if kind == "contact" else None
            if prospect:
                await self._linked(customer, "pardot.prospect", prospect)
        await self._observed(customer, target, event)

    async def _prospect(self, event: SourceEvent) -> None:
        contact = event.fields.get("salesforceContactId")
        if not contact or event.change_type == "DELETE":
            return
        ref = f"prospect_of:{contact}"
        if self.links.get(ref) != event.record_id:
            await self.ctx.send(*self.links.entry(ref, event.record_id))
            self.ctx.counters["links"] += 1
        customer = self.links.get(f"contact:{contact}")
        if customer is not None:
            await self._linked(customer, "pardot.prospect", event.record_id)
            await self._observed(customer, "pardot.prospect", event)

    async def _linked(self, customer: str, target: str, record_id: str) -> None:
        if target in self.mapping.targets:
            await self.ctx.send(self.merge_topic, customer, Linked(kind="linked", target=target, id=record_id).wire())

    async def _observed(self, customer: str, target: str, event: SourceEvent) -> None:
        """An update that changed our fields there (a create or a full read shows values, not edits:
        a record linked after our roll-up was computed shows its fields from before we wrote)."""
        if event.change_type != "UPDATE" or event.full_state:
            return
        ours = set(self.mapping.targets.get(target, {}))
        shown = {name: event.fields.get(name) for name in (set(event.fields) | set(event.nulled_fields)) & ours}
        if shown:
            observed = Observed(kind="observed", target=target, id=event.record_id, fields=shown,
                                ours=written_by_us(event, self.our_clients))
            await self.ctx.send(self.merge_topic, customer, observed.wire())

    # -- merge -----------------------------------------------------------------------------------
    async def _merge(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        stored = batch.get(self.table, key, event)
        row = stored or new_row(key)
        before = (row["waiting_since"], row["review_on"])
        decision, source_event, now = Decision(), None, _now_ms()
        if isinstance(message, Linked):
            if message.target not in self.mapping.targets or not link(row, message.target, message.id):
                return
        elif isinstance(message, Observed):
            observe(row, message.target, message.id, message.fields, message.ours, self.mapping, now, decision)
        elif isinstance(message, Review):
            if stored is None:
                return
        elif isinstance(message, Release):
            if stored is None or not release(row, message.subject):
                await self.ctx.quarantine(f"merge: customer {key}: nothing held as {message.subject}", event.value)
                return
            self.ctx.counters["released"] += 1
        else:
            source_event = SourceEvent.model_validate(message.event)
            before = _before(row, source_event)
            try:
                taken = fold(row, source_event, self.mapping)
            except Unusable as exc:
                await self.ctx.quarantine(f"merge: tims.{source_event.entity} {source_event.record_id}: {exc}",
                                          message.event)
                return
            if not taken:
                self.ctx.counters["stale"] += 1
                self.ctx.metrics.duplicate(source_event.source)
                return
            judge(row, source_event, before, self.detector, self.mapping, now, decision)
        self._find_prospect(row)
        evaluate(row, self.mapping, today(), now, source_event, decision, self._item_name)
        self.ctx.metrics.echo_fields(source_event.source if source_event else "salesforce", decision.echo_fields)
        for command in decision.commands:
            await batch.send(self.sink_topics[f"{command.system}.{command.object}"], command.partition_key,
                             command.model_dump(mode="json"))
            self.ctx.metrics.command_out(command.system, command.object, command.source_commit_timestamp)
        for anomaly in decision.anomalies:
            await batch.send(self.anomalies_topic, key, {"flow": FLOW_NAME, "at_ms": now, **anomaly})
            self.ctx.metrics.anomaly(anomaly["rule"], anomaly["held"])
        for conflict in decision.conflicts:
            await batch.send(self.conflicts_topic, key, {"flow": FLOW_NAME, **conflict})
            self.ctx.metrics.conflict(conflict["owner"], conflict["rule"])
        self.ctx.counters["commands"] += len(decision.commands)
        batch.put(self.table, key, row, event)
        if (row["waiting_since"], row["review_on"]) != before:
            noted = row["waiting_since"] is not None or row["review_on"] is not None
            batch.put(self.index, key, {"waiting_since": row["waiting_since"], "review_on": row["review_on"]}
                      if noted else None, event)

    def _item_name(self, item: str) -> str | None:
        return self.links.get(f"item:{item}")

    def _find_prospect(self, row: dict[str, Any]) -> None:
        """A prospect linked before its Contact was: the map has it (written by ``ingest``)."""
        contact = row["targets"].get("salesforce.Contact")
        if contact and "pardot.prospect" in self.mapping.targets and "pardot.prospect" not in row["targets"]:
            prospect = self.links.get(f"prospect_of:{contact}")
            if prospect:
                link(row, "pardot.prospect", prospect)

    # -- timers ----------------------------------------------------------------------------------
    def _noted(self) -> list[tuple[str, dict[str, Any]]]:
        return [(key, value) for key, value in list(self.index.items()) if value]

    async def report_waiting(self) -> None:
        """How many customers with receivables this worker holds back for want of their Account,
        and the oldest's age."""
        try:
            now = _now_ms()
            since = [value["waiting_since"] for _, value in self._noted() if value.get("waiting_since")]
            self.ctx.metrics.waiting("account", len(since), (now - min(since)) / 1000 if since else 0.0)
        except Exception:  # noqa: BLE001 - a table read during a rebalance; the next round measures again
            log.warning("receivables: measuring what waits failed; trying again in %.0f s", WAITING_REPORT_INTERVAL,
                        exc_info=True)

    async def review(self) -> None:
        """Customers whose figures change with today's date are computed again."""
        try:
            day = today().isoformat()
            due = [key for key, value in self._noted() if value.get("review_on") and value["review_on"] <= day]
            for key in due:
                await self.ctx.send(self.merge_topic, key, Review(kind="review").wire())
            self.ctx.counters["reviews"] += len(due)
        except Exception:  # noqa: BLE001 - a table read during a rebalance; the next round looks again
            log.warning("receivables: the review of due dates failed; trying again in %.0f s",
                        self.mapping.review_interval_seconds, exc_info=True)


def _before(row: dict[str, Any], event: SourceEvent) -> dict[str, Any] | None:
    """What the row held of the event's record before it is folded in (None: nothing yet)."""
    if event.entity == "customer":
        return dict(row["record"]) if row["record"] else None
    bucket = BUCKETS.get(event.entity)
    held = row.get(bucket, {}).get(event.record_id) if bucket else None
    return dict(held) if held is not None else None


def install(ctx: FlowContext) -> Receivables:
    """Build the flow on ``ctx.app``: its mapping (validated now), topics, tables, agents and timers."""
    flow = Receivables(ctx, load_mapping(ctx.mappings_dir(DEFAULT_MAPPING_DIR)))
    # ingest keeps no table: it runs outside Faust's per-message path (docs/adr/0028)
    ctx.direct("ingest", flow.source_topic, flow.ingest_one, before=flow.links.ready)
    ctx.app.agent(flow.merge_topic, name=f"topologies.{FLOW_NAME}.agents.merge", concurrency=1)(
        agent_named(flow.merge.run, "merge"))
    ctx.app.timer(WAITING_REPORT_INTERVAL, name=f"topologies.{FLOW_NAME}.report_waiting")(flow.report_waiting)
    ctx.app.timer(flow.mapping.review_interval_seconds, name=f"topologies.{FLOW_NAME}.review")(flow.review)
    return flow

"""Faust agents of the activities flow, thin around ``tasks`` and ``context`` (docs/adr/0025).

    src.pardot.visitor_activity ─┐                                      activities
    src.pardot.prospect ─────────┼─ingest─► activities.merge ─┬─ prospect:<id> ─► sink.salesforce.Task
    src.tims.customer ───────────┤   (key: prospect:<Pardot id> │
    src.tims.sales_order ────────┤    or customer:<TIMS id>)    └─ customer:<id> ─► activities_context
    src.tims.invoice ────────────┘                                   (Salesforce id → ERP context, every worker)

``ingest`` sends each event to its row: a visitor activity to its prospect's, a prospect to its
own, a TIMS customer to its own and its sales orders and invoices to their customer's. ``merge``
is batched (docs/adr/0011) and guarded per event (``topologies.stage``). A customer's row folds
its ERP context and, when the summary changed, publishes it on the replicated context map under
the Salesforce id TIMS links the customer to (``external_id``: the Contact or the Account), so
the prospect rows, on any worker, read it without a hop. Per activity: consume, one hop, one
Task command, one changelog write.
"""

from __future__ import annotations

import json
from typing import Any

from faust.types import EventT
from pydantic import TypeAdapter

from connectors.envelope import SourceEvent
from topologies.activities.context import Unusable, fold_tims, new_context_row, summary
from topologies.activities.tasks import (DEFAULT_MAPPING_DIR, ActivityMapping, apply_pardot, load_mapping,
                                         new_person_row)
from topologies.flow import BatchLike, FlowContext
from topologies.mapping_file import ReloadsMapping
from topologies.messages import EventMessage
from topologies.stage import KeyedBatchStage, agent_named, read_source_event

__all__ = ["Activities", "install", "FLOW_NAME", "SOURCE_TOPICS", "STAGE_TOPICS", "TABLES", "SINK_OBJECTS",
           "row_key"]

FLOW_NAME = "activities"
SOURCE_TOPICS = ("src.pardot.visitor_activity", "src.pardot.prospect", "src.tims.customer",
                 "src.tims.sales_order", "src.tims.invoice")
STAGE_TOPICS = (f"{FLOW_NAME}.merge",)
TABLES = ("activities", f"{FLOW_NAME}_context")
SINK_OBJECTS = ("salesforce.Task",)
MERGE = TypeAdapter(EventMessage)


def row_key(event: SourceEvent) -> str | None:
    """The row an event folds into, or None when the event does not say."""
    if event.source == "pardot":
        prospect = event.fields.get("prospectId") if event.entity == "visitor_activity" else event.record_id
        return f"prospect:{prospect}" if prospect not in (None, "") else None
    customer = event.record_id if event.entity == "customer" else event.fields.get("customer_id")
    return f"customer:{customer}" if customer not in (None, "") else None


class Activities(ReloadsMapping):
    """The flow's topics, tables and stage bodies, built once per app by :func:`install`."""

    mapping_source = (load_mapping, DEFAULT_MAPPING_DIR)

    def __init__(self, ctx: FlowContext, mapping: ActivityMapping) -> None:
        self.ctx = ctx
        self.mapping = mapping
        self.source_topic = ctx.topic(*SOURCE_TOPICS)
        self.merge_topic = ctx.topic(*STAGE_TOPICS)
        self.task_topic = ctx.topic("sink.salesforce.Task")
        self.table = ctx.table("activities", default=None, key_type=str)
        #: Salesforce Contact or Account Id → its TIMS customer's ERP context (JSON), on every worker
        self.context = ctx.replicated("context")
        self.merge = KeyedBatchStage(ctx, "merge", MERGE, self.table, self._merge)

    def count(self, name: str, n: int = 1) -> None:
        if n:
            self.ctx.counters[name] += n

    async def run_merge(self, stream: Any) -> None:
        """A Task carries the context every worker holds: read it whole before the first event."""
        await self.context.ready()
        await self.merge.run(stream)

    async def ingest_one(self, message: EventT) -> None:
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        key = row_key(event)
        if key is None:
            await self.ctx.quarantine(f"ingest: {event.source}.{event.entity} {event.record_id} names no "
                                      f"{'prospect' if event.source == 'pardot' else 'customer'}", message.value)
            return
        await self.ctx.send(self.merge_topic, key, EventMessage(event=message.value).wire())

    def context_of(self, salesforce_ids: list[str]) -> dict[str, Any] | None:
        for salesforce_id in salesforce_ids:
            found = self.context.get(salesforce_id)
            if found:
                return json.loads(found)
        return None

    async def _merge(self, batch: BatchLike, event: EventT, key: str, message: EventMessage) -> None:
        source_event = SourceEvent.model_validate(message.event)
        if key.startswith("customer:"):
            await self._fold_context(batch, event, key, source_event)
        else:
            await self._activity(batch, event, key, source_event)

    async def _fold_context(self, batch: BatchLike, event: EventT, key: str, source_event: SourceEvent) -> None:
        row = batch.get(self.table, key, event) or new_context_row(key)
        try:
            taken = fold_tims(row, source_event, self.mapping.currency)
        except Unusable as exc:
            await self.ctx.quarantine(f"merge: {exc}", source_event.model_dump(mode="json"))
            return
        if not taken:
            self.count("stale")
            self.ctx.metrics.duplicate(source_event.source)
            return
        context = json.dumps(summary(row, self.mapping.currency), sort_keys=True)
        published = [row["external_id"], context] if row["external_id"] else None
        if published and published != row["published"]:
            await batch.send(*self.context.entry(*published))
            self.count("contexts")
        row["published"] = published or row["published"]
        batch.put(self.table, key, row, event)

    async def _activity(self, batch: BatchLike, event: EventT, key: str, source_event: SourceEvent) -> None:
        row = batch.get(self.table, key, event) or new_person_row(key)
        outcome = apply_pardot(row, source_event, self.mapping, self.context_of)
        for reason, value in outcome.quarantined:
            await self.ctx.quarantine(f"merge: {reason}", value)
        if outcome.stale or outcome.duplicate:
            self.count("stale" if outcome.stale else "duplicates")
            self.ctx.metrics.duplicate(source_event.source)
        self.count("skipped", outcome.skipped)
        self.count("parked", outcome.parked)
        for command in outcome.commands:
            await batch.send(self.task_topic, command.partition_key, command.model_dump(mode="json"))
            self.ctx.metrics.command_out(command.system, command.object, source_event.commit_timestamp)
        self.count("commands", len(outcome.commands))
        batch.put(self.table, key, row, event)


def install(ctx: FlowContext) -> Activities:
    """Build the flow on ``ctx.app``: its mapping (validated now), topics, tables and agents."""
    flow = Activities(ctx, load_mapping(ctx.mappings_dir(DEFAULT_MAPPING_DIR)))
    # ingest keeps no table: it runs outside Faust's per-message path (docs/adr/0028)
    ctx.direct("ingest", flow.source_topic, flow.ingest_one)
    for name, topic, body in (("merge", flow.merge_topic, flow.run_merge),):
        ctx.app.agent(topic, name=f"topologies.{FLOW_NAME}.agents.{name}", concurrency=1)(agent_named(body, name))
    return flow

"""Faust agents of the orders flow, thin around ``order`` (docs/adr/0021).

    src.salesforce.Opportunity ─────────┐
    src.salesforce.OpportunityLineItem ─┼─ingest─► orders.merge (key: Opportunity Id | so:<TIMS id>)  orders
    src.tims.sales_order ───────────────┘   │         ├─► sink.tims.sales_order     (the order, once)
    src.salesforce.Account ─────────────────┤         ├─► sink.salesforce.Opportunity (status; Opportunity from TIMS)
    src.salesforce.Product2 ────────────────┘         └─► orders.waiting (park)
          │ (links: Account ↔ TIMS customer, Product2 → TIMS item, into the link map)
          └──► orders.waiting (key: reference)  orders_waiting ──► orders.merge (recheck)

``ingest`` resolves each event to its order and learns links: an Account's
``TIMS_Customer_ID__c`` (written there by the customer sync) links it to its TIMS customer, a
Product2's ``TIMS_Item_Number__c`` (written by the products flow) to its TIMS item, a line's
create to its Opportunity. The link map is replicated (every worker holds it whole), so
``merge`` looks links up without a hop. An order whose customer or product is not linked yet
is parked in ``waiting`` under that reference, and rechecked when ``ingest`` sees the link.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from faust.types import EventT

from connectors.envelope import SourceEvent
from topologies.flow import BatchLike, FlowContext
from topologies.orders.messages import MERGE, WAITING, Expire, Linked, MergeEvent, Park, Recheck
from topologies.orders.order import (
    DEFAULT_MAPPING_DIR, Decision, OrderMapping, apply_salesforce, apply_tims, load_mapping, new_row, recheck,
    row_key_of_tims_order,
)
from topologies.stage import KeyedBatchStage, agent_named, read_message, read_source_event

__all__ = ["Orders", "install", "FLOW_NAME", "SOURCE_TOPICS", "STAGE_TOPICS", "TABLES", "SINK_OBJECTS"]

FLOW_NAME = "orders"
SOURCE_TOPICS = ("src.salesforce.Opportunity", "src.salesforce.OpportunityLineItem", "src.tims.sales_order",
                 "src.salesforce.Account", "src.salesforce.Product2")
STAGE_TOPICS = (f"{FLOW_NAME}.merge", f"{FLOW_NAME}.waiting")
TABLES = ("orders", "orders_waiting", f"{FLOW_NAME}_links")
SINK_OBJECTS = ("tims.sales_order", "salesforce.Opportunity")
#: the external id of a TIMS sales order made from a shop order (topologies/web_orders)
WEB_ORDER_PREFIX = "shop:"
log = logging.getLogger(__name__)
#: seconds between measurements of what waits
WAITING_REPORT_INTERVAL = 10.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class Orders:
    """The flow's topics, tables and stage bodies, built once per app by :func:`install`."""

    def __init__(self, ctx: FlowContext, mapping: OrderMapping) -> None:
        self.ctx = ctx
        self.mapping = mapping
        self.source_topic = ctx.topic(*SOURCE_TOPICS)
        self.merge_topic, self.waiting_topic = (ctx.topic(name) for name in STAGE_TOPICS)
        self.sink_topics = {name: ctx.topic(f"sink.{name}") for name in SINK_OBJECTS}
        self.table = ctx.table("orders", default=None, key_type=str)
        self.waiting = ctx.table("orders_waiting", default=None, key_type=str)
        #: ``account:``/``customer:``/``product2:``/``line:<id>`` → the linked id, on every worker
        self.links = ctx.replicated("links")
        self.merge = KeyedBatchStage(ctx, "merge", MERGE, self.table, self._merge)

    def count(self, name: str, n: int = 1) -> None:
        self.ctx.counters[name] += n

    # -- ingest ----------------------------------------------------------------------------------
    async def ingest_one(self, message: EventT) -> None:
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        fields = event.fields
        if event.entity == "Account":
            if fields.get("TIMS_Customer_ID__c"):
                customer = str(fields["TIMS_Customer_ID__c"])
                await self._link(f"account:{event.record_id}", customer)
                await self._link(f"customer:{customer}", event.record_id)
            return
        if event.entity == "Product2":
            if fields.get("TIMS_Item_Number__c"):
                await self._link(f"product2:{event.record_id}", str(fields["TIMS_Item_Number__c"]))
            return
        if event.source == "tims" and str(event.fields.get("external_id") or "").startswith(WEB_ORDER_PREFIX):
            return  # a web order: the web orders flow's (docs/adr/0035), not an Opportunity
        key = await self._order_of(event)
        if key is None:
            await self.ctx.quarantine(f"ingest: line {event.record_id} of an Opportunity this flow has not seen "
                                      "(backfill OpportunityLineItem)", message.value)
            return
        await self.ctx.send(self.merge_topic, key, MergeEvent(event=message.value).wire())

    async def _order_of(self, event: SourceEvent) -> str | None:
        if event.source == "tims":
            return row_key_of_tims_order(event.fields, event.record_id)
        if event.entity != "OpportunityLineItem":
            return event.record_id
        opportunity = event.fields.get("OpportunityId")
        if opportunity:
            await self._link(f"line:{event.record_id}", str(opportunity), release=False)
            return str(opportunity)
        return self.links.get(f"line:{event.record_id}")

    async def _link(self, ref: str, value: str, release: bool = True) -> None:
        """Record a link on every worker; release the orders that wait for it."""
        if self.links.get(ref) == value:
            return
        await self.ctx.send(*self.links.entry(ref, value))
        self.count("links")
        if release:
            await self.ctx.send(self.waiting_topic, ref, Linked(kind="linked").wire())

    # -- waiting ---------------------------------------------------------------------------------
    async def wait(self, stream: Any) -> None:
        await self.ctx.each("waiting", stream, self.wait_one)

    async def wait_one(self, event: EventT) -> None:
        read = await read_message(self.ctx, "waiting", WAITING, event)
        if read is None:
            return
        ref, message = read
        entry = self.waiting.get(ref) or {"linked": False, "orders": {}}
        if isinstance(message, (Linked, Expire)):
            recheck = Recheck(kind="recheck", final=isinstance(message, Expire)).wire()
            acks = [await self.ctx.send(self.merge_topic, key, recheck) for key in entry["orders"]]
            for ack in acks:  # the table write below forgets them: they must be out first
                await ack
            self.count("released", len(acks))
            self.waiting[ref] = {"linked": isinstance(message, Linked), "orders": {}}
        elif entry["linked"] or (not ref.startswith("total:") and self.links.get(ref) is not None):
            await self.ctx.send(self.merge_topic, message.key, Recheck(kind="recheck").wire())
        elif message.key not in entry["orders"] and len(entry["orders"]) >= self.mapping.waiting_limit:
            await self.ctx.quarantine(f"waiting: more than {self.mapping.waiting_limit} orders wait for {ref}",
                                      event.value)
        else:
            self.waiting[ref] = {"linked": False, "orders": {**entry["orders"], message.key: message.since}}
            self.count("parked")

    async def report_waiting(self) -> None:
        """How many orders this worker holds back per kind of reference, and the oldest's age; an
        order whose lines have not added up within their grace is rechecked a last time."""
        try:
            await self._report_waiting()
        except Exception:  # noqa: BLE001 - a table read during a rebalance; the next round measures again
            log.warning("orders: measuring what waits failed; trying again in %.0f s", WAITING_REPORT_INTERVAL,
                        exc_info=True)

    async def _report_waiting(self) -> None:
        now = _now_ms()
        found: dict[str, list[int]] = {"account": [], "customer": [], "product2": [], "total": []}
        for ref, entry in list(self.waiting.items()):
            kind, since = ref.split(":", 1)[0], list((entry or {}).get("orders", {}).values())
            found.setdefault(kind, []).extend(since)
            if kind == "total" and since and now - min(since) >= self.mapping.lines_grace_seconds * 1000:
                await self.ctx.send(self.waiting_topic, ref, Expire(kind="expire").wire())
        for kind, since in found.items():
            self.ctx.metrics.waiting(kind, len(since), (now - min(since)) / 1000 if since else 0.0)

    # -- merge -----------------------------------------------------------------------------------
    async def _merge(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        stored = batch.get(self.table, key, event)
        row = stored or new_row(key)
        waited = set((row["waiting"] or {}).get("refs", []))
        if isinstance(message, Recheck):
            if stored is None or not waited:
                return
            decision = recheck(row, self.mapping, self.links, _now_ms(), final=message.final)
        else:
            source_event = SourceEvent.model_validate(message.event)
            apply = apply_tims if source_event.source == "tims" else apply_salesforce
            decision = apply(row, source_event, self.mapping, self.links, _now_ms())
            self.ctx.metrics.echo_fields(source_event.source, decision.echo_fields)
            if decision.duplicate or decision.stale:
                self.count("stale" if decision.stale else "duplicates")
                self.ctx.metrics.duplicate(source_event.source)
                return
        await self._publish(batch, key, row, decision, waited)
        batch.put(self.table, key, row, event)

    async def _publish(self, batch: BatchLike, key: str, row: dict[str, Any], decision: Decision,
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
            await self.ctx.quarantine(f"merge: order {key} held: {decision.rejected}", row)


def install(ctx: FlowContext) -> Orders:
    """Build the flow on ``ctx.app``: its mapping (validated now), topics, tables, agents and the
    timer that reports what waits."""
    flow = Orders(ctx, load_mapping(ctx.mappings_dir(DEFAULT_MAPPING_DIR)))
    # ingest keeps no table: it runs outside Faust's per-message path (docs/adr/0028)
    ctx.direct("ingest", flow.source_topic, flow.ingest_one, before=flow.links.ready)
    for name, topic, body in (("waiting", flow.waiting_topic, flow.wait), ("merge", flow.merge_topic, flow.merge.run)):
        ctx.app.agent(topic, name=f"topologies.{FLOW_NAME}.agents.{name}", concurrency=1)(agent_named(body, name))
    ctx.app.timer(WAITING_REPORT_INTERVAL, name=f"topologies.{FLOW_NAME}.report_waiting")(flow.report_waiting)
    return flow

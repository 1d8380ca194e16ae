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
from typing import Any

from faust.types import EventT

from connectors.envelope import SourceEvent
from topologies.flow import FlowContext
from topologies.mapping_file import ReloadsMapping
from topologies.orders.messages import MERGE, Expire, MergeEvent
from topologies.orders.order import (
    DEFAULT_MAPPING_DIR, OrderMapping, apply_salesforce, apply_tims, load_mapping, new_row, recheck,
    row_key_of_tims_order,
)
from topologies.stage import KeyedBatchStage, read_source_event
from topologies.waiting_orders import OrderStages, now_ms

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


class Orders(ReloadsMapping, OrderStages):
    """The flow's topics, tables and stage bodies, built once per app by :func:`install`;
    ``merge`` is :meth:`OrderStages.merge_one` over these."""

    mapping_source = (load_mapping, DEFAULT_MAPPING_DIR)

    appliers = {"tims": apply_tims, "salesforce": apply_salesforce}
    rechecker = staticmethod(recheck)
    new_row = staticmethod(new_row)

    def __init__(self, ctx: FlowContext, mapping: OrderMapping) -> None:
        self.mapping = mapping
        self.source_topic = ctx.topic(*SOURCE_TOPICS)
        self.merge_topic, waiting_topic = (ctx.topic(name) for name in STAGE_TOPICS)
        super().__init__(ctx, ctx.table("orders", default=None, key_type=str), waiting_topic,
                         {name: ctx.topic(f"sink.{name}") for name in SINK_OBJECTS})
        self.waiting = ctx.table("orders_waiting", default=None, key_type=str)
        #: ``account:``/``customer:``/``product2:``/``line:<id>`` → the linked id, on every worker
        self.links = ctx.replicated("links")
        self.merge = KeyedBatchStage(ctx, "merge", MERGE, self.table, self.merge_one)

    # -- ingest ----------------------------------------------------------------------------------
    async def ingest_one(self, message: EventT) -> None:
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        fields = event.fields
        if event.entity == "Account":
            if fields.get("TIMS_Customer_ID__c"):
                customer = str(fields["TIMS_Customer_ID__c"])
                await self.link(f"account:{event.record_id}", customer)
                await self.link(f"customer:{customer}", event.record_id)
            return
        if event.entity == "Product2":
            if fields.get("TIMS_Item_Number__c"):
                await self.link(f"product2:{event.record_id}", str(fields["TIMS_Item_Number__c"]))
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
            await self.link(f"line:{event.record_id}", str(opportunity), release=False)
            return str(opportunity)
        return self.links.get(f"line:{event.record_id}")

    # -- waiting (OrderStages.wait_one): {"linked": bool, "orders": {order key: since ms}} -------------
    def empty_entry(self) -> dict[str, Any]:
        return {"linked": False, "orders": {}}

    def after_link(self, value: str | None) -> dict[str, Any]:
        return {"linked": True, "value": value, "orders": {}}

    def linked_already(self, ref: str, entry: dict[str, Any]) -> bool:
        return entry["linked"] or (not ref.startswith("total:") and self.links.get(ref) is not None)

    def expire(self, entry: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """Lines that did not add up within their grace: every order rechecked a last time, none kept."""
        return list(entry["orders"]), self.empty_entry()

    async def report_waiting(self) -> None:
        """How many orders this worker holds back per kind of reference, and the oldest's age; an
        order whose lines have not added up within their grace is rechecked a last time."""
        try:
            await self._report_waiting()
        except Exception:  # noqa: BLE001 - a table read during a rebalance; the next round measures again
            log.warning("orders: measuring what waits failed; trying again in %.0f s", WAITING_REPORT_INTERVAL,
                        exc_info=True)

    async def _report_waiting(self) -> None:
        now = now_ms()
        found: dict[str, list[int]] = {"account": [], "customer": [], "product2": [], "total": []}
        for ref, entry in list(self.waiting.items()):
            kind, since = ref.split(":", 1)[0], list((entry or {}).get("orders", {}).values())
            found.setdefault(kind, []).extend(since)
            if kind == "total" and since and now - min(since) >= self.mapping.lines_grace_seconds * 1000:
                await self.ctx.send(self.waiting_topic, ref, Expire(kind="expire").wire())
        for kind, since in found.items():
            self.ctx.metrics.waiting(kind, len(since), (now - min(since)) / 1000 if since else 0.0)

def install(ctx: FlowContext) -> Orders:
    """Build the flow on ``ctx.app``: its mapping (validated now), topics, tables, agents and the
    timer that reports what waits."""
    flow = Orders(ctx, load_mapping(ctx.mappings_dir(DEFAULT_MAPPING_DIR)))
    flow.install_stages(FLOW_NAME, WAITING_REPORT_INTERVAL)
    return flow

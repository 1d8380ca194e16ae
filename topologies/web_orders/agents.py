"""Faust agents of the web orders flow, thin around ``order`` (docs/adr/0035).

    src.shop.order ─────────┐
    src.tims.sales_order ───┤
    src.tims.customer ──────┼─ingest─► web_orders.merge (key: shop:<order id>)  web_orders
    src.tims.item ──────────┤     │        ├─► sink.tims.sales_order (the order, once)
    customer_master.links ──┘     │        ├─► sink.shop.fulfillment (once TIMS shipped it)
       (links: shop customer → TIMS customer, as the customer master decided; email → TIMS
        customer; SKU → TIMS item; into the link map)
                                  └──► web_orders.waiting (key: customer:… | email:… | sku:…)
                                           └──► web_orders.merge (recheck)   web_orders_waiting

``ingest`` learns links from the customer master (a shop customer's TIMS customer), TIMS
customers (their email) and items (their SKU), and routes shop orders and the TIMS sales orders
made from them (``external_id`` ``shop:…``) to their row. The link map is replicated, so
``merge`` reads links without a hop; an order whose buyer or SKU is not linked yet is parked
under that reference in ``waiting`` and rechecked when it is (a buyer under both its shop
customer and its email: the first linked releases it, and the other lets it go).
"""

from __future__ import annotations

import logging

from faust.types import EventT
from pydantic import ValidationError

from connectors.envelope import SourceEvent
from topologies import customer_links
from topologies.customer_sync.identity import normalize_email
from topologies.flow import FlowContext
from topologies.mapping_file import ReloadsMapping
from topologies.messages import EventMessage as MergeEvent
from topologies.stage import KeyedBatchStage, read_source_event, why
from topologies.waiting_orders import MERGE, Expire, OrderStages, now_ms
from topologies.web_orders.order import (
    DEFAULT_MAPPING_DIR, KEY_PREFIX, WebOrderMapping, apply_shop, apply_tims, load_mapping, master_link, new_row,
    recheck, row_key,
)

__all__ = ["WebOrders", "install", "FLOW_NAME", "SOURCE_TOPICS", "LINK_TOPICS", "STAGE_TOPICS", "TABLES",
           "SINK_OBJECTS"]

FLOW_NAME = "web_orders"
SOURCE_TOPICS = ("src.shop.order", "src.tims.sales_order", "src.tims.customer", "src.tims.item")
#: what the customer master decided (a shop customer's TIMS customer): read by ``ingest`` too
LINK_TOPICS = (customer_links.TOPIC,)
STAGE_TOPICS = (f"{FLOW_NAME}.merge", f"{FLOW_NAME}.waiting")
TABLES = (FLOW_NAME, f"{FLOW_NAME}_waiting", f"{FLOW_NAME}_links")
SINK_OBJECTS = ("tims.sales_order", "shop.fulfillment")
log = logging.getLogger(__name__)
#: seconds between measurements of what waits (and expiries of SKU graces)
WAITING_REPORT_INTERVAL = 10.0


class WebOrders(ReloadsMapping, OrderStages):
    """The flow's topics, tables and stage bodies, built once per app by :func:`install`;
    ``merge`` is :meth:`OrderStages.merge_one` over these."""

    mapping_source = (load_mapping, DEFAULT_MAPPING_DIR)

    noun = "web order"
    appliers = {"shop": apply_shop, "tims": apply_tims}
    rechecker = staticmethod(recheck)
    new_row = staticmethod(new_row)
    unpark_released = True  # a buyer waits under its shop customer and its email: either releases it

    def __init__(self, ctx: FlowContext, mapping: WebOrderMapping) -> None:
        self.mapping = mapping
        self.source_topic = ctx.topic(*SOURCE_TOPICS, *LINK_TOPICS)
        self.merge_topic, waiting_topic = (ctx.topic(name) for name in STAGE_TOPICS)
        super().__init__(ctx, ctx.table(FLOW_NAME, default=None, key_type=str), waiting_topic,
                         {name: ctx.topic(f"sink.{name}") for name in SINK_OBJECTS})
        self.waiting = ctx.table(f"{FLOW_NAME}_waiting", default=None, key_type=str)
        #: ``customer:<shop customer>`` and ``email:<address>`` → TIMS customer (with
        #: ``version:customer:…``, the version of the master's record that told it), ``sku:<sku>`` →
        #: TIMS item, on every worker
        self.links = ctx.replicated("links")
        self.merge = KeyedBatchStage(ctx, "merge", MERGE, self.table, self.merge_one)

    # -- ingest ----------------------------------------------------------------------------------
    async def ingest_one(self, message: EventT) -> None:
        if str(message.topic).endswith(customer_links.TOPIC):
            await self.learn_buyer(message)
            return
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        if event.entity == "customer":
            email = normalize_email(event.fields.get("email"))
            customer = event.fields.get("customer_id") or event.record_id
            if email and event.change_type != "DELETE":
                await self.link(f"email:{email}", str(customer))
            return
        if event.entity == "item":
            if event.fields.get("sku") and event.change_type != "DELETE":
                await self.link(f"sku:{event.fields['sku']}", str(event.fields.get("item_id") or event.record_id))
            return
        key = self._order_of(event)
        if key is not None:
            await self.ctx.send(self.merge_topic, key, MergeEvent(event=message.value).wire())

    async def learn_buyer(self, message: EventT) -> None:
        """The customer master's links of a person: their shop customer's TIMS customer, unless a
        newer version of the master already said otherwise (a link that moved by a merge or an
        unmerge comes with a higher version, docs/adr/0036)."""
        try:
            told = customer_links.CustomerLinks.model_validate(message.value)
        except ValidationError as exc:
            await self.ctx.quarantine(f"ingest: unreadable customer links: {why(exc)}", message.value)
            return
        self.count("customer_links")
        found = master_link(told)
        if found is None:
            return
        ref, customer = found
        known = self.links.get(f"version:{ref}")
        if known is not None and int(known) > told.version:
            self.count("stale")
            return
        await self.link(ref, customer)
        if known != str(told.version):
            await self.ctx.send(*self.links.entry(f"version:{ref}", str(told.version)))

    def _order_of(self, event: SourceEvent) -> str | None:
        if event.source == "shop":
            return row_key(event.record_id)
        external = str(event.fields.get("external_id") or "")
        return external if external.startswith(KEY_PREFIX) else None  # other flows' orders

    async def report_waiting(self) -> None:
        """How many orders this worker holds back per kind of reference and the oldest's age; the
        orders whose unknown SKU has waited its grace are rechecked a last time."""
        try:
            now = now_ms()
            found: dict[str, list[int]] = {"customer": [], "email": [], "sku": []}
            grace_ms = self.mapping.unknown_sku_grace_seconds * 1000
            for ref, entry in list(self.waiting.items()):
                entry = entry or {"orders": {}, "expired": []}
                kind, since = ref.split(":", 1)[0], list(entry["orders"].values())
                found.setdefault(kind, []).extend(since)
                due = [ms for key, ms in entry["orders"].items() if key not in entry["expired"]]
                if kind == "sku" and due and now - min(due) >= grace_ms:
                    await self.ctx.send(self.waiting_topic, ref, Expire(kind="expire").wire())
            for kind, since in found.items():
                self.ctx.metrics.waiting(kind, len(since), (now - min(since)) / 1000 if since else 0.0)
        except Exception:  # noqa: BLE001 - a table read during a rebalance; the next round measures again
            log.warning("web orders: measuring what waits failed; trying again in %.0f s", WAITING_REPORT_INTERVAL,
                        exc_info=True)

def install(ctx: FlowContext) -> WebOrders:
    """Build the flow on ``ctx.app``: its mapping (validated now), topics, tables, agents and the
    timer that reports what waits."""
    flow = WebOrders(ctx, load_mapping(ctx.mappings_dir(DEFAULT_MAPPING_DIR)))
    flow.install_stages(FLOW_NAME, WAITING_REPORT_INTERVAL)
    return flow

"""Faust agents of the web orders flow, thin around ``order`` (docs/adr/0035).

    src.shop.order ─────────┐
    src.tims.sales_order ───┼─ingest─► web_orders.merge (key: shop:<order id>)  web_orders
    src.tims.customer ──────┤     │        ├─► sink.tims.sales_order (the order, once)
    src.tims.item ──────────┘     │        ├─► sink.shop.fulfillment (once TIMS shipped it)
       (links: email → TIMS customer, SKU → TIMS item, into the link map)
                                  └──► web_orders.waiting (key: email:… | sku:…)  web_orders_waiting
                                           └──► web_orders.merge (recheck)

``ingest`` learns links from TIMS customers (their email) and items (their SKU), and routes
shop orders and the TIMS sales orders made from them (``external_id`` ``shop:…``) to their row.
The link map is replicated, so ``merge`` reads links without a hop; an order whose buyer or SKU
is not linked yet is parked under that reference in ``waiting`` and rechecked when it is.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from faust.types import EventT

from connectors.envelope import SourceEvent
from topologies.customer_sync.identity import normalize_email
from topologies.flow import BatchLike, FlowContext
from topologies.orders.messages import MERGE, WAITING, Expire, Linked, MergeEvent, Park, Recheck
from topologies.stage import KeyedBatchStage, agent_named, read_message, read_source_event
from topologies.web_orders.order import (
    DEFAULT_MAPPING_DIR, KEY_PREFIX, Decision, WebOrderMapping, apply_shop, apply_tims, load_mapping, new_row,
    recheck, row_key,
)

__all__ = ["WebOrders", "install", "FLOW_NAME", "SOURCE_TOPICS", "STAGE_TOPICS", "TABLES", "SINK_OBJECTS"]

FLOW_NAME = "web_orders"
SOURCE_TOPICS = ("src.shop.order", "src.tims.sales_order", "src.tims.customer", "src.tims.item")
STAGE_TOPICS = (f"{FLOW_NAME}.merge", f"{FLOW_NAME}.waiting")
TABLES = (FLOW_NAME, f"{FLOW_NAME}_waiting", f"{FLOW_NAME}_links")
SINK_OBJECTS = ("tims.sales_order", "shop.fulfillment")
log = logging.getLogger(__name__)
#: seconds between measurements of what waits (and expiries of SKU graces)
WAITING_REPORT_INTERVAL = 10.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class WebOrders:
    """The flow's topics, tables and stage bodies, built once per app by :func:`install`."""

    def __init__(self, ctx: FlowContext, mapping: WebOrderMapping) -> None:
        self.ctx = ctx
        self.mapping = mapping
        self.source_topic = ctx.topic(*SOURCE_TOPICS)
        self.merge_topic, self.waiting_topic = (ctx.topic(name) for name in STAGE_TOPICS)
        self.sink_topics = {name: ctx.topic(f"sink.{name}") for name in SINK_OBJECTS}
        self.table = ctx.table(FLOW_NAME, default=None, key_type=str)
        self.waiting = ctx.table(f"{FLOW_NAME}_waiting", default=None, key_type=str)
        #: ``email:<address>`` → TIMS customer, ``sku:<sku>`` → TIMS item, on every worker
        self.links = ctx.replicated("links")
        self.merge = KeyedBatchStage(ctx, "merge", MERGE, self.table, self._merge)

    def count(self, name: str, n: int = 1) -> None:
        self.ctx.counters[name] += n

    # -- ingest ----------------------------------------------------------------------------------
    async def ingest_one(self, message: EventT) -> None:
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        if event.entity == "customer":
            email = normalize_email(event.fields.get("email"))
            customer = event.fields.get("customer_id") or event.record_id
            if email and event.change_type != "DELETE":
                await self._link(f"email:{email}", str(customer))
            return
        if event.entity == "item":
            if event.fields.get("sku") and event.change_type != "DELETE":
                await self._link(f"sku:{event.fields['sku']}", str(event.fields.get("item_id") or event.record_id))
            return
        key = self._order_of(event)
        if key is not None:
            await self.ctx.send(self.merge_topic, key, MergeEvent(event=message.value).wire())

    def _order_of(self, event: SourceEvent) -> str | None:
        if event.source == "shop":
            return row_key(event.record_id)
        external = str(event.fields.get("external_id") or "")
        return external if external.startswith(KEY_PREFIX) else None  # other flows' orders

    async def _link(self, ref: str, value: str) -> None:
        """Record a link on every worker; release the orders that wait for it."""
        if self.links.get(ref) == value:
            return
        await self.ctx.send(*self.links.entry(ref, value))
        self.count("links")
        await self.ctx.send(self.waiting_topic, ref, Linked(kind="linked").wire())

    # -- waiting ---------------------------------------------------------------------------------
    async def wait(self, stream: Any) -> None:
        await self.ctx.each("waiting", stream, self.wait_one)

    async def wait_one(self, event: EventT) -> None:
        read = await read_message(self.ctx, "waiting", WAITING, event)
        if read is None:
            return
        ref, message = read
        entry = self.waiting.get(ref) or {"orders": {}, "expired": []}
        if isinstance(message, Linked):
            acks = [await self.ctx.send(self.merge_topic, key, Recheck(kind="recheck").wire())
                    for key in entry["orders"]]
            for ack in acks:  # the table write below forgets them: they must be out first
                await ack
            self.count("released", len(acks))
            self.waiting[ref] = {"orders": {}, "expired": []}
        elif isinstance(message, Expire):
            # their grace is over: held (and quarantined) by merge, but still parked here for the link
            due = [key for key in entry["orders"] if key not in entry["expired"]]
            for key in due:
                await self.ctx.send(self.merge_topic, key, Recheck(kind="recheck", final=True).wire())
            self.waiting[ref] = {**entry, "expired": [*entry["expired"], *due]}
        elif self.links.get(ref) is not None:
            await self.ctx.send(self.merge_topic, message.key, Recheck(kind="recheck").wire())
        elif message.key not in entry["orders"] and len(entry["orders"]) >= self.mapping.waiting_limit:
            await self.ctx.quarantine(f"waiting: more than {self.mapping.waiting_limit} orders wait for {ref}",
                                      event.value)
        else:
            self.waiting[ref] = {**entry, "orders": {**entry["orders"], message.key: message.since}}
            self.count("parked")

    async def report_waiting(self) -> None:
        """How many orders this worker holds back per kind of reference and the oldest's age; the
        orders whose unknown SKU has waited its grace are rechecked a last time."""
        try:
            now = _now_ms()
            found: dict[str, list[int]] = {"email": [], "sku": []}
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

    # -- merge -----------------------------------------------------------------------------------
    async def _merge(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        stored = batch.get(self.table, key, event)
        row = stored or new_row(key)
        waited = set((row["waiting"] or {}).get("refs", []))
        if isinstance(message, Recheck):
            if stored is None or (not waited and not message.final):
                return
            decision = recheck(row, self.mapping, self.links, _now_ms(), final=message.final)
        else:
            source_event = SourceEvent.model_validate(message.event)
            apply = apply_shop if source_event.source == "shop" else apply_tims
            decision = apply(row, source_event, self.mapping, self.links, _now_ms())
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
            await self.ctx.quarantine(f"merge: web order {key} held: {decision.rejected}", row)


def install(ctx: FlowContext) -> WebOrders:
    """Build the flow on ``ctx.app``: its mapping (validated now), topics, tables, agents and the
    timer that reports what waits."""
    flow = WebOrders(ctx, load_mapping(ctx.mappings_dir(DEFAULT_MAPPING_DIR)))
    # ingest keeps no table: it runs outside Faust's per-message path (docs/adr/0028)
    ctx.direct("ingest", flow.source_topic, flow.ingest_one, before=flow.links.ready)
    for name, topic, body in (("waiting", flow.waiting_topic, flow.wait), ("merge", flow.merge_topic, flow.merge.run)):
        ctx.app.agent(topic, name=f"topologies.{FLOW_NAME}.agents.{name}", concurrency=1)(agent_named(body, name))
    ctx.app.timer(WAITING_REPORT_INTERVAL, name=f"topologies.{FLOW_NAME}.report_waiting")(flow.report_waiting)
    return flow

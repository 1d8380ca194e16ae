"""Faust agents of the shop catalogue flow, thin around ``catalog`` (docs/adr/0035, 0039).

    src.tims.item ────────┐                                        ┌─► sink.shop.variant
    src.tims.stock_level ─┼─ingest─► shop_catalog.merge (key: SKU) ┼─► sink.shop.inventory
    src.shop.product ─────┘          shop_catalog                  └─► sink.pardot.custom_redirect

``ingest`` sends a TIMS item or stock level to its SKU, and a shop product as one message per
variant with a SKU, so what TIMS says and every variant that sells it meet on one key. A stock
level of a TIMS location the mapping does not name is quarantined with the reason.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from faust.types import EventT
from pydantic import Field, TypeAdapter

from connectors.envelope import SourceEvent
from topologies.flow import BatchLike, FlowContext
from topologies.mapping_file import ReloadsMapping
from topologies.messages import EventMessage, StageMessage
from topologies.shop_catalog.catalog import (
    DEFAULT_MAPPING_DIR, CatalogMapping, apply_item, apply_stock, apply_variant, load_mapping, new_row,
    unmapped_location, variants_of,
)
from topologies.stage import KeyedBatchStage, agent_named, read_source_event

__all__ = ["ShopCatalog", "install", "FLOW_NAME", "SOURCE_TOPICS", "STAGE_TOPICS", "TABLES"]

FLOW_NAME = "shop_catalog"
SOURCE_TOPICS = ("src.tims.item", "src.tims.stock_level", "src.shop.product")
SINK_TOPICS = {"variant": "sink.shop.variant", "inventory": "sink.shop.inventory",
               "custom_redirect": "sink.pardot.custom_redirect"}
STAGE_TOPICS = (f"{FLOW_NAME}.merge",)
TABLES = (FLOW_NAME,)


class Variant(StageMessage):
    """One shop variant with the message key's SKU, as its product event showed it."""

    kind: Literal["variant"]
    variant_id: str = Field(min_length=1)
    product_id: str = Field(min_length=1)
    price: str | None = None
    updated_at: str = ""
    inventory_item_id: str | None = None
    handle: str | None = None


MERGE = TypeAdapter(Union[Variant, EventMessage])


class ShopCatalog(ReloadsMapping):
    mapping_source = (load_mapping, DEFAULT_MAPPING_DIR)

    def __init__(self, ctx: FlowContext, mapping: CatalogMapping) -> None:
        self.ctx = ctx
        self.mapping = mapping
        self.source_topic = ctx.topic(*SOURCE_TOPICS)
        self.merge_topic = ctx.topic(*STAGE_TOPICS)
        self.sink_topics = {name: ctx.topic(topic) for name, topic in SINK_TOPICS.items()}
        self.table = ctx.table(FLOW_NAME, default=None, key_type=str)
        self.merge = KeyedBatchStage(ctx, "merge", MERGE, self.table, self._merge)

    async def ingest_one(self, message: EventT) -> None:
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        if event.source == "tims":
            reason = unmapped_location(event, self.mapping) if event.entity == "stock_level" else None
            if reason is not None:
                await self.ctx.quarantine(reason, message.value)
            elif event.fields.get("sku"):
                await self.ctx.send(self.merge_topic, str(event.fields["sku"]), EventMessage(event=message.value).wire())
            return
        for variant in variants_of(event):
            price = None if variant["price"] is None else str(variant["price"])
            await self.ctx.send(self.merge_topic, variant["sku"], Variant(
                kind="variant", variant_id=variant["variant_id"], product_id=variant["product_id"], price=price,
                updated_at=variant["updated_at"], inventory_item_id=variant["inventory_item_id"],
                handle=variant["handle"]).wire())

    async def _merge(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        row = batch.get(self.table, key, event) or new_row(key)
        if isinstance(message, Variant):
            decision = apply_variant(row, message.model_dump(), self.mapping)
            source = "shop"
        else:
            source_event = SourceEvent.model_validate(message.event)
            apply = apply_stock if source_event.entity == "stock_level" else apply_item
            decision = apply(row, source_event, self.mapping)
            source = "tims"
        if decision.duplicate or decision.stale:
            self.ctx.counters["stale" if decision.stale else "duplicates"] += 1
            self.ctx.metrics.duplicate(source)
            return
        for command in decision.commands:
            await batch.send(self.sink_topics[command.object], command.partition_key, command.model_dump(mode="json"))
            self.ctx.metrics.command_out(command.system, command.object, command.source_commit_timestamp)
        self.ctx.counters["commands"] += len(decision.commands)
        batch.put(self.table, key, row, event)


def install(ctx: FlowContext) -> ShopCatalog:
    """Build the flow on ``ctx.app``: its mapping (validated now), topics, table and agents."""
    flow = ShopCatalog(ctx, load_mapping(ctx.mappings_dir(DEFAULT_MAPPING_DIR)))
    ctx.direct("ingest", flow.source_topic, flow.ingest_one)  # keeps no table (docs/adr/0028)
    ctx.app.agent(flow.merge_topic, name=f"topologies.{FLOW_NAME}.agents.merge",
                  concurrency=1)(agent_named(flow.merge.run, "merge"))
    return flow

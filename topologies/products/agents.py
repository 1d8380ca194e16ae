"""Faust agents of the products flow, thin around ``catalog``.

    src.tims.item, src.salesforce.Product2 ──ingest──► products.merge (key: TIMS item id)  products
                                                            ├─► sink.salesforce.Product2
                                                            ├─► sink.salesforce.PricebookEntry
                                                            ├─► sink.tims.item
                                                            └─► audit.conflicts

``ingest`` sends each event to its item: a TIMS item by its own id; a Product2 by its
``TIMS_Item_Number__c`` (present on every create, ours included; ``ingest`` records it in the
product map, ``product2:<Product2 Id>`` → item id, which every worker holds) or, on later updates
that do not restate it, by that map.
A Product2 with neither was created in Salesforce and has no TIMS item: it is kept under its own
id and not written anywhere (TIMS masters the catalogue; docs/adr/0021).

``merge`` is batched (docs/adr/0011) and guarded per event (``topologies.stage``): one wait for
the acks per batch, then the rows are written.
"""

from __future__ import annotations

from typing import Any

from faust.types import EventT

from connectors.envelope import SourceEvent
from topologies.flow import BatchLike, FlowContext
from topologies.mapping_file import ReloadsMapping
from topologies.products.catalog import (
    DEFAULT_MAPPING_DIR, SALESFORCE_KEY, ProductMapping, Unusable, apply_event, load_mapping, new_row,
)
from topologies.products.messages import MERGE, MergeEvent
from topologies.origin import written_by_us
from topologies.stage import KeyedBatchStage, agent_named, read_source_event

__all__ = ["Products", "install", "FLOW_NAME", "SOURCE_TOPICS", "STAGE_TOPICS", "TABLES", "SINK_OBJECTS"]

FLOW_NAME = "products"
SOURCE_TOPICS = ("src.tims.item", "src.salesforce.Product2")
STAGE_TOPICS = (f"{FLOW_NAME}.merge",)
TABLES = ("products", f"{FLOW_NAME}_product_map")
SINK_OBJECTS = ("salesforce.Product2", "salesforce.PricebookEntry", "tims.item")


class Products(ReloadsMapping):
    """The flow's topics, tables and stage bodies, built once per app by :func:`install`."""

    mapping_source = (load_mapping, DEFAULT_MAPPING_DIR)

    def __init__(self, ctx: FlowContext, mapping: ProductMapping) -> None:
        self.ctx = ctx
        self.mapping = mapping
        self.source_topic = ctx.topic(*SOURCE_TOPICS)
        self.merge_topic = ctx.topic(*STAGE_TOPICS)
        self.conflicts_topic = ctx.topic("audit.conflicts")
        self.sink_topics = {name: ctx.topic(f"sink.{name}") for name in SINK_OBJECTS}
        self.table = ctx.table("products", default=None, key_type=str)
        #: ``product2:<Product2 Id>`` → TIMS item id, on every worker
        self.product_map = ctx.replicated("product_map")
        settings = ctx.settings
        self.our_clients = {"salesforce": settings.salesforce_client_name, "tims": settings.tims_client_name}
        self.merge = KeyedBatchStage(ctx, "merge", MERGE, self.table, self._merge)

    async def ingest_one(self, message: EventT) -> None:
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        await self.ctx.send(self.merge_topic, await self.item_of(event), MergeEvent(event=message.value).wire())

    async def item_of(self, event: SourceEvent) -> str:
        """The item an event belongs to. A Product2's events share a partition, so the worker that
        maps its create (which names the item) reads its later updates (which may not)."""
        if event.source == "tims":
            return event.record_id
        ref = f"product2:{event.record_id}"
        item = event.fields.get(SALESFORCE_KEY)
        if item and self.product_map.get(ref) != str(item):
            await self.ctx.send(*self.product_map.entry(ref, str(item)))
        item = item or self.product_map.get(ref)
        return str(item) if item else ref

    async def _merge(self, batch: BatchLike, event: EventT, key: str, message: MergeEvent) -> None:
        source_event = SourceEvent.model_validate(message.event)
        row = batch.get(self.table, key, event) or new_row(key)
        ours = written_by_us(source_event, self.our_clients) is True
        try:
            outcome = apply_event(row, source_event, self.mapping, ours)
        except Unusable as exc:
            await self.ctx.quarantine(f"merge: {source_event.source}.{source_event.entity} "
                                      f"{source_event.record_id}: {exc}", message.event)
            return
        if outcome.duplicate:
            self.ctx.counters["duplicates"] += 1
            self.ctx.metrics.duplicate(source_event.source)
            return
        self.ctx.metrics.echo_fields(source_event.source, outcome.echo_fields)
        for command in outcome.commands:
            await batch.send(self.sink_topics[f"{command.system}.{command.object}"], command.partition_key,
                             command.model_dump(mode="json"))
            self.ctx.metrics.command_out(command.system, command.object, command.source_commit_timestamp)
        for conflict in outcome.conflicts:
            await batch.send(self.conflicts_topic, key, {"flow": FLOW_NAME, **conflict})
            self.ctx.metrics.conflict(conflict["owner"], conflict["rule"])
        self.ctx.counters["commands"] += len(outcome.commands)
        batch.put(self.table, key, row, event)


def install(ctx: FlowContext) -> Products:
    """Build the flow on ``ctx.app``: its mapping (validated now), topics, tables and agents."""
    flow = Products(ctx, load_mapping(ctx.mappings_dir(DEFAULT_MAPPING_DIR)))
    # ingest keeps no table: it runs outside Faust's per-message path (docs/adr/0028)
    ctx.direct("ingest", flow.source_topic, flow.ingest_one, before=flow.product_map.ready)
    for name, topic, body in (("merge", flow.merge_topic, flow.merge.run),):
        ctx.app.agent(topic, name=f"topologies.{FLOW_NAME}.agents.{name}", concurrency=1)(agent_named(body, name))
    return flow

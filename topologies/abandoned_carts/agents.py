"""Faust agents of the abandoned carts flow, thin around ``cart`` (docs/adr/0035).

    src.shop.checkout ──┐
    src.shop.order ─────┼─ingest─► abandoned_carts.merge (key: the buyer's email)  abandoned_carts
    src.pardot.prospect ┘                 │                                        abandoned_carts_due
                                          └─► sink.pardot.prospect, sink.pardot.list_membership
    timer: carts whose deadline passed ──► abandoned_carts.merge (due)

Everything about one buyer meets on one key, the normalised email, so no link map is needed:
the prospect's id (for the list membership) comes on the same key as the carts. The deadlines
are a small table of their own, so the timer reads only the open carts.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal, Union

from faust.types import EventT
from pydantic import TypeAdapter

from connectors.envelope import SourceEvent
from topologies.abandoned_carts.cart import (
    DEFAULT_MAPPING_DIR, CartMapping, Decision, apply_checkout, apply_order, apply_prospect, due, load_mapping, new_row,
)
from topologies.customer_sync.identity import normalize_email
from topologies.flow import BatchLike, FlowContext
from topologies.mapping_file import ReloadsMapping
from topologies.messages import EventMessage, StageMessage
from topologies.money import MoneyError
from topologies.stage import KeyedBatchStage, agent_named, read_source_event

__all__ = ["AbandonedCarts", "install", "FLOW_NAME", "SOURCE_TOPICS", "STAGE_TOPICS", "TABLES", "SINK_OBJECTS"]

FLOW_NAME = "abandoned_carts"
SOURCE_TOPICS = ("src.shop.checkout", "src.shop.order", "src.pardot.prospect")
STAGE_TOPICS = (f"{FLOW_NAME}.merge",)
TABLES = (FLOW_NAME, f"{FLOW_NAME}_due")
SINK_OBJECTS = ("pardot.prospect", "pardot.list_membership")
log = logging.getLogger(__name__)
#: seconds between looks at the carts' deadlines
DUE_INTERVAL = 5.0


class Due(StageMessage):
    """The cart's deadline has passed: abandoned, unless an order came."""

    kind: Literal["due"]


MERGE = TypeAdapter(Union[Due, EventMessage])


def _now_ms() -> int:
    return int(time.time() * 1000)


class AbandonedCarts(ReloadsMapping):
    """The flow's topics, tables and stage bodies, built once per app by :func:`install`."""

    mapping_source = (load_mapping, DEFAULT_MAPPING_DIR)

    def __init__(self, ctx: FlowContext, mapping: CartMapping) -> None:
        self.ctx = ctx
        self.mapping = mapping
        self.source_topic = ctx.topic(*SOURCE_TOPICS)
        self.merge_topic = ctx.topic(*STAGE_TOPICS)
        self.sink_topics = {name: ctx.topic(f"sink.{name}") for name in SINK_OBJECTS}
        self.table = ctx.table(FLOW_NAME, default=None, key_type=str)
        #: email → epoch ms of the open cart's deadline
        self.deadlines = ctx.table(f"{FLOW_NAME}_due", default=None, key_type=str)
        self.merge = KeyedBatchStage(ctx, "merge", MERGE, self.table, self._merge)

    async def ingest_one(self, message: EventT) -> None:
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        email = normalize_email(event.fields.get("email"))
        if email is None:
            if event.entity == "checkout":
                self.ctx.counters["anonymous_carts"] += 1  # nobody to nurture
            return
        await self.ctx.send(self.merge_topic, email, EventMessage(event=message.value).wire())

    async def _merge(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        stored = batch.get(self.table, key, event)
        if isinstance(message, Due):
            if stored is None:
                return
            row = stored
            try:
                decision = due(row, self.mapping, _now_ms())
            except MoneyError as exc:
                row["state"] = "held"
                await self.ctx.quarantine(f"merge: the cart of {key[:2]}…: {exc}", row["cart"])
                decision = Decision()
        else:
            source_event = SourceEvent.model_validate(message.event)
            if stored is None and source_event.entity != "checkout":
                return  # orders and prospects matter only to buyers with a cart
            row = stored or new_row(key)
            apply = {"checkout": apply_checkout, "order": apply_order}.get(source_event.entity, apply_prospect)
            decision = apply(row, source_event, self.mapping)
            if decision.duplicate:
                self.ctx.counters["duplicates"] += 1
                self.ctx.metrics.duplicate(source_event.source)
                return
        for command in decision.commands:
            await batch.send(self.sink_topics[f"{command.system}.{command.object}"], command.partition_key,
                             command.model_dump(mode="json"))
            self.ctx.metrics.command_out(command.system, command.object, command.source_commit_timestamp)
        self.ctx.counters["commands"] += len(decision.commands)
        if row["state"] != "open":
            batch.put(self.deadlines, key, None, event)
        elif decision.due_at is not None:  # a new or changed cart (else its deadline stands)
            batch.put(self.deadlines, key, decision.due_at, event)
        batch.put(self.table, key, row, event)

    async def look_at_deadlines(self) -> None:
        """Send the carts whose deadline passed to ``merge``; report how many wait and the oldest."""
        try:
            now, pending = _now_ms(), []
            for email, deadline in list(self.deadlines.items()):
                if deadline is None:
                    continue
                pending.append(deadline)
                if deadline <= now:
                    await self.ctx.send(self.merge_topic, email, Due(kind="due").wire())
            late = [now - d for d in pending if d <= now]
            self.ctx.metrics.waiting("deadline", len(pending), max(late) / 1000 if late else 0.0)
        except Exception:  # noqa: BLE001 - a table read during a rebalance; the next round looks again
            log.warning("abandoned carts: looking at deadlines failed; trying again in %.0f s", DUE_INTERVAL,
                        exc_info=True)


def install(ctx: FlowContext) -> AbandonedCarts:
    """Build the flow on ``ctx.app``: its mapping (validated now), topics, tables, agents and timer."""
    flow = AbandonedCarts(ctx, load_mapping(ctx.mappings_dir(DEFAULT_MAPPING_DIR)))
    ctx.direct("ingest", flow.source_topic, flow.ingest_one)  # keeps no table (docs/adr/0028)
    ctx.app.agent(flow.merge_topic, name=f"topologies.{FLOW_NAME}.agents.merge",
                  concurrency=1)(agent_named(flow.merge.run, "merge"))
    ctx.app.timer(DUE_INTERVAL, name=f"topologies.{FLOW_NAME}.look_at_deadlines")(flow.look_at_deadlines)
    return flow

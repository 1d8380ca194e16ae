"""What every flow's stages share: reading a typed stage message, and the batched stage's guard.

``FlowContext.each`` is the stage boundary of a stage that takes one event at a time. A batched
stage (``FlowContext.run_batches``, docs/adr/0011) handles its events against working copies of
table rows; :class:`KeyedBatchStage` gives it the same boundary per event: an event that cannot
be read, or whose handling raises, is quarantined with the stage and the reason, and its key's
working row is rebuilt from the table and the batch's earlier events for that key (they publish
their outputs again, which downstream tolerates), so one bad event never stalls a batch.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from faust.types import EventT
from pydantic import TypeAdapter, ValidationError

from connectors.envelope import SourceEvent
from topologies.flow import BatchLike, FlowContext

__all__ = ["read_message", "read_source_event", "why", "KeyedBatchStage", "agent_named"]

log = logging.getLogger(__name__)


def why(exc: ValidationError) -> str:
    """The first thing wrong with a message, as ``field.path: message``."""
    first = exc.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc']) or '(message)'}: {first['msg']}"


async def read_message(ctx: FlowContext, stage: str, adapter: TypeAdapter[Any],
                       event: EventT) -> tuple[str, Any] | None:
    """The event's key and typed message, or None once it is quarantined as unreadable."""
    try:
        return event.key.decode(), adapter.validate_python(event.value)
    except ValidationError as exc:
        await ctx.quarantine(f"{stage}: unreadable message: {why(exc)}", event.value)
    except (AttributeError, UnicodeDecodeError) as exc:
        await ctx.quarantine(f"{stage}: unreadable message: {exc}", event.value)
    return None


async def read_source_event(ctx: FlowContext, message: EventT) -> SourceEvent | None:
    """A source event taken into the flow (counted), or None once it is quarantined."""
    try:
        event = SourceEvent.model_validate(message.value)
    except ValidationError as exc:
        await ctx.quarantine(f"not a source event: {why(exc)}", message.value)
        return None
    ctx.counters["events_in"] += 1
    ctx.metrics.event_in(event.source, event.entity)
    return event


#: ``apply(batch, event, key, message)`` folds one message into its key's row
Apply = Callable[[BatchLike, EventT, str, Any], Awaitable[None]]


class KeyedBatchStage:
    """A batched stage over one table keyed like its topic, guarded per event."""

    def __init__(self, ctx: FlowContext, stage: str, adapter: TypeAdapter[Any], table: Any, apply: Apply) -> None:
        self.ctx, self.stage, self.adapter, self.table, self.apply = ctx, stage, adapter, table, apply

    async def run(self, stream: Any) -> None:
        await self.ctx.run_batches(stream, self.one, stage=self.stage)

    async def one(self, batch: BatchLike, event: EventT) -> None:
        read = await read_message(self.ctx, self.stage, self.adapter, event)
        if read is None:
            return
        key, message = read
        earlier: list[EventT] = batch.notes.setdefault((self.stage, key), [])
        try:
            await self.apply(batch, event, key, message)
        except Exception as exc:  # noqa: BLE001 - a bug on one event must not stall the batch
            log.exception("%s: an event for %s raised; quarantined", self.stage, key)
            await self.ctx.quarantine(f"{self.stage} raised {type(exc).__name__}: {exc}", event.value)
            batch.forget(self.table, key)
            replay = list(earlier)
            earlier.clear()
            for previous in replay:
                await self.one(batch, previous)
        else:
            earlier.append(event)


def agent_named(body: Callable[[Any], Awaitable[None]], name: str) -> Callable[[Any], Awaitable[None]]:
    """Faust names an agent after its function; a bound method needs a plain function."""
    async def agent(stream: Any) -> None:
        await body(stream)

    agent.__name__ = agent.__qualname__ = name
    return agent

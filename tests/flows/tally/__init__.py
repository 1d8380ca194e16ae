"""A small flow that lives outside ``topologies/``, as a site's own flow package would.

It counts the changes of each record on ``src.tims.note`` and publishes the running count on
``tally.counted``; what is not a source event goes to ``quarantine.tally``. A test registers
it by entry point (tests/integration/test_flow_plugin.py) and runs it in a real worker.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from connectors.envelope import SourceEvent
from topologies.flow import Flow, FlowContext

__all__ = ["FLOW"]

SOURCE = "src.tims.note"
OUTPUT = "tally.counted"


def install(ctx: FlowContext) -> dict[str, Any]:
    source, output = ctx.topic(SOURCE), ctx.topic(OUTPUT)
    counts = ctx.table("tally_counts", default=int, key_type=str)

    async def tally(stream: Any) -> None:
        async for event in stream.events():
            try:
                change = SourceEvent.model_validate(event.value)
            except ValidationError as exc:
                await ctx.quarantine(f"not a source event: {exc.errors()[0]['msg']}", event.value)
                continue
            ctx.metrics.event_in(change.source, change.entity)
            counts[change.record_id] += 1
            await ctx.send(output, change.record_id, {"record_id": change.record_id,
                                                      "count": counts[change.record_id]})

    ctx.app.agent(source, name="tests.flows.tally.tally", concurrency=1)(tally)
    return {"counts": counts}


FLOW = Flow(name="tally", source_topics=(SOURCE,), install=install, tables=("tally_counts",), sources=("tims",))

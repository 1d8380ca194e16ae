"""A sink accounts for every message it takes: in = processed + quarantined + dead-lettered, for
any input (unreadable bytes, commands for another record's key, writes the target refuses,
retries that run out, folded commands, a batch the sink itself fails on), and the metric
``connect_sink_messages_total`` says the same."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sink import WriteOutcome
from stream_app import metrics
from stream_app.metrics import REGISTRY
from stream_app.sinks.agents import QUARANTINE_TOPIC, SinkRuntime
from stream_app.sinks.engine import MemoryGuard, SinkEngine
from stream_app.sinks.registry import SinkOptions, SinkSpec

from .fakes import FakeWriter, command

#: what the fake target does with a command, by its LastName (the newest folded one decides)
FATES = ("ok", "refused", "flaky", "down")

upserts = st.builds(lambda ext, version, fate: command(ext, version, LastName=fate),
                    st.sampled_from("ABCD"), st.integers(1, 6), st.sampled_from(FATES))
deletes = st.builds(lambda ext, version: command(ext, version, "delete"), st.sampled_from("ABCD"), st.integers(1, 6))
messages = st.one_of(
    st.tuples(st.just("garbage"), st.binary(max_size=40)),
    st.tuples(st.just("wrong_key"), upserts),
    st.tuples(st.just("command"), upserts),
    st.tuples(st.just("command"), deletes),
)
#: (messages, whether the sink itself raises on this batch)
batches = st.lists(st.tuples(st.lists(messages, max_size=12), st.booleans()), min_size=1, max_size=4)


def script(c: Any, attempt: int) -> WriteOutcome | None:
    fate = c.fields.get("LastName", "ok")
    if fate == "refused":
        return WriteOutcome(c, ok=False, error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION", error="no")
    if fate == "down" or (fate == "flaky" and attempt == 1):
        return WriteOutcome(c, ok=False, error_code="UNABLE_TO_LOCK_ROW", error="busy", retryable=True)
    return None


class Outputs:
    def __init__(self) -> None:
        self.by_topic: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    async def publish_many(self, topic: str, entries: Sequence[tuple[str, dict[str, Any]]]) -> None:
        self.by_topic.setdefault(topic, []).extend(entries)

    async def flush(self) -> None:
        return None


def event(kind: str, payload: Any, offset: int) -> Any:
    if kind == "garbage":
        key, value = b"salesforce:Contact:X", payload
    else:
        key, value = payload.partition_key.encode(), payload.model_dump_json().encode()
        if kind == "wrong_key":
            key = b"salesforce:Contact:elsewhere"
    return SimpleNamespace(value=value, message=SimpleNamespace(topic="sink.salesforce.Contact", partition=0,
                                                                offset=offset, key=key))


async def play(spec: SinkSpec, plan: list[tuple[list[tuple[str, Any]], bool]]) -> tuple[SinkRuntime, Outputs]:
    async def no_sleep(_: float) -> None:
        return None

    options = SinkOptions(max_attempts=3)
    engine = SinkEngine(FakeWriter(script=script), options.policy(), sleep=no_sleep)
    outputs, guard = Outputs(), MemoryGuard()
    runtime = SinkRuntime(spec, engine, options, lambda latest: guard, outputs.publish_many, outputs.flush)
    metrics.watch_sinks({spec.agent_name: runtime})
    run = engine.run
    offset = 0
    for items, sink_fails in plan:
        async def failing(batch: Any, guard: Any) -> Any:
            await run(batch, guard)  # some writes may land before the bug: they are dead-lettered all the same
            raise KeyError("a bug in the sink")

        engine.run = failing if sink_fails else run  # type: ignore[method-assign]
        events = [event(kind, payload, offset + i) for i, (kind, payload) in enumerate(items)]
        offset += len(events)
        await runtime.handle(events)
    return runtime, outputs


SPEC = SinkSpec("salesforce", "Contact")  # the fakes' commands are for salesforce.Contact
OUTCOMES = ("in", "processed", "quarantined", "dead_lettered")


def counted() -> dict[str, float]:
    metrics.refresh()
    labels = {"system": "salesforce", "object": SPEC.object}
    return {outcome: REGISTRY.get_sample_value("connect_sink_messages_total", {**labels, "outcome": outcome}) or 0.0
            for outcome in OUTCOMES}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=batches)
def test_every_message_is_processed_quarantined_or_dead_lettered(plan: list[tuple[list[tuple[str, Any]], bool]]) -> None:
    before = counted()
    runtime, outputs = asyncio.run(play(SPEC, plan))
    stats = runtime.stats
    taken = sum(len(items) for items, _ in plan)
    unreadable = sum(1 for items, _ in plan for kind, _ in items if kind != "command")
    readable = [(payload, fails) for items, fails in plan for kind, payload in items if kind == "command"]

    assert stats.messages == taken
    assert stats.messages_processed + stats.quarantined + stats.messages_dead_lettered == taken
    assert stats.quarantined == unreadable == len(outputs.by_topic.get(QUARANTINE_TOPIC, []))
    dead = outputs.by_topic.get(SPEC.dlq_topic, [])
    assert stats.messages_dead_lettered == sum(1 + len(entry["folded"]) for _, entry in dead)
    in_failed_batches = sum(1 for _, fails in readable if fails)
    assert stats.messages_dead_lettered >= in_failed_batches
    if not any(fails or c.fields.get("LastName") in ("refused", "down") for c, fails in readable):
        assert stats.messages_dead_lettered == 0 and stats.messages_processed == len(readable)

    after = counted()
    assert {outcome: after[outcome] - before[outcome] for outcome in OUTCOMES} == {
        "in": taken, "processed": stats.messages_processed, "quarantined": unreadable,
        "dead_lettered": stats.messages_dead_lettered}

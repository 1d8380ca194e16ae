"""The sink agent in Faust's test context (memory store, no broker): acks, quarantine, DLQ, table."""

from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import faust
import pytest

from connectors.sink import WriteOutcome
from stream_app.sinks.agents import QUARANTINE_TOPIC, SinkRuntime, install
from stream_app.sinks.engine import Applied
from stream_app.sinks.registry import SinkOptions, SinkSpec

from .fakes import FakeWriter, command


def latest(stored: Any) -> int:
    """The newest version the table holds for a record (its JSON value read as the guard does)."""
    applied = Applied.from_stored(stored)
    assert applied is not None
    return applied.latest

SPEC = SinkSpec("salesforce", "Contact")


class Published:
    def __init__(self) -> None:
        self.by_topic: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.flushes = 0

    async def publish_many(self, topic: str, entries: Sequence[tuple[str, dict[str, Any]]]) -> None:
        self.by_topic.setdefault(topic, []).extend(entries)

    async def flush(self) -> None:
        self.flushes += 1


class Harness:
    def __init__(self, writer: FakeWriter) -> None:
        self.app = faust.App(f"sink-test-{uuid.uuid4().hex[:8]}", store="memory://", autodiscover=False)
        self.app.finalize()
        self.app.conf.store = "memory://"
        self.app.flow_control.resume()
        self.table = self.app.Table("sink-applied-versions", key_type=str, value_type=None)
        self.changelog: list[tuple[int | None, Any, Any]] = []
        self.table.send_changelog = self._send_changelog  # type: ignore[method-assign]
        self.published = Published()
        self.writer = writer
        runtimes = install(
            self.app, [SPEC], SinkOptions(batch_size=50, linger=0.05, max_attempts=3, retry_base_delay=0.001),
            lambda spec: writer, self.table, self.published.publish_many, self.published.flush,
            lambda spec: self.app.topic(spec.topic, value_serializer="raw"),
        )
        self.runtime: SinkRuntime = runtimes[SPEC.agent_name]
        self.agent = self.app.agents[SPEC.agent_name]


    def _send_changelog(self, partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        self.changelog.append((partition, key, value))
        return SimpleNamespace(message=SimpleNamespace(partition=partition))


def message(c) -> tuple[bytes, bytes]:
    return c.partition_key.encode(), c.model_dump_json().encode()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_batch_is_acked_only_after_its_writes_are_confirmed() -> None:
    writer = FakeWriter()
    writer.gate = asyncio.Event()
    harness = Harness(writer)
    async with harness.agent.test_context() as agent:
        events = []
        for c, partition in ((command("A", 1, LastName="a"), 2), (command("B", 1, LastName="b"), 1),
                             (command("A", 2, LastName="c"), 2)):
            key, value = message(c)
            events.append(await agent.put(value, key=key, partition=partition, wait=False))
        await asyncio.wait_for(writer.entered.wait(), 5)
        await asyncio.sleep(0.1)
        assert not any(e.message.acked for e in events), "acked before the target confirmed"
        assert harness.table.get("salesforce:Contact:A") is None
        writer.gate.set()
        await until(lambda: all(e.message.acked for e in events))

    assert [[c.version for c in call] for call in writer.calls] == [[2, 1]]
    assert latest(harness.table["salesforce:Contact:A"]) == 2 and latest(harness.table["salesforce:Contact:B"]) == 1
    assert harness.published.flushes >= 1
    # each key's changelog entry goes to the partition its commands came from (co-partitioning)
    assert sorted((p, k, latest(v)) for p, k, v in harness.changelog) == [
        (1, "salesforce:Contact:B", 1), (2, "salesforce:Contact:A", 2)]


async def test_a_batch_interrupted_by_a_stop_is_not_acked() -> None:
    """With ``take()`` the stop would close the generator, whose ``finally`` acks the batch:
    its offsets would be committed although nothing was written."""
    writer = FakeWriter()
    writer.gate = asyncio.Event()
    harness = Harness(writer)
    async with harness.agent.test_context() as agent:
        c = command("A", 1, LastName="a")
        event = await agent.put(message(c)[1], key=message(c)[0], wait=False)
        await asyncio.wait_for(writer.entered.wait(), 5)
    assert not event.message.acked and writer.landed == {}


async def test_malformed_messages_are_quarantined_and_poison_dead_lettered() -> None:
    def script(c, attempt: int) -> WriteOutcome | None:
        if c.fields.get("LastName") == "POISON":
            return WriteOutcome(c, ok=False, error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION", error="no")
        return None

    harness = Harness(FakeWriter(script=script))
    good, poison = command("A", 1, LastName="a"), command("P", 1, LastName="POISON")
    async with harness.agent.test_context() as agent:
        events = [
            await agent.put(b"{oops", key=b"salesforce:Contact:X", wait=False),
            await agent.put(message(good)[1], key=message(good)[0], wait=False),
            await agent.put(message(poison)[1], key=message(poison)[0], wait=False),
            await agent.put(json.dumps({"system": "tims"}).encode(), key=b"k", wait=False),
        ]
        await until(lambda: all(e.message.acked for e in events))

    quarantined = harness.published.by_topic[QUARANTINE_TOPIC]
    assert [key for key, _ in quarantined] == ["salesforce:Contact:X", "k"]
    assert quarantined[0][1]["reason"].startswith("not JSON") and quarantined[0][1]["raw"] == "{oops"
    assert quarantined[1][1]["context"]["key"] == "k" and "not a SinkCommand" in quarantined[1][1]["reason"]
    [(key, dead)] = harness.published.by_topic["dlq.salesforce"]
    assert key == "salesforce:Contact:P" and dead["error_code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert set(harness.writer.landed) == {"salesforce:Contact:A"}
    assert harness.runtime.stats.quarantined == 2 and harness.runtime.stats.dead_lettered == 1
    assert harness.table.get("salesforce:Contact:P") is None


@pytest.mark.parametrize("older_first", [True, False])
async def test_the_table_keeps_older_versions_out_across_batches(older_first: bool) -> None:
    harness = Harness(FakeWriter())
    newer, older = command("A", 5, LastName="new"), command("A", 3, LastName="old")
    async with harness.agent.test_context() as agent:
        for c in ([older, newer] if older_first else [newer]):
            e = await agent.put(message(c)[1], key=message(c)[0], wait=False)
        await until(lambda: e.message.acked)
        late = await agent.put(message(older)[1], key=message(older)[0], wait=False)
        await until(lambda: late.message.acked)

    landed = [c.fields["LastName"] for call in harness.writer.calls for c in call]
    assert landed == ["new"] and latest(harness.table["salesforce:Contact:A"]) == 5
    assert harness.runtime.stats.stale == 1 and harness.runtime.stats.folded == (1 if older_first else 0)


async def test_a_batch_that_raises_unexpectedly_is_dead_lettered_and_the_sink_goes_on() -> None:
    """Writer failures are outcomes the engine retries; this is a bug in the sink itself."""
    writer = FakeWriter()
    harness = Harness(writer)
    engine_run = harness.runtime.engine.run
    calls = {"n": 0}

    async def run_with_a_bug_once(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("a bug in the sink")
        return await engine_run(*args)

    harness.runtime.engine.run = run_with_a_bug_once  # type: ignore[method-assign]
    first, later = command("A", 1, LastName="a"), command("B", 1, LastName="b")
    async with harness.agent.test_context() as agent:
        e1 = await agent.put(message(first)[1], key=message(first)[0], wait=False)
        await until(lambda: e1.message.acked)
        e2 = await agent.put(message(later)[1], key=message(later)[0], wait=False)
        await until(lambda: e2.message.acked)

    [(key, dead)] = harness.published.by_topic["dlq.salesforce"]
    assert key == "salesforce:Contact:A" and dead["error_code"] == "INTERNAL_ERROR"
    assert dead["error"] == "KeyError: 'a bug in the sink'" and dead["command"]["fields"] == {"LastName": "a"}
    assert set(writer.landed) == {"salesforce:Contact:B"}, "the sink went on after the failed batch"
    assert harness.table.get("salesforce:Contact:A") is None and harness.runtime.stats.dead_lettered == 1

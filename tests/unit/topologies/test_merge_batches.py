"""The merge stage's batches in Faust's test context (memory store, no broker): working copies,
one wait for the acks before the table writes, acks after both, redone batches, quarantine."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any, Callable

import faust
import pytest

from connectors.envelope import SourceEvent
from stream_app.batching import run_batches
from stream_app.flows import BoundMetrics
from stream_app.settings import load_settings
from topologies.customer_sync import agents
from topologies.customer_sync.golden import Policy
from topologies.customer_sync.mapping import DEFAULT_MAPPING_DIR, load_mappings


class Outputs:
    """Stands in for the flow context's ``send``: records what merge publishes, and acks at once
    unless told to hold the acks (the broker has not answered yet)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.holding = False
        self._held: list[asyncio.Future[None]] = []

    async def send(self, topic: Any, key: str, value: Any) -> asyncio.Future[None]:
        self.sent.append((topic.get_topic_name(), key, value))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.holding:
            self._held.append(ack)
        else:
            ack.set_result(None)
        return ack

    def release(self) -> None:
        self.holding = False
        for ack in self._held:
            if not ack.done():
                ack.set_result(None)
        self._held.clear()

    def on(self, topic: str) -> list[tuple[str, Any]]:
        return [(key, value) for name, key, value in self.sent if name == topic]


class Index:
    """The identity index, in memory: entries are sent like any output (and recorded)."""

    def __init__(self, topic: Any) -> None:
        self.topic = topic
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def any(self) -> bool:
        return bool(self.values)

    def entry(self, key: str, value: str) -> tuple[Any, str, bytes]:
        self.values[key] = value
        return self.topic, key, value.encode()

    async def ready(self) -> None:
        return None


class Context:
    """A flow context on a bare app: memory tables, topics without prefix, sends recorded."""

    def __init__(self, app: faust.App, outputs: Outputs, size: int) -> None:
        self.app, self.outputs, self.size = app, outputs, size
        self.settings = load_settings()
        self.metrics = BoundMetrics(agents.FLOW_NAME)
        self.counters: Counter[str] = Counter()

    def topic(self, *names: str, **options: Any) -> Any:
        return self.app.topic(*names, **options)

    def table(self, name: str, **options: Any) -> Any:
        return self.app.Table(name, **options)

    def direct_table(self, name: str) -> Any:
        # the merge logic under test is the same over a Faust table and Faust's batches
        return self.app.Table(name, default=None, key_type=str)

    def replicated(self, name: str, *, lasting: bool = False) -> "Index":
        return Index(self.app.topic(f"{agents.FLOW_NAME}_{name}"))

    def mappings_dir(self, shipped: Any) -> Any:
        return shipped

    async def send(self, topic: Any, key: str, value: Any) -> Any:
        return await self.outputs.send(topic, key, value)

    async def quarantine(self, reason: str, raw: Any) -> None:
        self.counters["quarantined"] += 1
        await self.outputs.send(self.app.topic(f"quarantine.{agents.FLOW_NAME}"), agents.FLOW_NAME,
                                {"flow": agents.FLOW_NAME, "reason": reason, "raw": raw})

    async def run_batches(self, stream: Any, handle: Any) -> None:
        # a long linger: a batch goes when it is full, so each test decides what one batch holds
        await run_batches(stream, handle, self.outputs.send, size=self.size, linger=30)


class Harness:
    """The customer sync's merge agent on its own app, reading and writing a memory-store
    ``customer_master``."""

    def __init__(self, size: int) -> None:
        self.app = faust.App(f"merge-test-{uuid.uuid4().hex[:8]}", store="memory://", autodiscover=False)
        self.app.finalize()
        self.app.conf.store = "memory://"
        self.app.flow_control.resume()
        self.outputs = Outputs()
        self.context = Context(self.app, self.outputs, size)
        self.flow = agents.CustomerSync(self.context, load_mappings(DEFAULT_MAPPING_DIR), Policy())
        self.table = self.flow.customer_master
        self.changelog: list[tuple[int | None, Any, Any]] = []
        self.table.send_changelog = self._send_changelog  # type: ignore[method-assign]
        self.counters = self.context.counters

        async def merge(stream: Any) -> None:
            await self.flow.merge(stream)

        self.agent = self.app.agent(self.app.topic("customer_sync.merge"), name="merge", concurrency=1)(merge)

    def _send_changelog(self, partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        self.changelog.append((partition, key, value))
        return SimpleNamespace(message=SimpleNamespace(partition=partition))


def tims(event_id: str, ts: int, change: str = "UPDATE", **fields: Any) -> dict[str, Any]:
    """A merge message carrying a TIMS customer (full state) linked to Contact 003A."""
    state = {"customer_id": "C1", "external_id": "003A", "name": "Ada Lovelace", "email": "ada@example.com",
             "payment_terms": "NET30", "billing_address": {"city": "Leeds"}, "modified_by": "tims-ui"} | fields
    event = SourceEvent(event_id=event_id, source="tims", entity="customer", record_id="C1", change_type=change,
                        fields=state, full_state=True, commit_timestamp=ts)
    return {"kind": "event", "event": event.model_dump(mode="json")}


CREATE = tims("e1", 1_000, "CREATE")
NET60 = tims("e2", 2_000, payment_terms="net60")


def contact_writes(outputs: Outputs) -> list[tuple[int, dict[str, Any]]]:
    return [(value["version"], value["fields"]) for _, value in outputs.on("sink.salesforce.Contact")]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_two_events_for_one_key_in_one_batch_see_each_other() -> None:
    harness = Harness(size=2)
    async with harness.agent.test_context() as agent:
        events = [await agent.put(m, key=b"k1", partition=2, wait=False) for m in (CREATE, NET60)]
        await until(lambda: all(e.message.acked for e in events))

    # the second event saw the first: only the change is written, with the next version
    assert contact_writes(harness.outputs) == [
        (1, {"TIMS_Customer_ID__c": "C1", "TIMS_Payment_Terms__c": "NET30", "MailingCity": "Leeds"}),
        (2, {"TIMS_Payment_Terms__c": "NET60"})]
    assert sorted(key for key, _ in harness.outputs.on("customer_sync.identify")) == [
        "salesforce:Contact:003A", "tims:customer:C1"]
    assert harness.outputs.on("customer_sync_identity") == [
        ("tims:customer:C1", b"k1"), ("salesforce:Contact:003A", b"k1"), ("email:ada@example.com", b"k1")]
    # one write for the key, on the partition its events came from
    [(partition, key, record)] = harness.changelog
    assert (partition, key) == (2, "k1")
    assert record["seen"] == ["e1", "e2"] and record["fields"]["payment_terms"]["v"] == "NET60"
    assert harness.table["k1"]["version"] == 2
    assert harness.counters["commands"] == 2 and harness.counters["duplicates"] == 0


async def test_the_writes_wait_for_every_output_and_the_acks_for_the_writes() -> None:
    harness = Harness(size=2)
    harness.outputs.holding = True
    async with harness.agent.test_context() as agent:
        events = [await agent.put(CREATE, key=b"k1", partition=1, wait=False),
                  await agent.put(tims("f1", 1_000, "CREATE", customer_id="C2", external_id="003B",
                                       email="bo@example.com"), key=b"k2", partition=3, wait=False)]
        await until(lambda: len(harness.outputs.on("sink.salesforce.Contact")) == 2)
        await asyncio.sleep(0.1)
        assert not any(e.message.acked for e in events), "acked before the outputs were"
        assert harness.changelog == [] and harness.table.get("k1") is None
        harness.outputs.release()
        await until(lambda: all(e.message.acked for e in events))

    # each record is written under its own event: the partition that owns its key
    assert [(partition, key) for partition, key, _ in harness.changelog] == [(1, "k1"), (3, "k2")]


async def test_a_batch_interrupted_before_its_acks_is_redone_and_loses_nothing() -> None:
    harness = Harness(size=2)
    async with harness.agent.test_context() as agent:  # an earlier batch: the record exists
        first = [await agent.put(m, key=b"k1", wait=False) for m in (CREATE, tims("e0", 1_500))]
        await until(lambda: all(e.message.acked for e in first))
    stored = harness.table["k1"]
    assert stored["seen"] == ["e1", "e0"]
    harness.outputs.sent.clear()
    later = (NET60, tims("e3", 3_000, payment_terms="NET90"))

    harness.outputs.holding = True
    async with harness.agent.test_context() as agent:  # stopped while the broker has not acked
        interrupted = [await agent.put(m, key=b"k1", wait=False) for m in later]
        await until(lambda: len(harness.outputs.on("sink.salesforce.Contact")) == 2)
    assert not any(e.message.acked for e in interrupted)
    assert harness.table["k1"] == stored and len(harness.changelog) == 1, "the table moved before the acks"
    published = list(harness.outputs.sent)
    harness.outputs.sent.clear()
    harness.outputs.release()

    async with harness.agent.test_context() as agent:  # Kafka delivers the batch again
        redone = [await agent.put(m, key=b"k1", wait=False) for m in later]
        await until(lambda: all(e.message.acked for e in redone))
    assert harness.outputs.sent == published, "the redone batch publishes what the interrupted one did"
    assert contact_writes(harness.outputs) == [(2, {"TIMS_Payment_Terms__c": "NET60"}),
                                               (3, {"TIMS_Payment_Terms__c": "NET90"})]
    assert harness.table["k1"]["seen"] == ["e1", "e0", "e2", "e3"]
    assert harness.counters["duplicates"] == 0


async def test_a_written_batch_delivered_again_publishes_nothing_again() -> None:
    """A crash after the writes but before the offsets were committed: the records remember."""
    harness = Harness(size=2)
    async with harness.agent.test_context() as agent:
        events = [await agent.put(m, key=b"k1", wait=False) for m in (CREATE, NET60)]
        await until(lambda: all(e.message.acked for e in events))
        published = len(harness.outputs.sent)
        again = [await agent.put(m, key=b"k1", wait=False) for m in (CREATE, NET60)]
        await until(lambda: all(e.message.acked for e in again))
    assert len(harness.outputs.sent) == published
    assert harness.counters["duplicates"] == 2 and harness.counters["commands"] == 2
    assert len(harness.changelog) == 1, "a batch of duplicates writes nothing"


async def test_a_quarantined_event_in_the_middle_of_a_batch() -> None:
    harness = Harness(size=3)
    bad = tims("bad", 1_500, credit_limit="lots")
    async with harness.agent.test_context() as agent:
        events = [await agent.put(m, key=b"k1", partition=1, wait=False) for m in (CREATE, bad, NET60)]
        await until(lambda: all(e.message.acked for e in events))

    [(key, entry)] = harness.outputs.on("quarantine.customer_sync")
    assert key == "customer_sync" and entry["raw"] == bad["event"]
    assert entry["reason"] == "tims.customer C1: 'lots' is not a number"
    assert harness.counters["quarantined"] == 1
    # the events around it went on as if it had not been there
    assert contact_writes(harness.outputs) == [
        (1, {"TIMS_Customer_ID__c": "C1", "TIMS_Payment_Terms__c": "NET30", "MailingCity": "Leeds"}),
        (2, {"TIMS_Payment_Terms__c": "NET60"})]
    record = harness.table["k1"]
    assert record["seen"] == ["e1", "e2"] and "credit_limit" not in record["fields"]
    assert [(partition, key) for partition, key, _ in harness.changelog] == [(1, "k1")]


async def test_unreadable_merge_messages_are_quarantined_and_the_batch_goes_on() -> None:
    harness = Harness(size=4)
    async with harness.agent.test_context() as agent:
        events = [await agent.put(m, key=b"k1", partition=1, wait=False)
                  for m in (CREATE, "just a string", {"kind": "tims_link"}, NET60)]
        await until(lambda: all(e.message.acked for e in events))

    reasons = [entry["reason"] for _, entry in harness.outputs.on("quarantine.customer_sync")]
    assert len(reasons) == 2 and all(reason.startswith("merge: unreadable message") for reason in reasons)
    assert [version for version, _ in contact_writes(harness.outputs)] == [1, 2]
    assert harness.table["k1"]["seen"] == ["e1", "e2"]


async def test_an_event_that_makes_merge_raise_is_quarantined_and_its_row_rebuilt(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug on one event: that event is set aside with the error; the working row it may have
    changed half-way is rebuilt from the table and the batch's earlier events for the key."""
    harness = Harness(size=3)
    boom = tims("boom", 1_500, payment_terms="NET45")
    real_apply = agents.apply_event

    def apply_event(record: Any, event: SourceEvent, *args: Any) -> Any:
        if event.event_id == "boom":
            record["fields"]["payment_terms"] = {"v": "HALF-DONE", "src": "tims", "ts": 1_500}
            raise KeyError("a bug")
        return real_apply(record, event, *args)

    monkeypatch.setattr(agents, "apply_event", apply_event)
    async with harness.agent.test_context() as agent:
        events = [await agent.put(m, key=b"k1", partition=1, wait=False) for m in (CREATE, boom, NET60)]
        await until(lambda: all(e.message.acked for e in events))

    [(_, entry)] = harness.outputs.on("quarantine.customer_sync")
    assert entry["reason"] == "merge raised KeyError: 'a bug'" and entry["raw"] == boom
    record = harness.table["k1"]
    assert record["seen"] == ["e1", "e2"] and record["fields"]["payment_terms"]["v"] == "NET60"
    assert harness.counters["quarantined"] == 1

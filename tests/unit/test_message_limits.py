"""Oversize output refused before it is produced (connectors.kafka_limits, docs/adr/0020): the
limits as read and kept, the flow's sends, its quarantine entries and the sinks' outputs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from connectors.kafka_limits import RECORD_OVERHEAD, RETRY_UNKNOWN, MessageLimits, OversizeMessage
from stream_app.app import create_app
from stream_app.codecs import SafeJson
from stream_app.flows import FlowRuntime
from stream_app.settings import load_settings
from stream_app.sinks.agents import QUARANTINE_TOPIC, _publisher
from topologies.flow import Flow


class Lookups:
    """The broker's answers: ``limits`` per topic; ``None`` makes every lookup fail."""

    def __init__(self, limits: dict[str, int] | None) -> None:
        self.limits = limits
        self.asked: list[str] = []

    async def __call__(self, topics: Any) -> dict[str, int]:
        topics = list(topics)
        self.asked += topics
        if self.limits is None:
            raise ConnectionError("broker away")
        return {t: self.limits[t] for t in topics if t in self.limits}


class Topic:
    """A Faust topic as the senders use it: a name, and what was sent (by the sinks through the
    topic, by the flows through the app's producer: :class:`Producer`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[tuple[bytes, bytes]] = []
        SENT_TO[name] = self.sent

    def get_topic_name(self) -> str:
        return self.name

    async def maybe_declare(self) -> None:
        pass

    async def send(self, *, key: bytes, value: bytes, value_serializer: str) -> Any:
        assert value_serializer == "raw" and isinstance(value, bytes)
        self.sent.append((key, value))
        future = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace())
        return future


#: what was sent, by topic name (each :class:`Topic` registers its list)
SENT_TO: dict[str, list[tuple[bytes, bytes]]] = {}


class Producer:
    """The app's producer as ``FlowRuntime.send`` uses it."""

    async def send(self, topic: str, key: bytes, value: bytes, partition: Any, timestamp: Any, headers: Any) -> Any:
        assert isinstance(value, bytes) and partition is None
        SENT_TO[topic].append((key, value))
        future = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace())
        return future


async def test_a_topic_limit_is_read_once_and_capped_by_the_producer() -> None:
    lookups = Lookups({"small": 20_000, "big": 5_000_000})
    limits = MessageLimits("unused", producer_limit=1_000_000, lookup=lookups)
    assert await limits.limit("small") == 20_000 - RECORD_OVERHEAD
    assert await limits.limit("small") == 20_000 - RECORD_OVERHEAD
    assert await limits.limit("big") == 1_000_000 - RECORD_OVERHEAD
    assert lookups.asked == ["small", "big"]
    assert await limits.check("small", b"k", b"v" * 100) == 101
    with pytest.raises(OversizeMessage) as refused:
        await limits.check("small", b"k", b"v" * 20_000)
    assert (refused.value.topic, refused.value.size, refused.value.limit) == ("small", 20_001, 20_000 - RECORD_OVERHEAD)
    assert "20,001 bytes" in str(refused.value) and "19,488 bytes" in str(refused.value)


async def test_an_unknown_limit_is_the_brokers_default_and_asked_again_later() -> None:
    now = [0.0]
    lookups = Lookups(None)
    limits = MessageLimits("unused", lookup=lookups, clock=lambda: now[0])
    assert await limits.limit("t") == 1_048_588 - RECORD_OVERHEAD
    await limits.limit("t")
    assert lookups.asked == ["t"]
    lookups.limits = {"t": 50_000}
    now[0] += RETRY_UNKNOWN
    assert await limits.limit("t") == 50_000 - RECORD_OVERHEAD
    assert lookups.asked == ["t", "t"]


def flow_runtime(tmp_path: Path, limits: dict[str, int]) -> tuple[FlowRuntime, Topic]:
    app = create_app(load_settings(store="memory://", data_dir=str(tmp_path)), flows=False, sinks=False,
                     metrics=False)
    app.limits = MessageLimits("unused", lookup=Lookups(limits))
    app.producer = Producer()
    flow = FlowRuntime(app, Flow(name="probe", source_topics=(), install=lambda ctx: None))
    quarantine = Topic(flow._quarantine_topic.get_topic_name())
    flow._quarantine_topic = quarantine
    return flow, quarantine


async def test_an_oversize_output_quarantines_its_input_with_stage_size_and_limit(tmp_path: Path) -> None:
    flow, quarantine = flow_runtime(tmp_path, {"out": 10_000})
    out = Topic("out")

    async def handle(event: Any) -> None:
        await flow.send(out, "k", {"copy": event.value})

    class Stream:
        async def events(self) -> Any:
            for value in ({"small": 1}, {"note": "x" * 20_000}, {"small": 2}):
                yield SimpleNamespace(value=value, key=b"k")

    await flow.each("ingest", Stream(), handle)

    assert [SafeJson().loads(value) for _, value in out.sent] == [{"copy": {"small": 1}}, {"copy": {"small": 2}}]
    [(_, raw)] = quarantine.sent
    entry = SafeJson().loads(raw)
    assert entry["reason"].startswith("ingest raised OversizeMessage: out: message of 20,")
    assert "over the topic's limit of 9,488 bytes" in entry["reason"]
    assert entry["raw"] == {"note": "x" * 20_000}


async def test_a_quarantine_entry_stays_within_its_topics_limit(tmp_path: Path) -> None:
    flow, quarantine = flow_runtime(tmp_path, {})
    quarantine_limit = 8_000
    flow.app.limits = MessageLimits("unused", lookup=Lookups({quarantine.name: quarantine_limit}))
    await flow.quarantine("too big", {"note": '"quoted" ' * 50_000})
    await flow.quarantine("not JSON", SafeJson().loads(b"\xff" * 50_000))
    assert len(quarantine.sent) == 2
    for key, value in quarantine.sent:
        assert len(key) + len(value) <= quarantine_limit - RECORD_OVERHEAD
    first = SafeJson().loads(quarantine.sent[0][1])["raw"]
    assert first["truncated"] is True and first["size"] > 450_000
    assert not (tmp_path / "quarantine.probe.jsonl").exists()


async def test_a_sink_output_too_large_goes_to_the_sink_quarantine() -> None:
    topics = {name: Topic(name) for name in (QUARANTINE_TOPIC, "dlq.salesforce")}
    publish_many = _publisher(topics, MessageLimits("unused", lookup=Lookups({"dlq.salesforce": 5_000})))
    await publish_many("dlq.salesforce", [("a", {"command": "small"}), ("b", {"command": "y" * 6_000})])

    assert [key for key, _ in topics["dlq.salesforce"].sent] == [b"a"]
    [(key, raw)] = topics[QUARANTINE_TOPIC].sent
    entry = SafeJson().loads(raw)
    assert key == b"b" and entry["context"] == {"topic": "dlq.salesforce", "key": "b"}
    assert entry["reason"].startswith("dlq.salesforce: message of 6,")
    assert entry["raw"] == {"command": "y" * 6_000}

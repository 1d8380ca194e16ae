"""The stage boundary of a flow (stream_app.flows.FlowRuntime): no message kills a stage."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from connectors.kafka_limits import MessageLimits
from stream_app.app import create_app
from stream_app.codecs import SafeJson
from stream_app.flows import FlowRuntime
from stream_app.metrics import REGISTRY
from stream_app.settings import load_settings
from topologies.flow import Flow


class Stream:
    def __init__(self, *values: Any) -> None:
        self.values = values

    async def events(self) -> Any:
        for offset, value in enumerate(self.values):
            yield SimpleNamespace(value=value, key=b"k", message=SimpleNamespace(topic="t.src", partition=1,
                                                                                offset=offset))


async def no_broker(topics: Any) -> dict[str, int]:
    raise ConnectionError("no broker in unit tests")


def runtime(tmp_path: Path) -> tuple[FlowRuntime, list[dict[str, Any]]]:
    app = create_app(load_settings(store="memory://", data_dir=str(tmp_path)), flows=False, sinks=False,
                     metrics=False)
    app.limits = MessageLimits("unused", lookup=no_broker)
    flow = FlowRuntime(app, Flow(name="probe", source_topics=(), install=lambda ctx: None))
    sent: list[dict[str, Any]] = []

    async def send(topic: Any, key: str, value: Any) -> None:
        sent.append(value)

    flow.send = send  # type: ignore[method-assign]
    return flow, sent


async def test_unreadable_and_raising_messages_are_quarantined_and_the_stage_goes_on(tmp_path: Path) -> None:
    flow, quarantined = runtime(tmp_path)
    handled: list[Any] = []

    async def handle(event: Any) -> None:
        if event.value == {"boom": True}:
            raise KeyError("boom")
        handled.append(event.value)

    def counts() -> dict[str, float]:  # the registry is the process's: other tests may count too
        return {outcome: REGISTRY.get_sample_value("connect_flow_stage_messages_total",
                                                   {"flow": "probe", "stage": "probe-stage", "outcome": outcome}) or 0
                for outcome in ("in", "processed", "quarantined")}

    before = counts()
    stream = Stream({"n": 1}, SafeJson().loads(b"\xff not json"), {"boom": True}, {"n": 2})
    await flow.each("probe-stage", stream, handle)

    assert handled == [{"n": 1}, {"n": 2}]
    after = counts()
    assert {k: after[k] - before[k] for k in after} == {"in": 4, "processed": 2, "quarantined": 2}
    assert [entry["reason"].split(":")[0] for entry in quarantined] == ["probe-stage", "probe-stage raised KeyError"]
    assert quarantined[0]["raw"]["undecodable"] and quarantined[1]["raw"] == {"boom": True}
    assert flow.counters["quarantined"] == 2
    # each entry says where its message came from, to find it or send it again
    assert [entry["origin"] for entry in quarantined] == [
        {"stage": "probe-stage", "topic": "t.src", "partition": 1, "offset": offset, "key": "k"} for offset in (1, 2)]


async def test_a_quarantine_write_that_fails_lands_in_a_local_file(tmp_path: Path) -> None:
    flow, _ = runtime(tmp_path)

    async def broken(topic: Any, key: str, value: Any) -> None:
        raise RuntimeError("broker gone")

    flow.send = broken  # type: ignore[method-assign]
    await flow.quarantine("why", {"a": "b" * 10})
    [line] = (tmp_path / "quarantine.probe.jsonl").read_text().splitlines()
    assert SafeJson().loads(line.encode()) == {"flow": "probe", "reason": "why", "raw": {"a": "b" * 10}}

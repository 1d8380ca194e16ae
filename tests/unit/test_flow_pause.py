"""Pause and resume at the stage boundary, and the commands of ``control.flows`` (docs/adr/0037)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stream_app.control import ControlReader, FlowGates, command, latest_by_key
from stream_app.flows import flow_gates
from tests.unit.test_flow_boundary import Stream, runtime


async def test_a_paused_flow_handles_nothing_until_resumed_then_everything_in_order(tmp_path: Path) -> None:
    flow, _ = runtime(tmp_path)
    gates = flow_gates(flow.app)
    handled: list[Any] = []

    async def handle(event: Any) -> None:
        handled.append(event.value)

    gates.set_paused("probe", True)
    stage = asyncio.create_task(flow.each("probe-stage", Stream({"n": 1}, {"n": 2}), handle))
    await asyncio.sleep(0.2)
    assert handled == [] and not stage.done()
    gates.set_paused("other", False)  # another flow's word changes nothing here
    await asyncio.sleep(0.05)
    assert handled == []
    gates.set_paused("probe", False)
    await asyncio.wait_for(stage, 5)
    assert handled == [{"n": 1}, {"n": 2}]


def test_pause_and_resume_share_a_key_so_compaction_keeps_the_last_word() -> None:
    assert command("pause", "orders", "olga")[0] == command("resume", "orders", "olga")[0] == "pause:orders"
    assert command("reload", "orders", "olga")[0] == "reload:orders"
    with pytest.raises(ValueError, match="unknown action"):
        command("drop", "orders", "olga")


def test_the_console_reads_paused_and_the_latest_reports() -> None:
    _, paused = command("pause", "orders", "olga")
    values = {"pause:orders": paused,
              "done:orders:pause:w1": {"kind": "done", "action": "pause", "at_ms": 2, "ok": True},
              "done:orders:reload:w1": {"kind": "done", "action": "reload", "at_ms": 5, "ok": False},
              "done:lists:pause:w1": {"kind": "done", "action": "pause", "at_ms": 9, "ok": True}}
    state = latest_by_key(values, "orders")
    assert state["paused"] and [d["action"] for d in state["done"]] == ["reload", "pause"]
    assert not latest_by_key(values, "lists")["paused"]


async def test_the_reader_applies_old_pauses_quietly_and_reports_live_commands() -> None:
    gates = FlowGates()
    loaded: list[str] = []
    reader = ControlReader("unused:9092", "control.flows", gates, {"orders": lambda: loaded.append("x") or "1 file"},
                           worker="w1")
    reports: list[tuple[str, dict[str, Any]]] = []

    async def send(key: str, value: dict[str, Any]) -> None:
        reports.append((key, value))

    reader._writer = SimpleNamespace(send=send)  # type: ignore[assignment]
    encode = lambda action, flow: json.dumps(command(action, flow, "olga")[1]).encode()  # noqa: E731
    await reader._apply(encode("pause", "orders"), live=False)
    await reader._apply(encode("reload", "orders"), live=False)
    assert gates.paused("orders") and loaded == [] and reports == []
    await reader._apply(encode("resume", "orders"), live=True)
    await reader._apply(encode("reload", "orders"), live=True)
    await reader._apply(encode("reload", "lists"), live=True)
    await reader._apply(b"not json", live=True)
    assert not gates.paused("orders") and loaded == ["x"]
    assert [(key, value["ok"]) for key, value in reports] == [
        ("done:orders:resume:w1", True), ("done:orders:reload:w1", True), ("done:lists:reload:w1", False)]
    assert "restart the workers" in reports[-1][1]["message"]

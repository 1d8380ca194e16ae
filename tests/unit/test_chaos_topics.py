"""The chaos run counts every quarantine and DLQ topic there is, as the registries name them
(tests/support/chaos.py), not a list kept by hand."""

from __future__ import annotations

from pathlib import Path

from connectors.registry import connectors
from stream_app.app import create_app
from stream_app.settings import load_settings
from stream_app.sinks.agents import QUARANTINE_TOPIC
from tests.support.chaos import dead_letter_topics, quarantine_topics
from topologies.registry import all_flows


def test_every_quarantine_a_worker_declares_is_counted(tmp_path: Path) -> None:
    every_flow = ",".join(flow.name for flow in all_flows())  # those off by default too
    app = create_app(load_settings(store="memory://", data_dir=str(tmp_path), flows=every_flow), sinks=False,
                     metrics=False)
    declared = {name for names in app.owned._topics for name in names}
    flows_quarantines = {name for name in declared if name.startswith("quarantine.")}
    assert flows_quarantines == {flow.quarantine_topic for flow in all_flows()}, "each flow declares its quarantine"
    assert flows_quarantines | {QUARANTINE_TOPIC} <= set(quarantine_topics())


def test_every_system_s_source_quarantine_and_dlq_is_counted() -> None:
    for spec in connectors().values():
        assert f"quarantine.{spec.name}" in quarantine_topics() and f"dlq.{spec.name}" in dead_letter_topics()
    assert len(set(quarantine_topics())) == len(quarantine_topics())

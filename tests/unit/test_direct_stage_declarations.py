"""Direct stages (docs/adr/0028) as the flows declare and install them: rebuild, replay and the
lag metric take a topic a direct stage reads to be read by direct stages only."""

from __future__ import annotations

from pathlib import Path

from stream_app.app import create_app
from stream_app.flows import AppGroups, direct_groups
from stream_app.settings import load_settings


def test_no_faust_agent_reads_a_topic_a_direct_stage_reads(tmp_path: Path) -> None:
    from topologies.registry import all_flows

    every_flow = ",".join(flow.name for flow in all_flows())  # those off by default too
    settings = load_settings(store="memory://", data_dir=str(tmp_path), topic_prefix="p.", flows=every_flow)
    app = create_app(settings, sinks=True, metrics=False)
    assert {"p.src.pardot.visitor_activity", "p.src.salesforce.CampaignMember"} <= {
        topic for topics in app.direct_groups.values() for topic in topics}
    direct = {topic for topics in app.direct_groups.values() for topic in topics}
    assert "p.src.tims.customer" in direct and "p.src.salesforce.Account" in direct
    agent_topics = {topic for agent in app.agents.values() for topic in agent.channel.topics}
    assert not agent_topics & direct, sorted(agent_topics & direct)
    installed = {stage.group for part in app.parts.values()
                 for stage in getattr(getattr(part, "ctx", None), "direct_stages", {}).values()}
    assert installed == set(app.direct_groups), "every declared direct stage is installed, and only those"


def test_a_topic_read_by_two_direct_stages_is_moved_in_both() -> None:
    groups = AppGroups("app", {"app.a.ingest": ["src.x", "src.y"], "app.b.ingest": ["src.y"]})
    assert groups.readers("src.y") == ["app.a.ingest", "app.b.ingest"]
    assert groups.readers("sink.tims.customer") == ["app"]
    from aiokafka import TopicPartition

    x, y, s = TopicPartition("src.x", 0), TopicPartition("src.y", 1), TopicPartition("sink.tims.customer", 0)
    assert groups.split({x: 1, y: 2, s: 3}) == {"app.a.ingest": {x: 1, y: 2}, "app.b.ingest": {y: 2}, "app": {s: 3}}


def test_the_groups_are_named_after_the_apps_group(tmp_path: Path) -> None:
    settings = load_settings(store="memory://", data_dir=str(tmp_path), topic_prefix="")
    assert {"connect-v2.customer_sync.ingest", "connect-v2.orders.ingest", "connect-v2.products.ingest"} <= set(
        direct_groups(settings, "connect-v2"))


def test_readiness_waits_for_every_direct_stage_to_consume() -> None:
    from types import SimpleNamespace

    from stream_app.health import worker_readiness

    recovery = SimpleNamespace(completed=SimpleNamespace(is_set=lambda: True), in_recovery=False)
    stages = [SimpleNamespace(group="app.customer_sync.ingest", state="consuming"),
              SimpleNamespace(group="app.orders.ingest", state="starting")]
    app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery), rebalancing=False,
                          consumer=SimpleNamespace(assignment=lambda: {1, 2}), parts={}, direct_stages=stages)
    report = worker_readiness(app, None)  # type: ignore[arg-type]
    check = report.checks["direct_stages_consuming"]
    assert not check.ok and check.detail == {"app.customer_sync.ingest": "consuming", "app.orders.ingest": "starting"}
    assert not report.ok
    stages[1].state = "consuming"
    assert worker_readiness(app, None).ok  # type: ignore[arg-type]

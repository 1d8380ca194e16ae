"""stream_app.worker_sensor: the two Faust metrics the dashboards read, nothing done per message."""

from __future__ import annotations

from time import monotonic
from types import SimpleNamespace

from faust.sensors import Monitor, Sensor
from faust.types.tuples import TP
from prometheus_client import CollectorRegistry, Gauge, Histogram

from stream_app import metrics
from stream_app.app import create_app
from stream_app.settings import load_settings
from stream_app.worker_sensor import PER_MESSAGE_HOOKS, LeanMonitor

#: hooks Faust calls per commit, rebalance, assignment, web request or send error: the base monitor's
KEPT_HOOKS = {
    "on_commit_initiated", "on_commit_completed", "on_send_error", "on_assignment_start", "on_assignment_error",
    "on_assignment_completed", "on_rebalance_start", "on_rebalance_return", "on_rebalance_end",
    "on_web_request_start", "on_web_request_end", "on_threaded_producer_buffer_processed", "on_tp_commit",
}
TOPIC = TP("t", 0)


def _monitor() -> tuple[LeanMonitor, CollectorRegistry]:
    registry = CollectorRegistry()
    latency = Histogram("commit_latency", "ms", buckets=metrics.FAUST_MS_BUCKETS, registry=registry)
    rebalances = Gauge("rebalances", "in progress", registry=registry)
    return LeanMonitor(commit_latency=latency, rebalances=rebalances), registry


def test_the_worker_uses_the_lean_monitor_and_exports_what_the_dashboards_read() -> None:
    app = create_app(load_settings(), flows=False, sinks=False)
    assert isinstance(app.monitor, LeanMonitor)
    assert {"faust_consumer_commit_latency_bucket", "faust_total_rebalances"} <= metrics.exported_names()
    assert not {name for name in metrics.exported_names() if name.startswith("faust_total_events")}


def test_every_hook_faust_has_is_either_a_per_message_no_op_or_kept() -> None:
    """A hook a new Faust adds fails here, so someone decides whether it runs per message."""
    hooks = {name for cls in (Sensor, Monitor) for name in vars(cls) if name.startswith(("on_", "track_"))}
    assert hooks == set(PER_MESSAGE_HOOKS) | KEPT_HOOKS
    assert all(getattr(LeanMonitor, name) is not getattr(Monitor, name) for name in PER_MESSAGE_HOOKS)


def test_per_message_hooks_keep_no_state_but_the_stream_inbound_time() -> None:
    monitor, _ = _monitor()
    before = dict(monitor.asdict())
    message = SimpleNamespace(time_in=None)
    stream, table = SimpleNamespace(task_owner=None), SimpleNamespace(name="table")
    monitor.on_message_in(TOPIC, 1, message)
    assert monitor.on_stream_event_in(TOPIC, 1, stream, None) is None
    monitor.on_stream_event_out(TOPIC, 1, stream, None, None)
    monitor.on_message_out(TOPIC, 1, message)
    monitor.on_topic_buffer_full(TOPIC)
    monitor.on_table_get(table, "k")
    monitor.on_table_set(table, "k", 1)
    monitor.on_table_del(table, "k")
    assert monitor.on_send_initiated(None, "t", None, 1, 1) is None
    monitor.on_send_completed(None, None, None)
    monitor.track_tp_end_offset(TOPIC, 10)
    assert monitor.asdict() == before and message.time_in is None
    assert set(monitor.stream_inbound_time) == {TOPIC}


def test_commit_latency_is_observed_in_ms_and_rebalances_in_progress_are_0_or_1() -> None:
    monitor, registry = _monitor()
    monitor.time = iter([10.0, 10.03]).__next__
    monitor.on_commit_completed(None, monitor.on_commit_initiated(None))
    assert registry.get_sample_value("commit_latency_count") == 1
    assert registry.get_sample_value("commit_latency_bucket", {"le": "25.0"}) == 0
    assert registry.get_sample_value("commit_latency_bucket", {"le": "50.0"}) == 1
    monitor.time = monotonic
    app = SimpleNamespace(rebalancing_count=1)
    state = monitor.on_rebalance_start(app)
    monitor.on_rebalance_start(app)  # a second rebalance before the first returned
    assert registry.get_sample_value("rebalances") == 1
    monitor.on_rebalance_return(app, state)
    assert registry.get_sample_value("rebalances") == 0

"""stream_app/metrics.py without a broker: label guard, position age, watchers, the exposition."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx

from connectors.budget import ApiBudget
from connectors.retry import CostStats, RetryStats
from stream_app import metrics
from stream_app.metrics_server import serve_source_metrics


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_label_values_are_bounded_and_never_emails() -> None:
    assert metrics.bounded("entity", "Contact") == "Contact"
    assert metrics.bounded("entity", None) == "none"
    assert metrics.bounded("entity", "ada@example.com") == "other"
    values = {metrics.bounded("test-overflow", f"v{i}") for i in range(metrics.LABEL_VALUES_LIMIT + 20)}
    assert len(values) == metrics.LABEL_VALUES_LIMIT + 1 and "other" in values


def test_position_time_of_each_source_kind() -> None:
    caught_up = {"replay_id": "0a", "latest_replay_id": "0a", "commit_timestamp": 1_000, "saved_at": 5_000_000}
    behind = {"replay_id": "0a", "latest_replay_id": "0f", "commit_timestamp": 2_000_000, "saved_at": 5_000_000}
    assert metrics.position_time(caught_up) == 5_000
    assert metrics.position_time(behind) == 2_000
    assert metrics.position_time({"cursor": "c", "updated_at": "2026-01-01T00:00:00Z"}) == 1767225600.0
    assert metrics.position_time({"updated_at": "yesterday"}) is None
    assert metrics.position_time({}) is None


def test_latency_is_measured_from_the_source_commit_time() -> None:
    metrics.observe_command_out("unit", "tims", "customer", int((time.time() - 3) * 1000))
    metrics.observe_command_out("unit", "tims", "customer", None)
    assert sample("connect_flow_latency_seconds_count", flow="unit") == 1
    assert sample("connect_flow_latency_seconds_bucket", flow="unit", le="2.5") == 0
    assert sample("connect_flow_latency_seconds_bucket", flow="unit", le="5.0") == 1
    assert sample("connect_flow_commands_out_total", flow="unit", system="tims", object="customer") == 2


@dataclass
class FakePositions:
    saved: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class FakeSource:
    system: str = "pardot"
    positions: FakePositions = field(default_factory=FakePositions)
    publisher: Any = field(default_factory=lambda: SimpleNamespace(quarantined=0))
    published_per_topic: Counter[str] = field(default_factory=Counter)
    last_poll: dict[str, float] = field(default_factory=dict)
    client: Any = field(default_factory=lambda: SimpleNamespace(
        budget=ApiBudget("pardot"), stats=RetryStats()))


def test_a_source_is_read_when_scraped() -> None:
    source = FakeSource()
    port = serve_source_metrics(source, 0)
    source.published_per_topic["src.pardot.prospect"] += 3
    source.positions.saved["pardot:prospect"] = (time.time() - 5, {"updated_at": "2026-01-01T00:00:00+00:00"})
    source.last_poll["visitor_activity"] = 1234.0
    source.publisher.quarantined = 2
    source.client.budget.observe(120, 25_000)
    source.client.stats.retries = 4

    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'connect_source_events_total{entity="prospect",source="pardot"} 3.0' in text
    assert 'connect_quarantined_total{component="pardot"} 2.0' in text
    assert 'connect_api_daily_used{system="pardot"} 120.0' in text
    assert 'connect_api_retries_total{system="pardot"} 4.0' in text
    assert 'connect_source_last_poll_timestamp_seconds{source="pardot",stream="visitor_activity"} 1234.0' in text
    age = sample("connect_source_position_age_seconds", source="pardot", stream="prospect")
    assert age is not None and age > 3600
    assert "faust_" not in text and "connect_consumer_lag" not in text, "worker-only metrics"

    source.published_per_topic["src.pardot.prospect"] += 1
    metrics.refresh()
    assert sample("connect_source_events_total", source="pardot", entity="prospect") == 4


def test_a_shop_source_reports_its_webhooks_reconciliation_and_cost_bucket() -> None:
    """Read from what the shop source keeps anyway: the receiver's answers by class, what
    reconciliation found that webhooks missed, the client's cost stats; the position's age from
    the newest ``updated_at`` reconciliation read. Every series starts at 0."""
    receiver = SimpleNamespace(deliveries=Counter())
    cost = CostStats()
    source = FakeSource(system="shop", client=SimpleNamespace(stats=RetryStats(), cost=cost))
    source.receiver, source.webhooks_missed = receiver, 0  # type: ignore[attr-defined]
    port = serve_source_metrics(source, 0)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    for outcome in ("accepted", "refused", "duplicate", "malformed", "unavailable"):
        assert f'connect_webhook_deliveries_total{{outcome="{outcome}",source="shop"}} 0.0' in text
    assert 'connect_webhook_missed_events_total{source="shop"} 0.0' in text
    assert 'connect_api_throttle_wait_seconds_total{system="shop"} 0.0' in text
    assert "connect_api_cost_available{" not in text, "no bucket reported yet"

    receiver.deliveries.update({"accepted": 5, "refused": 2})
    source.webhooks_missed = 3  # type: ignore[attr-defined]
    cost.throttled, cost.waited, cost.points, cost.available, cost.maximum = 2, 7.5, 480.0, 120.0, 1000.0
    source.positions.saved["shop:order"] = (time.time(), {"since": None, "newest": "2026-01-01T00:00:00Z"})
    metrics.refresh()
    assert sample("connect_webhook_deliveries_total", source="shop", outcome="accepted") == 5
    assert sample("connect_webhook_deliveries_total", source="shop", outcome="refused") == 2
    assert sample("connect_webhook_missed_events_total", source="shop") == 3
    assert (sample("connect_api_throttled_total", system="shop"), sample("connect_api_throttle_wait_seconds_total",
                                                                         system="shop")) == (2, 7.5)
    assert sample("connect_api_cost_points_total", system="shop") == 480
    assert (sample("connect_api_cost_available", system="shop"), sample("connect_api_cost_maximum", system="shop")) == (
        120, 1000)
    age = sample("connect_source_position_age_seconds", source="shop", stream="order")
    assert age is not None and age > 3600


async def test_sink_stats_become_counters_and_confirmed_writes_latency() -> None:
    stats = SimpleNamespace(received=5, stale=1, trimmed=1, folded=0, written=3, created=1, retries=2, dead_lettered=1,
                            links=0, calls=2, batches=1, auth_waits=0, quarantined=1, messages=6,
                            messages_processed=4, messages_dead_lettered=1)
    command = SimpleNamespace(source_commit_timestamp=int((time.time() - 1) * 1000))

    class Engine:
        writer = SimpleNamespace(stats=RetryStats(retries=7))

        async def run(self, batch: Any, guard: Any) -> Any:
            return SimpleNamespace(written=[(SimpleNamespace(command=command), None)] * len(batch))

    runtime = SimpleNamespace(spec=SimpleNamespace(system="tims", object="unit_object"), stats=stats, engine=Engine())
    metrics.watch_sinks({"sink-tims-unit_object": runtime})
    await runtime.engine.run([1, 2], None)
    metrics.refresh()
    labels = {"system": "tims", "object": "unit_object"}
    assert sample("connect_sink_commands_total", **labels, outcome="dead_lettered") == 1
    assert sample("connect_sink_commands_total", **labels, outcome="retried") == 2
    assert sample("connect_sink_commands_total", **labels, outcome="linked") == 0
    assert sample("connect_sink_calls_total", **labels) == 2
    assert {outcome: sample("connect_sink_messages_total", **labels, outcome=outcome)
            for outcome in ("in", "processed", "quarantined", "dead_lettered")} == {
        "in": 6, "processed": 4, "quarantined": 1, "dead_lettered": 1}
    assert sample("connect_sink_latency_seconds_count", **labels) == 2
    assert (sample("connect_api_retries_total", system="tims") or 0) >= 7
    stats.written = 10
    metrics.refresh()
    metrics.refresh()
    assert sample("connect_sink_commands_total", **labels, outcome="written") == 10


def test_the_exposition_names_what_the_issue_asks_for() -> None:
    wanted = {
        "connect_flow_events_in_total", "connect_flow_commands_out_total", "connect_source_events_total",
        "connect_sink_latency_seconds_bucket", "connect_sink_calls_total", "connect_api_retries_total",
        "connect_sink_commands_total", "connect_sink_messages_total", "connect_quarantined_total", "connect_flow_duplicates_total",
        "connect_flow_echo_fields_total", "connect_flow_conflicts_total", "connect_consumer_lag",
        "connect_source_position_age_seconds", "connect_source_last_poll_timestamp_seconds",
        "connect_api_daily_used", "connect_api_daily_limit", "connect_token_refreshes_total",
        "connect_token_failures_total", "faust_total_rebalances",
    }
    assert wanted <= metrics.exported_names()

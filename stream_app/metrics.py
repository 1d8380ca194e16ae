"""Prometheus metrics of the worker and the sources: every metric is defined here, once.

Dashboards and alert rules (grafana/) name these metrics, and tests/unit/test_dashboards.py
checks each name they use against :func:`exported_names`, so a rename here that forgets a
dashboard fails a test instead of leaving an empty panel.

Two ways in, both cheap on the event path:

- hooks (``observe_*``), called where a thing happens: a counter increment, no I/O;
- watchers (``watch_*``), which read counters that objects keep anyway (``SinkStats``,
  ``RetryStats``, ``TokenProvider``, ``ApiBudget``, a source's published counts and saved
  positions) when Prometheus scrapes: connectors stay free of Prometheus, and nothing is paid
  per event.

Label values are bounded: systems, entities and objects, flows, outcomes and topics come from
code or configuration, never record ids or emails. :func:`bounded` is the last guard: a label
takes at most ``LABEL_VALUES_LIMIT`` distinct values, anything beyond (or anything that looks
like an email) is reported as ``other``.

The worker serves ``REGISTRY`` and ``WORKER_REGISTRY`` (the two Faust metrics the dashboards read,
kept by :class:`~stream_app.worker_sensor.LeanMonitor`; the consumer group's lag, measured by the
leader every ``CONNECT_METRICS_LAG_INTERVAL`` seconds; the stall watchdog's counts) at
``/metrics`` on its web port. Source processes serve ``REGISTRY`` from a port of their own (stream_app/metrics_server.py).
docs/adr/0008-observability.md says why it is built this way.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from faust import web
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from connectors.budget import ApiBudget
from connectors.kafka_admin import KafkaAdmin
from connectors.retry import CostStats, RetryStats
from connectors.webhook_server import DELIVERY_OUTCOMES
from connectors.salesforce.auth import TokenProvider
from stream_app import watchdog
from stream_app.worker_sensor import LeanMonitor

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = [
    "REGISTRY", "WORKER_REGISTRY", "LATENCY_BUCKETS", "LABEL_VALUES_LIMIT", "SALESFORCE_RETENTION_SECONDS",
    "bounded", "refresh", "exported_names", "position_time", "declare_flow",
    "stage_counters", "observe_event_in", "observe_command_out", "observe_duplicate", "observe_echo_fields",
    "observe_conflict", "observe_quarantined", "observe_sink_ack",
    "watch_sinks", "watch_clients", "watch_source", "ConsumerLag", "install",
    "FAUST_MS_BUCKETS", "FAUST_COMMIT_LATENCY", "FAUST_REBALANCES",
]

log = logging.getLogger(__name__)

#: source commit → flow output or sink acknowledgement, in seconds
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
LABEL_VALUES_LIMIT = 100
#: Salesforce keeps change events for 72 hours; a saved replay id older than that is refused
SALESFORCE_RETENTION_SECONDS = 72 * 3600

# ``*_created`` series double the series count and no dashboard reads them.
disable_created_metrics()
#: what every process serves (worker and sources)
REGISTRY = CollectorRegistry(auto_describe=True)
#: what only the worker serves: Faust's commit latency and rebalances, the consumer group's lag
WORKER_REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# -- flows (worker) -------------------------------------------------------------------------------
FLOW_EVENTS_IN = Counter("connect_flow_events_in", "Source events a flow accepted",
                         ["flow", "source", "entity"], registry=REGISTRY)
FLOW_COMMANDS_OUT = Counter("connect_flow_commands_out", "Sink commands a flow published (broker acked)",
                            ["flow", "system", "object"], registry=REGISTRY)
FLOW_LATENCY = Histogram("connect_flow_latency_seconds",
                         "Source commit time to the flow's sink command acked by the broker",
                         ["flow"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
FLOW_DUPLICATES = Counter("connect_flow_duplicates", "Events dropped as already seen (same event id)",
                          ["flow", "source"], registry=REGISTRY)
FLOW_ECHO_FIELDS = Counter("connect_flow_echo_fields", "Fields recognised as our own writes coming back",
                           ["flow", "source"], registry=REGISTRY)
FLOW_CONFLICTS = Counter("connect_flow_conflicts", "Field conflicts between systems, by the field's owner",
                         ["flow", "owner", "rule"], registry=REGISTRY)
FLOW_ANOMALIES = Counter("connect_flow_anomalies", "Changes an anomaly rule flagged (audit.anomalies), by rule",
                         ["flow", "rule", "held"], registry=REGISTRY)
FLOW_WAITING = Gauge("connect_flow_waiting_references",
                     "Records a flow holds back until a reference they name is linked (an order's customer or product)",
                     ["flow", "reference"], registry=REGISTRY)
FLOW_WAITING_OLDEST = Gauge("connect_flow_waiting_oldest_seconds",
                            "Age of the oldest record a flow holds back for a reference",
                            ["flow", "reference"], registry=REGISTRY)
FLOW_STAGE_MESSAGES = Counter(
    "connect_flow_stage_messages",
    "Messages a flow stage took (outcome=in), and what became of each: processed or quarantined; "
    "in = processed + quarantined unless a worker stopped mid-message",
    ["flow", "stage", "outcome"], registry=REGISTRY)
QUARANTINED = Counter("connect_quarantined", "Messages set aside as unreadable (quarantine.* topics)",
                      ["component"], registry=REGISTRY)

# -- sinks (worker) -------------------------------------------------------------------------------
SINK_COMMANDS = Counter(
    "connect_sink_commands",
    "Sink commands by outcome: received, stale, trimmed (written in part: newer fields kept), folded, "
    "written, created, retried, dead_lettered, linked",
    ["system", "object", "outcome"], registry=REGISTRY)
SINK_MESSAGES = Counter(
    "connect_sink_messages",
    "Messages a sink took from its topic (outcome=in), and what became of each: processed (written, stale, "
    "or folded into a written command), quarantined or dead_lettered (alone or folded into a dead letter); "
    "in = processed + quarantined + dead_lettered unless a worker stopped mid-batch",
    ["system", "object", "outcome"], registry=REGISTRY)
SINK_CALLS = Counter("connect_sink_calls", "Writer calls to the target API (one batch request each)",
                     ["system", "object"], registry=REGISTRY)
SINK_BATCHES = Counter("connect_sink_batches", "Batches a sink took from its topic",
                       ["system", "object"], registry=REGISTRY)
SINK_AUTH_WAITS = Counter("connect_sink_auth_waits", "Rounds a sink waited for credentials the target refused",
                          ["system", "object"], registry=REGISTRY)
SINK_LATENCY = Histogram("connect_sink_latency_seconds",
                         "Source commit time to the sink's confirmed write (end to end)",
                         ["system", "object"], buckets=LATENCY_BUCKETS, registry=REGISTRY)

# -- API clients (worker and sources) ---------------------------------------------------------------
API_USED = Gauge("connect_api_daily_used", "API requests used today, as the system last reported",
                 ["system"], registry=REGISTRY)
API_LIMIT = Gauge("connect_api_daily_limit", "Daily API request limit, as the system last reported",
                  ["system"], registry=REGISTRY)
API_BUDGET_WAITS = Counter("connect_api_budget_waits", "Pauses because the daily quota reached its reserve",
                           ["system"], registry=REGISTRY)
API_RETRIES = Counter("connect_api_retries", "Calls retried after a retryable failure", ["system"],
                      registry=REGISTRY)
API_GAVE_UP = Counter("connect_api_gave_up", "Calls that failed after their last attempt", ["system"],
                      registry=REGISTRY)
# APIs throttled by query cost (a bucket of points refilling at a rate: the shop's GraphQL API)
API_THROTTLED = Counter("connect_api_throttled", "Answers refused as throttled (the cost bucket was empty)",
                        ["system"], registry=REGISTRY)
API_THROTTLE_WAIT = Counter("connect_api_throttle_wait_seconds",
                            "Seconds a client waited for the API's cost bucket to refill", ["system"],
                            registry=REGISTRY)
API_COST = Counter("connect_api_cost_points", "Query cost the API charged, in its points", ["system"],
                   registry=REGISTRY)
API_COST_AVAILABLE = Gauge("connect_api_cost_available", "Points in the API's cost bucket, as it last reported",
                           ["system"], registry=REGISTRY)
API_COST_MAXIMUM = Gauge("connect_api_cost_maximum", "Size of the API's cost bucket, as it last reported",
                         ["system"], registry=REGISTRY)
TOKEN_REFRESHES = Counter("connect_token_refreshes", "OAuth access tokens refreshed", ["system"],
                          registry=REGISTRY)
TOKEN_FAILURES = Counter("connect_token_failures", "OAuth token requests that failed", ["system"],
                         registry=REGISTRY)

# -- sources (source processes) ---------------------------------------------------------------------
SOURCE_EVENTS = Counter("connect_source_events", "Events a source published (broker acked)",
                        ["source", "entity"], registry=REGISTRY)
SOURCE_POSITION_AGE = Gauge(
    "connect_source_position_age_seconds",
    "How far the saved position is behind now (Salesforce: the replay id's event time)",
    ["source", "stream"], registry=REGISTRY)
SOURCE_LAST_POLL = Gauge("connect_source_last_poll_timestamp_seconds",
                         "When the source last read its system successfully (epoch seconds)",
                         ["source", "stream"], registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter(
    "connect_webhook_deliveries",
    "Webhook deliveries a source's receiver answered, by outcome: accepted, ignored, duplicate, refused "
    "(signature or headers), malformed (quarantined), too_large, unavailable (503: redelivered)",
    ["source", "outcome"], registry=REGISTRY)
WEBHOOK_MISSED = Counter("connect_webhook_missed_events",
                         "Events reconciliation published that no webhook had brought (after its first pass)",
                         ["source"], registry=REGISTRY)
SOURCE_RETENTION = Gauge("connect_source_retention_seconds",
                         "How long the system keeps events a saved position can resume from",
                         ["source"], registry=REGISTRY)

# -- Kafka (worker leader) --------------------------------------------------------------------------
CONSUMER_LAG = Gauge("connect_consumer_lag", "End offset minus the group's committed offset",
                     ["topic", "partition"], registry=WORKER_REGISTRY)
LAG_ERRORS = Counter("connect_consumer_lag_errors", "Lag measurements that failed", registry=WORKER_REGISTRY)
CONSUMER_STALLED = Gauge("connect_consumer_stalled_partitions",
                         "Partitions this worker holds whose committed offset stood still while messages waited "
                         "(CONNECT_STALL_AFTER seconds; stream_app/watchdog.py)", registry=WORKER_REGISTRY)
STALL_RECOVERIES = Counter("connect_consumer_stall_recoveries",
                           "Stalled partitions the watchdog resumed and sought to their committed offset",
                           registry=WORKER_REGISTRY)

# -- Faust (worker) ---------------------------------------------------------------------------------
# The two of faust.sensors.prometheus's metrics the dashboards read, under the names and buckets it
# gave them with our fixed prefix (its default prefix is the app id, which differs per environment).
# Faust's per-message metrics are gone: docs/adr/0016-lean-worker-sensor.md.
#: Faust's latencies are in milliseconds
FAUST_MS_BUCKETS = (5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)
FAUST_COMMIT_LATENCY = Histogram("faust_consumer_commit_latency", "Consumer commit latency in ms",
                                 buckets=FAUST_MS_BUCKETS, registry=WORKER_REGISTRY)
FAUST_REBALANCES = Gauge("faust_total_rebalances", "1 while this worker rebalances (until it rejoined the group)",
                         registry=WORKER_REGISTRY)


# -- label guard ------------------------------------------------------------------------------------
_LABEL_TEXT = re.compile(r"[A-Za-z0-9_.:/\-]{1,100}")
_seen_values: dict[str, set[str]] = {}


def bounded(label: str, value: object) -> str:
    """``value`` as a label value, or ``other`` once ``label`` has seen too many distinct ones."""
    text = "none" if value is None or value == "" else str(value)
    if not _LABEL_TEXT.fullmatch(text):
        return "other"
    seen = _seen_values.setdefault(label, set())
    if text not in seen:
        if len(seen) >= LABEL_VALUES_LIMIT:
            return "other"
        seen.add(text)
    return text


# -- hooks ------------------------------------------------------------------------------------------
_flows: dict[str, tuple[str, ...]] = {}


def declare_flow(flow: str, sources: Iterable[str]) -> None:
    """Have the worker start a flow's counters at 0, so the first duplicate or quarantined message
    is an increase Prometheus sees (a series that appears at 1 hides it from ``increase()``)."""
    _flows[flow] = tuple(sources)


def _start_flow_counters() -> None:
    for flow, sources in _flows.items():
        QUARANTINED.labels(bounded("component", flow))
        for source in sources:
            FLOW_DUPLICATES.labels(flow, bounded("source", source))
            FLOW_ECHO_FIELDS.labels(flow, bounded("source", source))


def stage_counters(flow: str, stage: str) -> tuple[Any, Any, Any]:
    """The (in, processed, quarantined) counters of one stage, bound once: nothing to look up
    per message."""
    return tuple(FLOW_STAGE_MESSAGES.labels(flow, bounded("stage", stage), outcome)  # type: ignore[return-value]
                 for outcome in ("in", "processed", "quarantined"))


#: the per-event counters' children by their raw label values, so an event costs a dict lookup
#: instead of ``bounded`` and prometheus_client's ``labels`` (docs/adr/0038); kept up to a size
#: (raw values past it go the long way: a flood of distinct ones must not grow memory)
_children: dict[tuple[Any, ...], Any] = {}
CHILDREN_LIMIT = 10_000


def _child(metric: Any, flow: str, *labels: tuple[str, Any]) -> Any:
    key = (metric, flow, *(value for _, value in labels))
    child = _children.get(key)
    if child is None:
        child = metric.labels(flow, *(bounded(name, value) for name, value in labels))
        if len(_children) < CHILDREN_LIMIT:
            _children[key] = child
    return child


def observe_event_in(flow: str, source: str, entity: str) -> None:
    _child(FLOW_EVENTS_IN, flow, ("source", source), ("entity", entity)).inc()


def observe_command_out(flow: str, system: str, sobject: str, source_commit_ms: int | None) -> None:
    """A sink command the broker acked; its latency counts from the source's commit time."""
    _child(FLOW_COMMANDS_OUT, flow, ("system", system), ("object", sobject)).inc()
    if source_commit_ms:
        _child(FLOW_LATENCY, flow).observe(max(0.0, time.time() - source_commit_ms / 1000))


def observe_duplicate(flow: str, source: str) -> None:
    FLOW_DUPLICATES.labels(flow, bounded("source", source)).inc()


def observe_echo_fields(flow: str, source: str, count: int) -> None:
    FLOW_ECHO_FIELDS.labels(flow, bounded("source", source)).inc(count)


def observe_conflict(flow: str, owner: str | None, rule: str) -> None:
    FLOW_CONFLICTS.labels(flow, bounded("system", owner), bounded("rule", rule)).inc()


def observe_anomaly(flow: str, rule: str, held: bool) -> None:
    FLOW_ANOMALIES.labels(flow, bounded("rule", rule), "true" if held else "false").inc()


def observe_waiting(flow: str, reference: str, count: int, oldest_seconds: float) -> None:
    FLOW_WAITING.labels(flow, bounded("reference", reference)).set(count)
    FLOW_WAITING_OLDEST.labels(flow, bounded("reference", reference)).set(oldest_seconds)


def observe_quarantined(component: str, count: int = 1) -> None:
    QUARANTINED.labels(bounded("component", component)).inc(count)


def observe_sink_ack(system: str, sobject: str, source_commit_ms: int | None) -> None:
    """A write the target confirmed: end-to-end latency from the source's commit time."""
    if source_commit_ms:
        SINK_LATENCY.labels(bounded("system", system), bounded("object", sobject)).observe(
            max(0.0, time.time() - source_commit_ms / 1000))


# -- watchers: read counters objects keep anyway, at scrape time -----------------------------------
class _Deltas:
    """Turns monotonically growing attributes into counter increments (a reset starts over)."""

    def __init__(self) -> None:
        self._last: dict[tuple[Any, ...], float] = {}

    def feed(self, counter: Counter, labels: tuple[str, ...], key: tuple[Any, ...], value: float) -> None:
        child = counter.labels(*labels)
        previous = self._last.get(key)
        if previous is not None and value > previous:
            child.inc(value - previous)
        elif previous is None and value > 0:
            child.inc(value)
        self._last[key] = value


_deltas = _Deltas()
_refreshers: list[Callable[[], None]] = []


def refresh() -> None:
    """Bring watched counters up to date; the /metrics handlers call it before each scrape."""
    for refresher in list(_refreshers):
        try:
            refresher()
        except Exception:  # noqa: BLE001 - a broken watcher must not break the scrape
            log.exception("metrics: refreshing %r failed", refresher)


_SINK_OUTCOMES = {"received": "received", "stale": "stale", "trimmed": "trimmed", "folded": "folded",
                  "written": "written",
                  "created": "created", "retries": "retried", "dead_lettered": "dead_lettered",
                  "links": "linked"}
_SINK_MESSAGE_OUTCOMES = {"messages": "in", "messages_processed": "processed", "quarantined": "quarantined",
                          "messages_dead_lettered": "dead_lettered"}


def watch_sinks(runtimes: Mapping[str, Any]) -> None:
    """The sink agents (objects with ``spec``, ``stats`` and ``engine``): their ``SinkStats``, the
    end-to-end latency of each confirmed write, and the API clients their writers hold."""
    for runtime in runtimes.values():
        system, sobject = bounded("system", runtime.spec.system), bounded("object", runtime.spec.object)
        for outcome in _SINK_OUTCOMES.values():
            SINK_COMMANDS.labels(system, sobject, outcome)
        for outcome in _SINK_MESSAGE_OUTCOMES.values():
            SINK_MESSAGES.labels(system, sobject, outcome)
        for counter in (SINK_CALLS, SINK_BATCHES, SINK_AUTH_WAITS):
            counter.labels(system, sobject)
        QUARANTINED.labels("sink")
        _observe_writes(runtime.engine, system, sobject)
        watch_clients(system, runtime.engine.writer)
        _refreshers.append(lambda runtime=runtime, system=system, sobject=sobject:
                           _read_sink(runtime, system, sobject))


def _read_sink(runtime: Any, system: str, sobject: str) -> None:
    stats, key = runtime.stats, id(runtime)
    for name, outcome in _SINK_OUTCOMES.items():
        _deltas.feed(SINK_COMMANDS, (system, sobject, outcome), (key, name), getattr(stats, name))
    for name, outcome in _SINK_MESSAGE_OUTCOMES.items():
        _deltas.feed(SINK_MESSAGES, (system, sobject, outcome), (key, f"message-{name}"), getattr(stats, name))
    _deltas.feed(SINK_CALLS, (system, sobject), (key, "calls"), stats.calls)
    _deltas.feed(SINK_BATCHES, (system, sobject), (key, "batches"), stats.batches)
    _deltas.feed(SINK_AUTH_WAITS, (system, sobject), (key, "auth_waits"), stats.auth_waits)
    _deltas.feed(QUARANTINED, ("sink",), (key, "quarantined"), stats.quarantined)


def _observe_writes(engine: Any, system: str, sobject: str) -> None:
    """Wrap ``engine.run`` to time each write the target confirmed (``BatchResult.written``).
    Interim: once the sink calls :func:`observe_sink_ack` itself, this wrapper goes."""
    run = engine.run

    async def run_and_observe(batch: Any, guard: Any) -> Any:
        result = await run(batch, guard)
        for write, _outcome in result.written:
            observe_sink_ack(system, sobject, write.command.source_commit_timestamp)
        return result

    engine.run = run_and_observe


def _client_objects(root: Any, depth: int = 3) -> Iterator[Any]:
    """Budgets, token providers, retry and cost stats reachable from ``root`` through attributes."""
    seen: set[int] = set()
    todo = [(root, 0)]
    while todo:
        obj, level = todo.pop()
        if obj is None or id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool)):
            continue
        seen.add(id(obj))
        if isinstance(obj, (ApiBudget, TokenProvider, RetryStats, CostStats)):
            yield obj
            continue
        if level < depth and hasattr(obj, "__dict__") and not isinstance(obj, type):
            todo.extend((value, level + 1) for value in vars(obj).values())


_clients: dict[int, tuple[str, Any]] = {}


def watch_clients(system: str, root: Any) -> None:
    """Watch the API budget, token provider and retry counters of a client (found by walking a few
    attributes down from ``root``: a writer, a source). Each object is read once, whoever holds it."""
    if not _clients:
        _refreshers.append(_read_clients)
    for obj in _client_objects(root):
        if id(obj) in _clients:
            continue
        if isinstance(obj, ApiBudget):
            owner = bounded("system", obj.name)
        elif isinstance(obj, TokenProvider):
            owner = "salesforce"  # Pardot reuses Salesforce's tokens
        else:
            owner = bounded("system", system)
        _clients[id(obj)] = (owner, obj)
        if isinstance(obj, TokenProvider):
            TOKEN_REFRESHES.labels(owner)
            TOKEN_FAILURES.labels(owner)
        elif isinstance(obj, RetryStats):
            API_RETRIES.labels(owner)
            API_GAVE_UP.labels(owner)
        elif isinstance(obj, CostStats):
            for counter in (API_THROTTLED, API_THROTTLE_WAIT, API_COST):
                counter.labels(owner)
        else:
            API_BUDGET_WAITS.labels(owner)


def _read_clients() -> None:
    newest: dict[str, ApiBudget] = {}
    for key, (system, obj) in list(_clients.items()):
        if isinstance(obj, TokenProvider):
            _deltas.feed(TOKEN_REFRESHES, (system,), (key, "refreshes"), obj.refreshes)
            _deltas.feed(TOKEN_FAILURES, (system,), (key, "failures"), obj.failures)
        elif isinstance(obj, RetryStats):
            _deltas.feed(API_RETRIES, (system,), (key, "retries"), obj.retries)
            _deltas.feed(API_GAVE_UP, (system,), (key, "gave_up"), obj.gave_up)
        elif isinstance(obj, CostStats):
            _read_cost(system, key, obj)
        else:
            _deltas.feed(API_BUDGET_WAITS, (system,), (key, "waits"), obj.waits)
            if obj.usage.limit and (system not in newest or obj.usage.seen_at > newest[system].usage.seen_at):
                newest[system] = obj
    for system, budget in newest.items():
        API_USED.labels(system).set(budget.usage.used)
        API_LIMIT.labels(system).set(budget.usage.limit)


def _read_cost(system: str, key: int, cost: CostStats) -> None:
    _deltas.feed(API_THROTTLED, (system,), (key, "throttled"), cost.throttled)
    _deltas.feed(API_THROTTLE_WAIT, (system,), (key, "waited"), cost.waited)
    _deltas.feed(API_COST, (system,), (key, "points"), cost.points)
    if cost.maximum:
        API_COST_AVAILABLE.labels(system).set(cost.available or 0.0)
        API_COST_MAXIMUM.labels(system).set(cost.maximum)


def position_time(position: Mapping[str, Any]) -> float | None:
    """When the point a saved position resumes from was current, in epoch seconds.

    Salesforce: a replay id equal to the stream's latest was current when it was saved
    (``saved_at``); otherwise it is the last event's ``commit_timestamp``. Cursor sources (TIMS,
    Pardot): their ``updated_at``; the shop's reconciliation: the ``newest`` ``updated_at`` it read.
    """
    saved_at = position.get("saved_at")
    latest = position.get("latest_replay_id")
    if latest and latest == position.get("replay_id") and isinstance(saved_at, (int, float)):
        return saved_at / 1000
    commit = position.get("commit_timestamp")
    if isinstance(commit, (int, float)) and commit > 0:
        return commit / 1000
    updated = position.get("updated_at") or position.get("newest")
    if isinstance(updated, str) and updated:
        try:
            return datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return saved_at / 1000 if isinstance(saved_at, (int, float)) else None


def watch_source(source: Any) -> None:
    """A source process's counters: events published per entity (``Source.published_per_topic``),
    positions saved (``PositionStore.saved``: age and proof of a successful read), polls
    (``Source.last_poll``), quarantined input, the source's API clients, and its webhook
    receiver's answers (``receiver.deliveries``) and what reconciliation found that webhooks
    missed (``webhooks_missed``), when it has them."""
    system = bounded("source", source.system)
    if system == "salesforce":
        SOURCE_RETENTION.labels(system).set(SALESFORCE_RETENTION_SECONDS)
    QUARANTINED.labels(system)
    watch_clients(system, source)
    receiver = getattr(source, "receiver", None)
    deliveries = getattr(receiver, "deliveries", None)
    if deliveries is not None:
        for outcome in DELIVERY_OUTCOMES:
            WEBHOOK_DELIVERIES.labels(system, outcome)
        if hasattr(source, "webhooks_missed"):
            WEBHOOK_MISSED.labels(system)

    def read_webhooks() -> None:
        for outcome, count in list(deliveries.items()):
            _deltas.feed(WEBHOOK_DELIVERIES, (system, bounded("outcome", outcome)), (id(receiver), outcome), count)
        if hasattr(source, "webhooks_missed"):
            _deltas.feed(WEBHOOK_MISSED, (system,), (id(source), "webhooks_missed"), source.webhooks_missed)

    def read() -> None:
        now = time.time()
        for topic, count in list(getattr(source, "published_per_topic", {}).items()):
            entity = topic.rsplit(".", 1)[-1]
            _deltas.feed(SOURCE_EVENTS, (system, bounded("entity", entity)), (id(source), topic), count)
        publisher = getattr(source, "publisher", None)
        _deltas.feed(QUARANTINED, (system,), (id(source), "quarantined"), getattr(publisher, "quarantined", 0))
        polls: dict[str, float] = dict(getattr(source, "last_poll", {}))
        for key, (saved_at, position) in list(getattr(source.positions, "saved", {}).items()):
            stream = key.split(":", 1)[1] if ":" in key else key
            polls[stream] = max(polls.get(stream, 0.0), saved_at)
            at = position_time(position)
            if at is not None:
                SOURCE_POSITION_AGE.labels(system, bounded("stream", stream)).set(max(0.0, now - at))
        for stream, at in polls.items():
            SOURCE_LAST_POLL.labels(system, bounded("stream", stream)).set(at)

    _refreshers.append(read)
    if deliveries is not None:
        _refreshers.append(read_webhooks)


# -- consumer lag -----------------------------------------------------------------------------------
class ConsumerLag:
    """End offset minus committed offset per topic-partition of one consumer group.

    Faust's sensors only see the partitions of their own worker, and nothing at all once the
    consumer is stuck; this asks the broker, as ``kafka-consumer-groups --describe`` does. A
    partition without a committed offset counts from its first retained offset.
    """

    def __init__(self, bootstrap: str, group: str, direct: Mapping[str, list[str]] | None = None) -> None:
        self.bootstrap = bootstrap
        self.group = group
        #: the direct stages' groups and the topics each reads (docs/adr/0028): their lag is theirs
        self.direct = dict(direct or {})
        #: kept open between measurements (a few connections less per scrape interval)
        self._kafka = KafkaAdmin(bootstrap, client_id=f"{group}-lag")

    async def measure(self, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        """The Faust group's lag on ``topics`` (and on what it committed), then each direct
        stage's on its topics (the largest, where several read a topic)."""
        direct_topics = {topic for names in self.direct.values() for topic in names}
        lags = await self._kafka.lag(self.group, [t for t in topics if t not in direct_topics],
                                     with_committed_topics=True)
        result = {(tp.topic, tp.partition): lag for tp, lag in lags.items() if tp.topic not in direct_topics}
        for group, names in self.direct.items():
            for tp, lag in (await self._kafka.lag(group, names)).items():
                key = (tp.topic, tp.partition)
                result[key] = max(lag, result.get(key, 0))
        return result

    async def close(self) -> None:
        await self._kafka.close()


def _publish_lag(lags: Mapping[tuple[str, int], int]) -> None:
    CONSUMER_LAG.clear()
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(bounded("topic", topic), str(partition)).set(lag)


def install(app: "ConnectApp") -> None:
    """The worker's metrics on ``app``: Faust's monitor (lean: no work per message), the consumer lag (measured by the
    leader every ``CONNECT_METRICS_LAG_INTERVAL`` seconds), the flows' and sinks' counters and
    the ``/metrics`` page."""
    app.monitor = LeanMonitor(commit_latency=FAUST_COMMIT_LATENCY, rebalances=FAUST_REBALANCES)
    lag = ConsumerLag(app.settings.kafka_bootstrap_servers, app.conf.id, app.direct_groups)

    async def measure_consumer_lag() -> None:
        """On the leader only, so each partition's lag is reported once across the workers."""
        if not app.is_leader():
            CONSUMER_LAG.clear()
            return
        try:
            _publish_lag(await lag.measure(app.topics.acking_topics))
        except Exception as exc:  # noqa: BLE001 - a failed measurement is counted, the next one retried
            LAG_ERRORS.inc()
            log.warning("metrics: consumer lag not measured: %s: %s", type(exc).__name__, exc)
            await lag.close()

    async def close_lag_clients(sender: Any, **kwargs: Any) -> None:
        await lag.close()

    async def watch_worker() -> None:
        """Counters of this worker's flows and sinks."""
        _start_flow_counters()
        watch_sinks(app.parts.get("sinks", {}))

    async def metrics_view(view: web.View, request: web.Request) -> web.Response:
        refresh()
        body = generate_latest(REGISTRY) + generate_latest(WORKER_REGISTRY)
        return view.bytes(body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    app.timer(interval=app.settings.metrics_lag_interval, name="stream_app.metrics.measure_consumer_lag")(
        measure_consumer_lag)
    watchdog.install(app, CONSUMER_STALLED, STALL_RECOVERIES)
    app.on_before_shutdown.connect(close_lag_clients)
    app.task(watch_worker)
    app.page("/metrics")(metrics_view)


# -- what is exported -------------------------------------------------------------------------------
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
             "summary": ("", "_sum", "_count"), "info": ("_info",), "untyped": ("",),
             "stateset": ("",), "gaugehistogram": ("_bucket", "_gsum", "_gcount")}


def exported_names() -> set[str]:
    """Every sample name the worker and the sources can expose, also for metrics with no samples yet."""
    names: set[str] = set()
    for registry in (REGISTRY, WORKER_REGISTRY):
        for family in registry.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


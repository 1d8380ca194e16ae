"""The worker's Faust monitor: the two Faust metrics our dashboards read, and no work per message.

Faust calls its monitor for every message it reads, every event a stream handles, every message
it sends and every table read or write. ``faust.sensors.prometheus.PrometheusMonitor`` made each
of those calls a few Prometheus updates plus the base monitor's bookkeeping: 16 % of the
worker's CPU per source event. Our dashboards and alerts read two of its metrics, the commit
latency and the rebalances in progress, which change per commit and per rebalance. This monitor
keeps those and answers every per-message hook with a no-op (docs/adr/0016-lean-worker-sensor.md).
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors import Monitor
from faust.types import AppT, EventT, StreamT
from faust.types.transports import ConsumerT
from faust.types.tuples import TP
from prometheus_client import Gauge, Histogram

__all__ = ["LeanMonitor", "PER_MESSAGE_HOOKS"]

#: what Faust calls per message read, stream event, message sent or table operation
PER_MESSAGE_HOOKS = (
    "on_message_in", "on_stream_event_in", "on_stream_event_out", "on_message_out", "on_topic_buffer_full",
    "on_table_get", "on_table_set", "on_table_del", "on_send_initiated", "on_send_completed",
    "track_tp_end_offset",
)


def _no_op(self: Monitor, *args: Any, **kwargs: Any) -> None:
    """A per-message hook that deliberately does nothing."""


class LeanMonitor(Monitor):
    """``app.monitor`` (Faust wants a :class:`~faust.sensors.Monitor` there): commit latency in
    ms and rebalances in progress, the same series ``PrometheusMonitor`` exported under these
    names. Per-commit, per-rebalance, per-assignment and web hooks keep the base monitor's
    counters (Faust's /stats pages read them); the per-message counters stay at zero."""

    def __init__(self, *, commit_latency: Histogram, rebalances: Gauge, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._commit_latency = commit_latency
        self._rebalances = rebalances

    on_message_in = on_stream_event_out = on_message_out = on_topic_buffer_full = _no_op
    on_table_get = on_table_set = on_table_del = _no_op
    on_send_initiated = on_send_completed = track_tp_end_offset = _no_op

    def on_stream_event_in(self, tp: TP, offset: int, stream: StreamT, event: EventT) -> None:
        """Only the time Faust's stalled-stream check reads: without it, a worker with a backlog
        logs that its streams are idle (``Consumer.verify_event_path``)."""
        self.stream_inbound_time[tp] = monotonic()

    def on_commit_completed(self, consumer: ConsumerT, state: Any) -> None:
        latency = self.time() - state
        self.commit_latency.append(latency)
        self._commit_latency.observe(self.secs_to_ms(latency))

    def on_rebalance_start(self, app: AppT) -> dict:
        """1 while this worker rebalances: set, not counted up, so a rebalance that restarts
        before it returned cannot leave the gauge above 1 for good."""
        state = super().on_rebalance_start(app)
        self._rebalances.set(1)
        return state

    def on_rebalance_return(self, app: AppT, state: dict) -> None:
        super().on_rebalance_return(app, state)
        self._rebalances.set(0)

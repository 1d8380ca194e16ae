"""A watchdog for partitions a worker holds but no longer reads.

Seen once in twenty kill-and-restart runs: a restarted worker never consumed one of its
partitions while the others completed, and nothing said so. Each worker, every
``CONNECT_METRICS_LAG_INTERVAL`` seconds, compares the group's committed offset of each
partition assigned to it with the partition's end offset: a partition with messages waiting
whose committed offset has not moved for ``CONNECT_STALL_AFTER`` seconds is stalled. The
worker logs it, counts it (``connect_consumer_stalled_partitions``, an alert rule watches it)
and recovers it: resumes fetching from the partition and seeks it to its committed offset, so
the fetcher starts over from there (at-least-once: what was read but not committed is read
again, which the flows tolerate).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable, Mapping

from aiokafka import TopicPartition

from connectors.kafka_admin import KafkaAdmin

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = ["StallWatch", "install"]

log = logging.getLogger(__name__)


class StallWatch:
    """Which partitions have had messages waiting, with the committed offset standing still,
    for at least ``after`` seconds. Pure bookkeeping: the caller measures and acts."""

    def __init__(self, after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after = after
        self.clock = clock
        self._still: dict[Hashable, tuple[int, float]] = {}
        #: partitions found stalled whose committed offset has not moved since (readiness reads it)
        self.flagged: set[Hashable] = set()

    def observe(self, assigned: Iterable[Hashable], committed: Mapping[Hashable, int],
                ends: Mapping[Hashable, int]) -> list[Hashable]:
        now = self.clock()
        stalled: list[Hashable] = []
        assigned = set(assigned)
        for tp in assigned:
            position, end = committed.get(tp, -1), ends.get(tp)
            if end is None or end <= max(position, 0):
                self._still.pop(tp, None)  # nothing waiting
                self.flagged.discard(tp)
                continue
            seen = self._still.get(tp)
            if seen is None or seen[0] != position:
                self._still[tp] = (position, now)
                self.flagged.discard(tp)
            elif now - seen[1] >= self.after:
                stalled.append(tp)
                self.flagged.add(tp)
        for tp in set(self._still) - assigned:
            del self._still[tp]
        self.flagged &= assigned
        return stalled

    def recovered(self, tp: Hashable) -> None:
        """Give a recovered partition a full ``after`` again before it counts as stalled."""
        if tp in self._still:
            self._still[tp] = (self._still[tp][0], self.clock())


def install(app: "ConnectApp", stalled_gauge: Any, recoveries: Any) -> StallWatch:
    """The watchdog's timer on ``app``; it reports through the two metrics given and
    ``app.parts["watchdog"]`` (the returned StallWatch, whose ``flagged`` /readyz reads)."""
    watch = StallWatch(app.settings.stall_after)
    app.parts["watchdog"] = watch
    admin = KafkaAdmin(app.settings.kafka_bootstrap_servers, client_id=f"{app.conf.id}-watchdog")

    async def watch_partitions() -> None:
        acking = set(app.topics.acking_topics)
        assigned = [tp for tp in app.consumer.assignment() if tp.topic in acking]
        if not assigned:
            stalled_gauge.set(0)
            watch.flagged.clear()
            return
        try:
            committed = await admin.committed_offsets(app.conf.id)
            ends = await admin.end_offsets(sorted({tp.topic for tp in assigned}))
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("watchdog: offsets not read: %s: %s", type(exc).__name__, exc)
            await admin.close()
            return
        stalled = watch.observe(assigned, committed, ends)
        stalled_gauge.set(len(stalled))
        for tp in stalled:
            try:
                await _recover(app, tp, committed.get(tp, -1), ends[tp])
            except Exception:  # noqa: BLE001 - the watchdog must never be what stops the worker
                log.exception("watchdog: recovering %s[%d] failed; the next round tries again", tp.topic, tp.partition)
                continue
            recoveries.inc()
            watch.recovered(tp)

    async def close_admin(sender: Any, **kwargs: Any) -> None:
        await admin.close()

    app.timer(interval=app.settings.metrics_lag_interval, name="stream_app.watchdog.watch_partitions")(
        watch_partitions)
    app.on_before_shutdown.connect(close_admin)
    return watch


async def _recover(app: "ConnectApp", tp: Any, committed: int, end: int) -> None:
    log.warning("watchdog: %s[%d] stalled (committed %d, end %d, no progress for %.0fs): resuming it and "
                "seeking to the committed offset; consumer state: %s", tp.topic, tp.partition, committed, end,
                app.settings.stall_after, consumer_state(app, tp))
    app.consumer.resume_partitions([tp])
    if committed > 0:
        await app.consumer.seek(tp, committed)
    else:  # nothing committed yet: start where a new group would, at the earliest offset
        await app.consumer._thread.seek_to_beginning(TopicPartition(tp.topic, tp.partition))
        app.consumer._read_offset[tp] = None


def consumer_state(app: Any, tp: Any) -> dict[str, Any]:
    """What the consumer knows about ``tp``, from Faust's and aiokafka's internals, to say why a
    partition is not read (logged with a stall). Every probe is guarded: this is diagnosis, and
    a Faust or aiokafka upgrade that renames an attribute must not break the watchdog."""
    consumer = app.consumer
    state: dict[str, Any] = {}

    def probe(name: str, read: Callable[[], Any]) -> None:
        try:
            state[name] = read()
        except Exception as exc:  # noqa: BLE001 - report, never raise
            state[name] = f"? {type(exc).__name__}"

    probe("flow_active", lambda: consumer.flow_active)
    probe("flow_control_active", lambda: app.flow_control.is_active())
    probe("faust_paused", lambda: tp in consumer._paused_partitions)
    probe("faust_active", lambda: tp in (consumer._active_partitions or ()))
    probe("read_offset", lambda: consumer._read_offset.get(tp))
    probe("rebalancing", lambda: app.rebalancing)

    def aiokafka_state() -> dict[str, Any]:
        inner = consumer._thread._ensure_consumer()
        tp_state = inner._subscription.subscription.assignment.state_value(tp)
        return {"paused": tp_state.paused, "position": tp_state._position, "status": str(tp_state._status),
                "highwater": tp_state.highwater, "buffered": tp in inner._fetcher._records}

    probe("aiokafka", aiokafka_state)
    probe("fetcher", lambda: _task_stacks(getattr(app, "_fetcher", None)))
    probe("consumer_thread", lambda: _task_stacks(consumer._thread))
    return state


def _task_stacks(service: Any) -> list[str]:
    """Where each running task of a mode service waits: its innermost frames, as file:line."""
    if service is None:
        return ["(none)"]
    stacks = []
    for fut in list(getattr(service, "_futures", ())):
        if fut.done():
            stacks.append(f"done: {fut.exception()!r}" if not fut.cancelled() else "cancelled")
            continue
        frames = fut.get_stack(limit=None) if hasattr(fut, "get_stack") else []
        stacks.append(" < ".join(f"{f.f_code.co_name}@{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno}"
                                 for f in frames[-4:][::-1]))
    return stacks or ["(no tasks)"]

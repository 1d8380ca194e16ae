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

    def observe(self, assigned: Iterable[Hashable], committed: Mapping[Hashable, int],
                ends: Mapping[Hashable, int]) -> list[Hashable]:
        now = self.clock()
        stalled: list[Hashable] = []
        assigned = set(assigned)
        for tp in assigned:
            position, end = committed.get(tp, -1), ends.get(tp)
            if end is None or end <= max(position, 0):
                self._still.pop(tp, None)  # nothing waiting
                continue
            seen = self._still.get(tp)
            if seen is None or seen[0] != position:
                self._still[tp] = (position, now)
            elif now - seen[1] >= self.after:
                stalled.append(tp)
        for tp in set(self._still) - assigned:
            del self._still[tp]
        return stalled

    def recovered(self, tp: Hashable) -> None:
        """Give a recovered partition a full ``after`` again before it counts as stalled."""
        if tp in self._still:
            self._still[tp] = (self._still[tp][0], self.clock())


def install(app: "ConnectApp", stalled_gauge: Any, recoveries: Any) -> None:
    """The watchdog's timer on ``app``; it reports through the two metrics given."""
    watch = StallWatch(app.settings.stall_after)
    admin = KafkaAdmin(app.settings.kafka_bootstrap_servers, client_id=f"{app.conf.id}-watchdog")

    async def watch_partitions() -> None:
        acking = set(app.topics.acking_topics)
        assigned = [tp for tp in app.consumer.assignment() if tp.topic in acking]
        if not assigned:
            stalled_gauge.set(0)
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
            await _recover(app, tp, committed.get(tp, -1), ends[tp])
            recoveries.inc()
            watch.recovered(tp)

    async def close_admin(sender: Any, **kwargs: Any) -> None:
        await admin.close()

    app.timer(interval=app.settings.metrics_lag_interval, name="stream_app.watchdog.watch_partitions")(
        watch_partitions)
    app.on_before_shutdown.connect(close_admin)


async def _recover(app: "ConnectApp", tp: Any, committed: int, end: int) -> None:
    log.warning("watchdog: %s[%d] stalled (committed %d, end %d, no progress for %.0fs): resuming it and "
                "seeking to the committed offset", tp.topic, tp.partition, committed, end, app.settings.stall_after)
    app.consumer.resume_partitions([tp])
    if committed >= 0:
        await app.consumer.seek(tp, committed)

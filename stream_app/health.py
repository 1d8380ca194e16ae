"""``/healthz`` and ``/readyz`` for the worker and the source processes (docs/adr/0024).

- ``/healthz`` (liveness): the process runs and its event loop answers. A :class:`LoopProbe`
  sleeps a fixed interval in the loop and records how late it woke up; a lag above
  ``CONNECT_HEALTH_LOOP_LAG_LIMIT``, or a probe that has not woken up for that long, fails it.
- ``/readyz`` (readiness): the worker holds its assignment, its tables are recovered, no
  partition is stalled (the watchdog, stream_app/watchdog.py) and every sink's target accepts
  our credentials (checked by :class:`SinkAuthChecks` in the background, every
  ``CONNECT_HEALTH_AUTH_INTERVAL`` seconds, never by the probe itself). A source is ready once
  it is connected to Kafka and has read its system successfully within
  ``CONNECT_SOURCE_READ_STALE_AFTER`` seconds.

Both answer 200 or 503 with a JSON body naming each check and the ones that failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from connectors.errors import AuthExpiredError, FatalError

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = ["HEALTHZ", "READYZ", "Check", "Report", "LoopProbe", "SinkAuthChecks", "worker_readiness",
           "source_readiness", "install"]

log = logging.getLogger(__name__)

#: the paths, on the worker's web port and on a source's metrics port (deploy/k8s probes them)
HEALTHZ = "/healthz"
READYZ = "/readyz"

#: seconds between two wake-ups of the loop probe
PROBE_INTERVAL = 0.5


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: Any = None


@dataclass(frozen=True)
class Report:
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    @property
    def status(self) -> int:
        return 200 if self.ok else 503

    def body(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "failing",
                "failed": [name for name, check in self.checks.items() if not check.ok],
                "checks": {name: {"ok": check.ok, "detail": check.detail} for name, check in self.checks.items()}}


class LoopProbe:
    """How responsive an event loop is: run :meth:`run` as a task in that loop, read
    :meth:`check` from anywhere (another thread too: it only reads two floats)."""

    def __init__(self, limit: float, interval: float = PROBE_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.interval = interval
        self.clock = clock
        self.lag = 0.0
        #: when the probe last woke up; None until it runs (a worker starts its tasks only once its
        #: tables are recovered, and a long recovery must not read as a dead loop)
        self.last_tick: float | None = None

    async def run(self) -> None:
        self.last_tick = self.clock()
        while True:
            before = self.clock()
            await asyncio.sleep(self.interval)
            now = self.clock()
            self.lag = max(0.0, now - before - self.interval)
            self.last_tick = now

    def check(self) -> Check:
        if self.last_tick is None:  # not started: answering at all is all there is to know
            return Check(True, {"loop_lag_seconds": 0.0, "limit_seconds": self.limit, "probe": "starting"})
        silent = self.clock() - self.last_tick - self.interval
        lag = max(self.lag, silent)
        return Check(lag <= self.limit, {"loop_lag_seconds": round(lag, 3), "limit_seconds": self.limit})

    def report(self) -> Report:
        return Report({"event_loop": self.check()})


class SinkAuthChecks:
    """Whether each sink's target accepts our credentials: ``Writer.check_auth`` run every
    ``interval`` seconds in the background, so a probe reads a cached answer and the APIs see
    one light call per interval. A write refused for credentials since the last check also
    counts (the engine's ``credentials_refused``)."""

    def __init__(self, runtimes: Mapping[str, Any], interval: float) -> None:
        self.runtimes = runtimes
        self.interval = interval
        self.results: dict[str, Check] = {name: Check(False, "not checked yet") for name in runtimes}

    async def check_once(self) -> None:
        for name, runtime in self.runtimes.items():
            try:
                await runtime.engine.writer.check_auth()
            except (AuthExpiredError, FatalError) as exc:
                self.results[name] = Check(False, f"credentials refused: {exc.code or type(exc).__name__}")
            except Exception as exc:  # noqa: BLE001 - unreachable is not refused: the sink retries
                self.results[name] = Check(False, f"not checked: {type(exc).__name__}")
            else:
                self.results[name] = Check(True, "credentials accepted")
                runtime.engine.credentials_refused = False

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self.interval)

    def check(self) -> Check:
        detail: dict[str, Any] = {}
        ok = True
        for name, runtime in self.runtimes.items():
            result = self.results[name]
            if result.ok and runtime.engine.credentials_refused:
                result = Check(False, "a write was refused for credentials")
            detail[name] = result.detail
            ok = ok and result.ok
        return Check(ok, detail)


def worker_readiness(app: "ConnectApp", auth: SinkAuthChecks | None) -> Report:
    """Assigned, recovered, the direct stages consuming (docs/adr/0028), not stalled, sinks
    authenticated."""
    recovery = app.tables.recovery
    recovered = recovery.completed.is_set() and not recovery.in_recovery
    assigned = recovered and not app.rebalancing
    partitions = len(app.consumer.assignment()) if assigned else 0
    checks = {
        "assigned": Check(assigned, {"rebalancing": bool(app.rebalancing), "partitions": partitions}),
        "tables_recovered": Check(recovered, {"in_recovery": bool(recovery.in_recovery)}),
    }
    stages = {stage.group: stage.state for stage in getattr(app, "direct_stages", [])}
    if stages:
        checks["direct_stages_consuming"] = Check(all(state == "consuming" for state in stages.values()), stages)
    watch = app.parts.get("watchdog")
    if watch is not None:
        stalled = sorted(f"{tp.topic}[{tp.partition}]" for tp in watch.flagged)
        checks["consumer_not_stalled"] = Check(not stalled, {"stalled": stalled})
    if auth is not None:
        checks["sinks_authenticated"] = auth.check()
    return Report(checks)


def source_readiness(source: Any, started: bool, stale_after: float, now: Callable[[], float] = time.time) -> Report:
    """Connected to Kafka (started, not stopping) and a successful read of its system within
    ``stale_after`` seconds (``Source.last_poll``)."""
    reads = dict(getattr(source, "last_poll", {}))
    newest = max(reads.values(), default=None)
    age = None if newest is None else max(0.0, now() - newest)
    return Report({
        "kafka_connected": Check(started and not source.stopping, {"started": started, "stopping": source.stopping}),
        "reading": Check(age is not None and age <= stale_after,
                         {"last_read_age_seconds": None if age is None else round(age, 1),
                          "stale_after_seconds": stale_after, "streams": sorted(reads)}),
    })


def install(app: "ConnectApp") -> None:
    """``/healthz`` and ``/readyz`` on the worker's web server, with the tasks they read."""
    probe = LoopProbe(app.settings.health_loop_lag_limit)
    runtimes = app.parts.get("sinks") or {}
    auth = SinkAuthChecks(runtimes, app.settings.health_auth_interval) if runtimes else None

    async def run_probe() -> None:
        await probe.run()

    app.task(run_probe)
    if auth is not None:
        async def check_sink_auth() -> None:
            await auth.run()

        app.task(check_sink_auth)

    async def healthz(view: Any, request: Any) -> Any:
        report = probe.report()
        return view.json(report.body(), status=report.status)

    async def readyz(view: Any, request: Any) -> Any:
        report = worker_readiness(app, auth)
        return view.json(report.body(), status=report.status)

    app.page(HEALTHZ)(healthz)
    app.page(READYZ)(readyz)

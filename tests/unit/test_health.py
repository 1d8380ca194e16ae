"""stream_app/health.py without a broker: the loop probe, the sink auth cache, source readiness,
and the source's health endpoints."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx

from connectors.errors import FatalError, RetryableError
from stream_app.health import Check, LoopProbe, Report, SinkAuthChecks, source_readiness
from stream_app.metrics_server import serve_source_metrics
from tests.unit.test_watchdog import Clock


def test_the_loop_probe_fails_when_the_loop_answers_late_or_not_at_all() -> None:
    clock = Clock()
    probe = LoopProbe(limit=2.0, interval=0.5, clock=clock)
    clock.now += 60  # not started yet (a worker starts it after its tables recovered): no verdict
    assert probe.report().ok and probe.check().detail["probe"] == "starting"
    probe.last_tick = clock.now  # as run() does when it starts
    assert probe.report().ok
    probe.lag = 3.0
    report = probe.report()
    assert report.status == 503 and report.body()["failed"] == ["event_loop"]
    probe.lag = 0.0
    clock.now += 10  # no wake-up for 10 s: a blocked loop cannot report its own lag
    assert not probe.check().ok and probe.check().detail["loop_lag_seconds"] >= 9


async def test_the_loop_probe_measures_a_blocked_loop() -> None:
    import time

    probe = LoopProbe(limit=0.05, interval=0.01)
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(0.05)
    tick = probe.last_tick
    time.sleep(0.2)  # block the loop
    while probe.last_tick == tick:  # the probe's first wake-up after the block
        await asyncio.sleep(0)
    task.cancel()
    assert probe.lag >= 0.1 and not probe.check().ok


class Writer:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    async def check_auth(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


def runtime(writer: Writer) -> Any:
    return SimpleNamespace(engine=SimpleNamespace(writer=writer, credentials_refused=False))


async def test_sink_auth_is_checked_in_the_background_and_cached() -> None:
    good, refused, down = Writer(), Writer(FatalError("refused", code="invalid_client")), Writer(RetryableError("x"))
    runtimes = {"sink-a": runtime(good), "sink-b": runtime(refused), "sink-c": runtime(down)}
    checks = SinkAuthChecks(runtimes, interval=60)
    assert not checks.check().ok  # nothing checked yet
    await checks.check_once()
    for _ in range(5):  # probes read the cache: no more calls
        result = checks.check()
    assert good.calls == 1
    assert not result.ok
    assert result.detail == {"sink-a": "credentials accepted", "sink-b": "credentials refused: invalid_client",
                             "sink-c": "not checked: RetryableError"}

    ok_only = SinkAuthChecks({"sink-a": runtimes["sink-a"]}, interval=60)
    await ok_only.check_once()
    assert ok_only.check().ok
    runtimes["sink-a"].engine.credentials_refused = True  # a write refused since the last check
    assert not ok_only.check().ok


def test_a_source_is_ready_once_started_and_reading() -> None:
    source = SimpleNamespace(stopping=False, last_poll={})
    assert source_readiness(source, True, 60, now=lambda: 1000.0).body()["failed"] == ["reading"]
    source.last_poll["prospect"] = 990.0
    assert source_readiness(source, True, 60, now=lambda: 1000.0).ok
    assert source_readiness(source, False, 60, now=lambda: 1000.0).body()["failed"] == ["kafka_connected"]
    assert not source_readiness(source, True, 60, now=lambda: 1100.0).ok  # last read too old


def test_the_source_port_serves_health_beside_the_metrics() -> None:
    source = SimpleNamespace(system="pardot", positions=SimpleNamespace(saved={}), published_per_topic={},
                             last_poll={}, publisher=None)
    ready = {"value": False}
    port = serve_source_metrics(source, 0, health={
        "/healthz": lambda: Report({"event_loop": Check(True)}),
        "/readyz": lambda: Report({"reading": Check(ready["value"], "x")})})
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/healthz").status_code == 200
    response = httpx.get(f"{base}/readyz")
    assert response.status_code == 503 and response.json()["failed"] == ["reading"]
    ready["value"] = True
    assert httpx.get(f"{base}/readyz").json() == {"status": "ok", "failed": [],
                                                   "checks": {"reading": {"ok": True, "detail": "x"}}}
    metrics_page = httpx.get(f"{base}/metrics")
    assert metrics_page.status_code == 200 and "connect_source_events" in metrics_page.text

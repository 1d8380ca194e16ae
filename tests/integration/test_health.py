"""/healthz and /readyz on real processes: workers and a source against the real broker and the
sandbox. Ready after start; not ready while a partition is stalled, while a sink's credentials
are refused, or while a source cannot read its system."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.sf_sandbox import SandboxThread
from tests.support.sources import SourceProcess
from tests.support.worker import WorkerProcess, free_port
from tests.support.names import unique

pytestmark = pytest.mark.integration

BAD_KEY = "not-a-tims-key-0000"


@pytest.fixture
def sandbox() -> Iterator[SandboxThread]:
    running = SandboxThread()
    try:
        yield running
    finally:
        running.stop()


def probe(port: int | str, path: str) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.TransportError as exc:
        return 0, {"error": type(exc).__name__}
    return response.status_code, response.json()


async def wait_for(port: int | str, path: str, holds: Callable[[int, dict[str, Any]], bool], timeout: float,
                   check: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Poll ``path`` every 0.1 s until ``holds(status, body)``; the last answer on timeout."""
    deadline = time.monotonic() + timeout
    status, body = probe(port, path)
    while not holds(status, body):
        check()
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} on :{port} never met the condition in {timeout}s; last: {status} {body}")
        await asyncio.sleep(0.1)
        status, body = probe(port, path)
    return body


def other_app(app_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    run = unique()
    return {**app_env, "CONNECT_APP_ID": f"test-{run}", "CONNECT_TOPIC_PREFIX": f"t{run}.",
            "CONNECT_DATA_DIR": str(tmp_path / "data-b")}


async def test_workers_are_ready_after_start_and_not_while_stalled_or_refused(
        app_env: dict[str, str], sandbox: SandboxThread, tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    common = {**sandbox.sandbox.worker_env(), "CONNECT_SINK_OBJECTS": "tims.customer",
              "CONNECT_HEALTH_AUTH_INTERVAL": "1", "CONNECT_STALL_AFTER": "5", "CONNECT_METRICS_LAG_INTERVAL": "1"}
    good = WorkerProcess({**app_env, **common}, tmp_path / "good.log", name="good")
    refused = WorkerProcess({**other_app(app_env, tmp_path), **common, "CONNECT_TIMS_API_KEY": BAD_KEY},
                            tmp_path / "refused.log", name="refused")
    with good, refused:
        await asyncio.gather(asyncio.to_thread(good.start), asyncio.to_thread(refused.start))
        good_port, refused_port = good.env["CONNECT_WEB_PORT"], refused.env["CONNECT_WEB_PORT"]

        ready = await wait_for(good_port, "/readyz", lambda status, _: status == 200, 60)
        assert set(ready["checks"]) == {"assigned", "tables_recovered", "direct_stages_consuming", "consumer_not_stalled",
                                        "sinks_authenticated"}
        assert ready["checks"]["direct_stages_consuming"]["detail"][f"{app_env['CONNECT_APP_ID']}.customer_sync.ingest"] == (
            "consuming")
        assert ready["checks"]["sinks_authenticated"]["detail"] == {"sink-tims-customer": "credentials accepted"}
        status, alive = probe(good_port, "/healthz")
        assert status == 200 and alive["checks"]["event_loop"]["ok"], alive

        # refused: assigned and recovered, but TIMS refuses its key
        body = await wait_for(refused_port, "/readyz",
                              lambda _, b: not {"assigned", "direct_stages_consuming"} & set(b.get("failed", ["assigned"]))
                              and "sinks_authenticated" in b.get("failed", []), 60)
        assert body["failed"] == ["sinks_authenticated"]
        assert body["checks"]["sinks_authenticated"]["detail"]["sink-tims-customer"].startswith("credentials refused")
        assert probe(refused_port, "/healthz")[0] == 200  # alive: restarting it would not help
        assert BAD_KEY not in refused.log_text()

        # a partition the good worker stops reading: not ready until the watchdog got it moving again
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(f"{prefix}diag.ping", json.dumps({"id": 0, "pause_partition": True}).encode(),
                                         key=b"k0", partition=1)
            for i in range(1, 6):
                await producer.send_and_wait(f"{prefix}diag.ping", json.dumps({"id": i}).encode(),
                                             key=f"k{i}".encode(), partition=1)
        finally:
            await producer.stop()
        stalled = await wait_for(good_port, "/readyz", lambda status, _: status == 503, 60)
        assert stalled["failed"] == ["consumer_not_stalled"]
        assert stalled["checks"]["consumer_not_stalled"]["detail"]["stalled"] == [f"{prefix}diag.ping[1]"]
        await wait_for(good_port, "/readyz", lambda status, _: status == 200, 60)
        good.stop()
        refused.stop()


async def test_a_source_is_ready_while_it_reads_and_not_while_its_system_is_unreachable(
        app_env: dict[str, str], sandbox: SandboxThread, tmp_path: Path) -> None:
    env = {**app_env, **sandbox.sandbox.worker_env(), "CONNECT_TIMS_POLL_INTERVAL": "0.5",
           "CONNECT_METRICS_HOST": "127.0.0.1"}
    reading = SourceProcess("tims", env, tmp_path / "reading.log")
    cut_off = SourceProcess("tims", {**other_app(app_env, tmp_path),
                                     **env, "CONNECT_TIMS_BASE_URL": f"http://127.0.0.1:{free_port()}"},
                            tmp_path / "cut-off.log")
    try:
        ready = await wait_for(reading.port, "/readyz", lambda status, _: status == 200, 60, reading.check)
        assert ready["checks"]["reading"]["detail"]["streams"]
        assert probe(reading.port, "/healthz")[0] == 200

        alive = await wait_for(cut_off.port, "/healthz", lambda status, _: status == 200, 60, cut_off.check)
        assert alive["checks"]["event_loop"]["ok"]
        await wait_for(cut_off.port, "/readyz", lambda _, b: b["checks"]["kafka_connected"]["ok"], 60, cut_off.check)
        await asyncio.sleep(3)  # six poll intervals, each failing to reach TIMS
        status, body = probe(cut_off.port, "/readyz")
        cut_off.check()
        assert status == 503 and body["failed"] == ["reading"]
        assert body["checks"]["reading"]["detail"]["last_read_age_seconds"] is None
    finally:
        reading.stop()
        cut_off.stop()

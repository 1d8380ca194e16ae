"""The stall watchdog in a real worker: a partition it stops reading is noticed and recovered."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.kafka import read_json
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration


async def test_a_partition_the_worker_stopped_reading_is_recovered(app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    env = {**app_env, "CONNECT_STALL_AFTER": "5", "CONNECT_METRICS_LAG_INTERVAL": "1"}
    with WorkerProcess(env, tmp_path / "worker.log").start() as worker:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(f"{prefix}diag.ping", json.dumps({"id": 0, "pause_partition": True}).encode(),
                                         key=b"k0", partition=1)
            await read_json(bootstrap, f"{prefix}diag.pong", until=lambda vs: len(vs) >= 1, timeout=60)
            for i in range(1, 11):  # written while the worker does not fetch partition 1
                await producer.send_and_wait(f"{prefix}diag.ping", json.dumps({"id": i}).encode(), key=f"k{i}".encode(),
                                             partition=1)
        finally:
            await producer.stop()
        pongs = await read_json(bootstrap, f"{prefix}diag.pong", until=lambda vs: len({v["id"] for v in vs}) >= 11,
                                timeout=90)
        metrics = httpx.get(f"http://127.0.0.1:{worker.env['CONNECT_WEB_PORT']}/metrics").text
        log = worker.log_text()
        worker.stop()

    assert {v["id"] for v in pongs} == set(range(11))
    assert "watchdog:" in log and "stalled" in log
    [recoveries] = [line for line in metrics.splitlines() if line.startswith("connect_consumer_stall_recoveries_total")]
    assert float(recoveries.split()[-1]) >= 1

"""A worker asked to stop while its broker is gone exits within its grace (docs/adr/0024,
addendum). The test runs its own broker, so that it can kill it: the shared one stays up.

Before the deadline, such a worker busy with a backlog waited in Faust's "Wait for streams..."
for the acks of its sends, retried for good and never exited (seen: still running 150 s after
SIGTERM); an idle one took about a minute (the consumer thread's stop timeout)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stream_app.shutdown import EXIT_SHUTDOWN_DEADLINE
from tests.support.kafka import private_broker, produce_json
from tests.support.names import unique
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

GRACE = 10
#: what the test allows beyond the grace: the signal's delivery, the log's flush, a loaded machine
MARGIN = 15
BACKLOG = 5_000


def contact(i: int) -> tuple[str, dict[str, Any]]:
    record_id = f"003S{i:011d}"
    return record_id, {"event_id": f"s{i}", "source": "salesforce", "entity": "Contact", "record_id": record_id,
                       "change_type": "CREATE", "fields": {"Email": f"p{i}@example.com", "LastName": f"P{i}"},
                       "commit_timestamp": 1_000 + i}


async def test_a_busy_worker_whose_broker_is_gone_exits_within_its_grace_on_sigterm(tmp_path: Path) -> None:
    run = unique()
    async with private_broker() as broker:
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "CONNECT_APP_ID": f"test-{run}",
               "CONNECT_TOPIC_PREFIX": f"t{run}.", "CONNECT_DATA_DIR": str(tmp_path / "data"),
               "CONNECT_TOPIC_PARTITIONS": "2", "CONNECT_BROKER_SESSION_TIMEOUT": "10",
               "CONNECT_BROKER_HEARTBEAT_INTERVAL": "1", "CONNECT_FLOWS": "customer_sync",
               "CONNECT_SHUTDOWN_GRACE": str(GRACE)}
        with WorkerProcess(env, tmp_path / "worker.log").start(240.0) as worker:
            assert worker.proc is not None
            await asyncio.sleep(3)
            await produce_json(broker.bootstrap, f"t{run}.src.salesforce.Contact", [contact(i) for i in range(BACKLOG)])
            await asyncio.sleep(1)  # the worker is busy with the backlog when the broker goes
            pid = broker.status().pid
            assert pid is not None
            os.killpg(pid, signal.SIGKILL)
            await asyncio.sleep(1)
            asked = time.monotonic()
            os.killpg(worker.proc.pid, signal.SIGTERM)
            try:
                code = await asyncio.to_thread(worker.proc.wait, GRACE + MARGIN)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the worker still ran {GRACE + MARGIN} s after SIGTERM (grace {GRACE} s)")
            took = time.monotonic() - asked
            log = worker.log_text()
    assert f"shutdown: SIGTERM received; stopping, and exiting with code {EXIT_SHUTDOWN_DEADLINE} if not done " \
           f"within {GRACE} s" in log
    assert code == EXIT_SHUTDOWN_DEADLINE, f"exit code {code} after {took:.1f} s: the stop did not need the deadline"
    assert took >= GRACE - 1
    assert f"shutdown: not done {GRACE} s after SIGTERM received (is the broker reachable?); exiting with code " \
           f"{EXIT_SHUTDOWN_DEADLINE}. Abandoned while stopping: " in log


async def test_a_worker_whose_broker_answers_stops_cleanly_long_before_its_deadline(
        app_env: dict[str, str], tmp_path: Path) -> None:
    with WorkerProcess({**app_env, "CONNECT_FLOWS": "customer_sync", "CONNECT_SHUTDOWN_GRACE": "60"},
                       tmp_path / "worker.log").start(240.0) as worker:
        asked = time.monotonic()
        code = await asyncio.to_thread(worker.stop, 90.0)
        took = time.monotonic() - asked
        log = worker.log_text()
    assert "shutdown: SIGTERM received" in log and "shutdown: not done" not in log
    assert code == 0 and took < 60, f"exit code {code} after {took:.1f} s"

"""The worker against the real broker: a round trip, and restarts that neither redo nor lose work."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support.kafka import produce_json, read_json
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration


def pings(ids: range) -> list[tuple[str, dict]]:
    return [(f"k{i}", {"id": i}) for i in ids]


def ids_in(values: list[dict]) -> set[int]:
    return {v["id"] for v in values}


async def test_worker_round_trip(app_env: dict[str, str], tmp_path: Path) -> None:
    prefix = app_env["CONNECT_TOPIC_PREFIX"]
    with WorkerProcess(app_env, tmp_path / "worker.log").start() as worker:
        await produce_json(app_env["KAFKA_BOOTSTRAP_SERVERS"], f"{prefix}diag.ping", pings(range(50)))
        out = await read_json(
            app_env["KAFKA_BOOTSTRAP_SERVERS"], f"{prefix}diag.pong",
            until=lambda vs: ids_in(vs) >= set(range(50)), timeout=90,
        )
        worker.stop()
    assert ids_in(out) == set(range(50))
    assert {v["worker_pid"] for v in out} == {worker.proc.pid}
    assert all(v["times_processed"] == 1 for v in out)


async def test_restart_neither_redoes_committed_nor_loses_uncommitted(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = app_env["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = app_env["CONNECT_TOPIC_PREFIX"]
    log = tmp_path / "worker.log"

    first = WorkerProcess(app_env, log, "first").start()
    await produce_json(bootstrap, f"{prefix}diag.ping", pings(range(100)))
    await read_json(bootstrap, f"{prefix}diag.pong", until=lambda vs: ids_in(vs) >= set(range(100)), timeout=90)
    assert first.stop() == 0, first.log_text()[-3000:]

    # Produced while no worker runs: nothing has read these yet.
    await produce_json(bootstrap, f"{prefix}diag.ping", pings(range(100, 200)))

    with WorkerProcess(app_env, log, "second").start() as second:
        out = await read_json(
            bootstrap, f"{prefix}diag.pong",
            until=lambda vs: ids_in(vs) >= set(range(200)), timeout=90, quiet_after=3.0,
        )
        second.stop()

    assert ids_in(out) == set(range(200)), "uncommitted work was lost"
    processed = Counter((v["partition"], v["offset"]) for v in out)
    redone = [pos for pos, n in processed.items() if n > 1]
    assert redone == [], f"committed work was processed again: {redone[:10]}"
    by_pid = Counter(v["worker_pid"] for v in out)
    assert by_pid == {first.proc.pid: 100, second.proc.pid: 100}
    # The per-key table survived the restart through its changelog: no key counted twice.
    assert max(v["times_processed"] for v in out) == 1


async def test_killed_worker_loses_nothing(app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap = app_env["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = app_env["CONNECT_TOPIC_PREFIX"]
    log = tmp_path / "worker.log"

    first = WorkerProcess(app_env, log, "first").start()
    await produce_json(bootstrap, f"{prefix}diag.ping", pings(range(300)))
    await read_json(bootstrap, f"{prefix}diag.pong", until=lambda vs: len(ids_in(vs)) >= 50, timeout=90)
    first.kill()

    # The stall watchdog may step in if the restarted worker leaves a partition unread (seen about
    # once in 20 runs on a loaded machine); its log line carries the consumer's state for diagnosis.
    watched = {**app_env, "CONNECT_STALL_AFTER": "30", "CONNECT_METRICS_LAG_INTERVAL": "5"}
    with WorkerProcess(watched, log, "second").start() as second:
        out = await read_json(
            bootstrap, f"{prefix}diag.pong",
            until=lambda vs: ids_in(vs) >= set(range(300)), timeout=180, quiet_after=3.0,
        )
        second.stop()
    print("\n".join(line for line in log.read_text().splitlines() if "watchdog:" in line))

    assert ids_in(out) == set(range(300))
    # At-least-once: a message may be processed twice only if the kill came before its commit,
    # and then it is the same input message (same partition and offset) both times.
    per_position = Counter((v["partition"], v["offset"], v["id"]) for v in out)
    assert len({(p, o) for p, o, _ in per_position}) == 300

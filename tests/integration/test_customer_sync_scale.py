"""Customer sync at scale, end to end: 500 people arriving at once through the Lead, Contact,
Pardot and TIMS paths; two workers of one app, one of them SIGKILLed mid-run and restarted on
its own (stale) data dir; the three sources as processes; the sandbox in this process.

Done means: exactly one TIMS customer per person (those a TIMS user had entered are adopted,
never duplicated), every TIMS id on its Contact and its Account, both systems agreeing, and no
more writes from the connector once they agree.

How people arrive (seeded, so every run plays the same script; the paths are described in
tests/support/people.py): a sliding window of people is active at once and their steps
interleave at random; 45 % of them are entered in TIMS by a TIMS user first.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sandbox.run import start_sandbox
from sandbox.demo import Processes
from tests.support.flows import CLIENT
from tests.support.kafka import topic_sizes
from tests.support.people import api_writes as connector_writes
from tests.support.people import arrive, cast, check_people, disagreements
from tests.support.worker import WorkerProcess, free_port

pytestmark = pytest.mark.integration

SEED = 6
PATHS = {"lead": 175, "lead_tims": 150, "contact": 100, "contact_tims": 75}
PEOPLE = sum(PATHS.values())
WINDOW = 60  # people arriving at the same time
ARRIVAL_SECONDS = 30.0
KILL_AT, RESTART_AT = 0.35, 0.6  # shares of the arrival played when worker b is killed / restarted
CONVERGE_TIMEOUT = 150.0
QUIET_WINDOW = 8.0
SETTLE_TIMEOUT = 60.0


async def test_500_customers_two_workers_one_killed(app_env: dict[str, str], tmp_path: Path) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    people = cast(rng, PATHS)
    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0},
                                  keepalive_seconds=5)
    env = {**app_env, **sandbox.worker_env(),
           "CONNECT_SINK_OBJECTS": "salesforce.Contact,salesforce.Account,tims.customer",
           "CONNECT_SINK_LINGER": "0.2", "CONNECT_TIMS_POLL_INTERVAL": "1", "CONNECT_PARDOT_POLL_INTERVAL": "1",
           "CONNECT_TOPIC_PARTITIONS": "4", "CONNECT_BROKER_SESSION_TIMEOUT": "10",
           "CONNECT_BROKER_HEARTBEAT_INTERVAL": "1"}
    workers = {name: WorkerProcess({**env, "CONNECT_DATA_DIR": str(tmp_path / f"data-{name}"),
                                    "CONNECT_WEB_PORT": str(free_port())}, tmp_path / f"worker-{name}.log", name)
               for name in ("a", "b")}
    sources = Processes({**os.environ, **env}, tmp_path)
    figures: dict[str, float] = {}
    restart: asyncio.Task[Any] | None = None
    try:
        await asyncio.gather(*(asyncio.to_thread(w.start, 120.0) for w in workers.values()))
        for system in ("salesforce", "tims", "pardot"):
            sources.start(f"source-{system}", "source", system)
        figures["started"] = time.monotonic() - began
        await asyncio.sleep(3)

        async def kill_b() -> None:
            figures["killed_at"] = time.monotonic() - arrival
            assert await asyncio.to_thread(workers["b"].kill) == -9
            # it was doing its share when it died: partitions assigned and sink batches written
            assert re.search(r"sink \S+: \d+ message\(s\), \d+ stale, [1-9]\d* written", workers["b"].log_text()), \
                workers["b"].log_text()[-3000:]

        async def restart_b() -> None:
            nonlocal restart
            figures["restarted_at"] = time.monotonic() - arrival
            restart = asyncio.create_task(asyncio.to_thread(workers["b"].start, 120.0))

        arrival = time.monotonic()
        await arrive(people, sandbox, rng, {KILL_AT: kill_b, RESTART_AT: restart_b}, window=WINDOW,
                     seconds=ARRIVAL_SECONDS)
        figures["arrival"] = time.monotonic() - arrival

        problems: list[str] = []
        count = 0
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while time.monotonic() < deadline:
            sources.check()
            assert workers["a"].proc is not None and workers["a"].proc.poll() is None, workers["a"].log_text()[-3000:]
            problems, count = check_people(sandbox, people)
            if not problems and count == PEOPLE:
                break
            await asyncio.sleep(1)
        figures["converged"] = time.monotonic() - arrival
        assert not problems and count == PEOPLE, (
            f"not converged after {CONVERGE_TIMEOUT:.0f}s: {count} TIMS customers for {PEOPLE} people; "
            f"{len(problems)} problems, first ones: {problems[:15]}")
        assert restart is not None
        await restart  # worker b is back (raises if it could not start again)

        # Quiet once they agree: writes stop (a few trailing ones may still land while settling).
        settle_deadline = time.monotonic() + SETTLE_TIMEOUT
        windows: list[dict[str, int]] = []
        while True:
            before = connector_writes(sandbox)
            await asyncio.sleep(QUIET_WINDOW)
            after = connector_writes(sandbox)
            windows.append({k: after[k] - before[k] for k in after})
            if after == before:
                break
            assert time.monotonic() < settle_deadline, f"the connector keeps writing; per {QUIET_WINDOW}s: {windows}"
        figures["quiet"] = time.monotonic() - arrival

        problems, count = check_people(sandbox, people)
        assert not problems and count == PEOPLE, problems[:15]
        customers = sandbox.tims.all("customers")
        assert len(customers) == PEOPLE
        emails = Counter(str(c["email"]).lower() for c in customers)
        assert set(emails) == {p.email for p in people} and set(emails.values()) == {1}
        assert disagreements(sandbox, people) == []
        prefix = app_env["CONNECT_TOPIC_PREFIX"]
        rejected = await topic_sizes(app_env["KAFKA_BOOTSTRAP_SERVERS"], [
            f"{prefix}{t}" for t in ("dlq.salesforce", "dlq.tims", "quarantine.customer_sync", "quarantine.sink")])
        assert set(rejected.values()) == {0}, rejected
        for worker in workers.values():
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_text()[-3000:]

        api = sandbox.org.snapshot(with_records=False)["api"]
        ours = {k.split(" ", 1)[1]: n for k, n in sorted(api["by_client_kind"].items()) if k.startswith(CLIENT + " ")}
        writes = connector_writes(sandbox)
        print(f"\n{PEOPLE} people ({dict(PATHS)}); 2 workers, b SIGKILLed at {figures['killed_at']:.1f}s and "
              f"restarted at {figures['restarted_at']:.1f}s of the arrival")
        print(f"  workers and sources ready after {figures['started']:.1f}s; arrival took {figures['arrival']:.1f}s")
        print(f"  converged {figures['converged']:.1f}s after the first arrival "
              f"({figures['converged'] - figures['arrival']:.1f}s after the last); quiet (no write for "
              f"{QUIET_WINDOW:.0f}s) at {figures['quiet']:.1f}s; writes per window while settling {windows}")
        print(f"  Salesforce API calls by {CLIENT}: {sum(ours.values())} {ours} "
              f"({writes['salesforce'] / PEOPLE * 1000:.0f} write calls per 1,000 people); TIMS records written by "
              f"connect: {writes['tims']} ({writes['tims'] / PEOPLE * 1000:.0f} per 1,000 people)")
        print(f"  TIMS customers: {len(customers)} (adopted from TIMS users: "
              f"{sum(1 for p in people if p.tims_user_enters)}); test took {time.monotonic() - began:.0f}s")
    finally:
        if restart is not None and not restart.done():
            await asyncio.wait([restart])
        await asyncio.gather(asyncio.to_thread(sources.stop), *(asyncio.to_thread(w.stop, 60.0)
                                                                   for w in workers.values() if w.proc is not None))
        await sandbox.stop()

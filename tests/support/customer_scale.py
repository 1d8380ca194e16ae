"""The customer sync at scale with two workers, and things done to the workers mid-run.

People arrive through the Lead, Contact, Pardot and TIMS paths (seeded: every run plays the same
script; tests/support/people.py), a sliding window of them at once, while ``milestones`` act on
the workers at given shares of the arrival (SIGKILL one, stop one gracefully, start it again).
The run then waits until every person is exactly one TIMS customer with their TIMS id on their
Contact and Account and both systems agree, and until the connector stops writing; it returns
the figures, including the longest time during the arrival in which no write reached a target
(how long the pipeline paused while workers left and joined).

tests/integration/test_customer_sync_scale.py (a worker SIGKILLed) and
tests/integration/test_rolling_restart.py (both workers restarted one after the other) use it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from sandbox.demo import Processes
from sandbox.run import Sandbox, start_sandbox
from tests.support.flows import CLIENT
from tests.support.kafka import topic_sizes
from tests.support.people import api_writes, arrive, cast, check_people, disagreements
from tests.support.worker import WorkerProcess, free_port

__all__ = ["ScaleRun", "Workers", "run_customer_scale"]

#: seconds with no write from the connector that count as quiet once the systems agree
QUIET_WINDOW = 8.0


@dataclass(frozen=True)
class ScaleRun:
    paths: dict[str, int]
    seed: int = 6
    window: int = 60
    arrival_seconds: float = 30.0
    converge_timeout: float = 150.0
    settle_timeout: float = 60.0


class Workers:
    """The run's two workers, ``a`` and ``b``, and what milestones do to them (off the event loop,
    so the sandbox in this process keeps answering)."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.all = {name: WorkerProcess({**env, "CONNECT_DATA_DIR": str(workdir / f"data-{name}"),
                                         "CONNECT_WEB_PORT": str(free_port())}, workdir / f"worker-{name}.log", name)
                    for name in ("a", "b")}
        self.starting: list[asyncio.Task[Any]] = []
        self.events: list[str] = []

    async def kill(self, name: str) -> int:
        self.events.append(f"kill {name}")
        return await asyncio.to_thread(self.all[name].kill)

    async def stop(self, name: str) -> int:
        """SIGTERM, and wait until the worker left (its exit code)."""
        began = time.monotonic()
        code = await asyncio.to_thread(self.all[name].stop, 60.0)
        self.events.append(f"stop {name} ({time.monotonic() - began:.1f}s, exit {code})")
        return code

    async def start(self, name: str) -> None:
        """Start again on its own (stale) data dir, without waiting for it to be ready."""
        self.events.append(f"start {name}")
        self.starting.append(asyncio.create_task(asyncio.to_thread(self.all[name].start, 120.0)))

    async def ready(self) -> None:
        for task in self.starting:
            await task


Milestones = Callable[[Workers, dict[str, Any]], dict[float, Callable[[], Awaitable[Any]]]]


async def _longest_pause(sandbox: Sandbox, stop: asyncio.Event, gaps: list[float]) -> None:
    """Sample the connector's writes; keep the longest stretch in which they did not grow."""
    last, since = api_writes(sandbox), time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.25)
        now = api_writes(sandbox)
        if now != last:
            gaps.append(time.monotonic() - since)
            last, since = now, time.monotonic()


async def run_customer_scale(app_env: dict[str, str], workdir: Path, run: ScaleRun,
                             milestones: Milestones) -> dict[str, Any]:
    """Play ``run`` with ``milestones(workers, figures)`` during the arrival; raise AssertionError
    when the systems do not converge or keep writing; return the figures and the invariants."""
    began = time.monotonic()
    rng = random.Random(run.seed)
    people = cast(rng, run.paths)
    total = len(people)
    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0},
                                  keepalive_seconds=5)
    env = {**app_env, **sandbox.worker_env(),
           "CONNECT_SINK_OBJECTS": "salesforce.Contact,salesforce.Account,tims.customer",
           "CONNECT_SINK_LINGER": "0.2", "CONNECT_TIMS_POLL_INTERVAL": "1", "CONNECT_PARDOT_POLL_INTERVAL": "1",
           "CONNECT_TOPIC_PARTITIONS": "4", "CONNECT_BROKER_SESSION_TIMEOUT": "10",
           "CONNECT_BROKER_HEARTBEAT_INTERVAL": "1"}
    workers = Workers(env, workdir)
    sources = Processes({**os.environ, **env}, workdir)
    figures: dict[str, Any] = {}
    try:
        await asyncio.gather(*(asyncio.to_thread(w.start, 120.0) for w in workers.all.values()))
        for system in ("salesforce", "tims", "pardot"):
            sources.start(f"source-{system}", "source", system)
        figures["started"] = time.monotonic() - began
        await asyncio.sleep(3)

        stop_sampling, gaps = asyncio.Event(), [0.0]
        sampler = asyncio.create_task(_longest_pause(sandbox, stop_sampling, gaps))
        arrival = time.monotonic()
        figures["arrival_began"] = arrival
        await arrive(people, sandbox, rng, milestones(workers, figures), window=run.window, seconds=run.arrival_seconds)
        figures["arrival"] = time.monotonic() - arrival
        stop_sampling.set()
        await sampler
        figures["longest_pause"] = max(gaps)

        problems: list[str] = []
        count = 0
        deadline = time.monotonic() + run.converge_timeout
        while time.monotonic() < deadline:
            sources.check()
            for worker in workers.all.values():
                if worker.proc is not None and worker.proc.returncode is None:
                    assert worker.proc.poll() is None, worker.log_text()[-3000:]
            problems, count = check_people(sandbox, people)
            if not problems and count == total:
                break
            await asyncio.sleep(1)
        figures["converged"] = time.monotonic() - arrival
        assert not problems and count == total, (
            f"not converged after {run.converge_timeout:.0f}s: {count} TIMS customers for {total} people; "
            f"{len(problems)} problems, first ones: {problems[:15]}")
        await workers.ready()

        # Quiet once they agree: writes stop (a few trailing ones may still land while settling).
        settle_deadline = time.monotonic() + run.settle_timeout
        windows: list[dict[str, int]] = []
        while True:
            before = api_writes(sandbox)
            await asyncio.sleep(QUIET_WINDOW)
            after = api_writes(sandbox)
            windows.append({k: after[k] - before[k] for k in after})
            if after == before:
                break
            assert time.monotonic() < settle_deadline, f"the connector keeps writing; per {QUIET_WINDOW}s: {windows}"
        figures["quiet"] = time.monotonic() - arrival
        figures["settling_windows"] = windows

        problems, count = check_people(sandbox, people)
        assert not problems and count == total, problems[:15]
        customers = sandbox.tims.all("customers")
        assert len(customers) == total
        emails = Counter(str(c["email"]).lower() for c in customers)
        assert set(emails) == {p.email for p in people} and set(emails.values()) == {1}
        assert disagreements(sandbox, people) == []
        prefix = app_env["CONNECT_TOPIC_PREFIX"]
        rejected = await topic_sizes(app_env["KAFKA_BOOTSTRAP_SERVERS"], [
            f"{prefix}{t}" for t in ("dlq.salesforce", "dlq.tims", "quarantine.customer_sync", "quarantine.sink")])
        assert set(rejected.values()) == {0}, rejected
        for worker in workers.all.values():
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_text()[-3000:]

        api = sandbox.org.snapshot(with_records=False)["api"]
        figures["salesforce_calls"] = {k.split(" ", 1)[1]: n for k, n in sorted(api["by_client_kind"].items())
                                       if k.startswith(CLIENT + " ")}
        figures["writes"] = api_writes(sandbox)
        figures["customers"] = len(customers)
        figures["adopted"] = sum(1 for p in people if p.tims_user_enters)
        figures["worker_events"] = workers.events
        figures["logs"] = {name: w.log_text() for name, w in workers.all.items()}
        figures["took"] = time.monotonic() - began
        return figures
    finally:
        for task in workers.starting:
            if not task.done():
                await asyncio.wait([task])
        await asyncio.gather(asyncio.to_thread(sources.stop), *(asyncio.to_thread(w.stop, 60.0)
                                                                   for w in workers.all.values() if w.proc is not None))
        await sandbox.stop()

"""Helpers for end-to-end flow tests: the sandbox, source processes and a worker together."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from sandbox.run import Sandbox, start_sandbox
from sandbox.demo import Processes
from tests.support.worker import WorkerProcess, free_port

__all__ = ["CLIENT", "SALESFORCE_WRITES", "FlowRig", "connector_writes", "flow_rig", "mapping_changed", "settle",
           "stage_counts", "wait_until", "waiting_shows"]

CLIENT = "pardot-tims-connect"
SALESFORCE_WRITES = {"create", "update", "upsert", "delete", "collections.create", "collections.update",
                     "collections.upsert", "collections.delete"}


def connector_writes(sandbox: Sandbox) -> tuple[int, int]:
    """(Salesforce write calls, TIMS changes) made by the connector so far."""
    by_client_kind = sandbox.org.snapshot(with_records=False)["api"]["by_client_kind"]
    salesforce = sum(n for k, n in by_client_kind.items()
                     if k.split(" ")[0] == CLIENT and k.split(" ")[-1] in SALESFORCE_WRITES)
    return salesforce, sum(1 for change in sandbox.tims.changes if change.modified_by == "connect")


async def wait_until(what: str, check: Callable[[], bool], sources: Processes, worker: WorkerProcess,
                     state: Callable[[], Any] = lambda: None, timeout: float = 60.0) -> None:
    """Poll ``check`` until it holds; fail early if a source or the worker died, and on timeout
    say what was awaited and what ``state()`` shows."""
    deadline = time.monotonic() + timeout
    while not check():
        sources.check()
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_text()[-3000:]
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f}s; now {state()}"
        await asyncio.sleep(0.25)


async def settle(writes: Callable[[], tuple[int, ...]], still: float = 6.0,
                 timeout: float = 90.0) -> tuple[bool, list[tuple[int, ...]]]:
    """Wait until ``writes()`` (counts of the connector's writes) stands still for ``still``
    seconds, or ``timeout``: whether it did, and what each window added."""
    deadline, windows = time.monotonic() + timeout, []
    while True:
        before = writes()
        await asyncio.sleep(still)
        after = writes()
        windows.append(tuple(a - b for a, b in zip(after, before)))
        if after == before or time.monotonic() > deadline:
            return after == before, windows


@dataclass
class FlowRig:
    """The sandbox in this process, a worker and sources as subprocesses, and their settings."""

    sandbox: Sandbox
    worker: WorkerProcess
    sources: Processes
    env: dict[str, str]

    async def until(self, what: str, check: Callable[[], bool], state: Callable[[], Any] = lambda: None,
                    timeout: float = 60.0) -> None:
        await wait_until(what, check, self.sources, self.worker, state, timeout)

    async def until_quiet(self, timeout: float = 120.0, still: float = 4.0) -> tuple[int, int]:
        """Wait until the connector makes no write for ``still`` seconds; its writes so far."""
        deadline = time.monotonic() + timeout
        while True:
            before = connector_writes(self.sandbox)
            await asyncio.sleep(still)
            if connector_writes(self.sandbox) == before:
                return before
            assert time.monotonic() < deadline, "the connector keeps writing"


@contextlib.asynccontextmanager
async def flow_rig(app_env: dict[str, str], tmp_path: Path, settings: Callable[[Sandbox], dict[str, str]],
                   sources: tuple[str, ...]) -> AsyncIterator[FlowRig]:
    """Start the sandbox, then a worker and the ``sources`` with ``settings(sandbox)`` on top of
    the test's app settings; stop them all on the way out."""
    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0},
                                  keepalive_seconds=5)
    env = {**app_env, **sandbox.worker_env(), "CONNECT_WEB_PORT": str(free_port()), "CONNECT_SINK_LINGER": "0.2",
           "CONNECT_TIMS_POLL_INTERVAL": "1", **settings(sandbox)}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    processes = Processes({**os.environ, **env}, tmp_path)
    try:
        await asyncio.to_thread(worker.start, 120.0)
        for system in sources:
            processes.start(f"source-{system}", "source", system)
        yield FlowRig(sandbox, worker, processes, env)
    except BaseException:
        print(f"--- the worker's log (tail) ---\n{worker.log_text()[-6000:]}")
        raise
    finally:
        await asyncio.gather(asyncio.to_thread(processes.stop), asyncio.to_thread(worker.stop, 60.0))
        await sandbox.stop()


def mapping_changed(tmp_path: Path, flow: str, shipped: Path, name: str, old: str, new: str) -> dict[str, str]:
    """The settings for a mappings folder where ``flow``'s file ``name`` reads ``new`` for ``old``."""
    folder = tmp_path / "mappings" / flow
    folder.mkdir(parents=True)
    text = (shipped / name).read_text()
    assert old in text, f"{old!r} is not in the shipped {name}"
    (folder / name).write_text(text.replace(old, new))
    return {"CONNECT_MAPPINGS_DIR": str(tmp_path / "mappings")}


def stage_counts(text: str, flow: str = "customer_sync") -> dict[tuple[str, str], float]:
    """``connect_flow_stage_messages_total`` of one flow on a worker's /metrics, by (stage, outcome)."""
    counts: dict[tuple[str, str], float] = Counter()
    for line in text.splitlines():
        if line.startswith("connect_flow_stage_messages_total{") and f'flow="{flow}"' in line:
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
            counts[(labels["stage"].strip('"'), labels["outcome"].strip('"'))] = float(line.rsplit(" ", 1)[1])
    return counts


async def waiting_shows(rig: FlowRig, flow: str, reference: str, count: float, timeout: float = 40.0) -> None:
    """The worker reports ``count`` records of ``flow`` waiting for a ``reference`` (it measures
    every 10 s): ``connect_flow_waiting_references`` on its /metrics."""
    import httpx

    series = f'connect_flow_waiting_references{{flow="{flow}",reference="{reference}"}}'
    deadline = time.monotonic() + timeout
    while True:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{rig.env['CONNECT_WEB_PORT']}/metrics")).text
        found = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series)]
        if found == [count]:
            return
        assert time.monotonic() < deadline, f"{series} shows {found}, not {count}"
        await asyncio.sleep(1)

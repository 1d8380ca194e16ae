"""Helpers for end-to-end flow tests: the sandbox, source processes and a worker together."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Callable

from sandbox.run import Sandbox
from sandbox.demo import Processes
from tests.support.worker import WorkerProcess

__all__ = ["CLIENT", "SALESFORCE_WRITES", "connector_writes", "stage_counts", "wait_until"]

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


def stage_counts(text: str, flow: str = "customer_sync") -> dict[tuple[str, str], float]:
    """``connect_flow_stage_messages_total`` of one flow on a worker's /metrics, by (stage, outcome)."""
    counts: dict[tuple[str, str], float] = Counter()
    for line in text.splitlines():
        if line.startswith("connect_flow_stage_messages_total{") and f'flow="{flow}"' in line:
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
            counts[(labels["stage"].strip('"'), labels["outcome"].strip('"'))] = float(line.rsplit(" ", 1)[1])
    return counts

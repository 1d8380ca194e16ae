"""A rolling restart under load (issue #21): two workers, people arriving through every path,
worker a stopped with SIGTERM and started again, then worker b the same, one after the other
while the arrival goes on. Done means no lost event and no duplicate create (exactly one TIMS
customer per person, both systems agreeing, quiet afterwards: tests/support/customer_scale.py),
each worker leaving promptly and cleanly on SIGTERM (exit 0, within the graceful-stop budget),
and a bounded pause: the longest stretch during the arrival in which no write reached a target.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.customer_scale import ScaleRun, Workers, run_customer_scale

pytestmark = pytest.mark.integration

RUN = ScaleRun(paths={"lead": 70, "lead_tims": 60, "contact": 40, "contact_tims": 30}, seed=21, window=40,
               arrival_seconds=40.0)
#: a SIGTERMed worker must be gone within this (it commits and leaves the group on the way out)
STOP_BUDGET = 30.0
#: the longest the writes may pause while a worker leaves or joins: the group's rebalance with
#: the test's 10 s session timeout, table recovery from the changelog, and the sinks' linger
PAUSE_BOUND = 25.0


async def test_two_workers_restarted_one_after_the_other_under_load(app_env: dict[str, str], tmp_path: Path) -> None:
    stops: list[float] = []

    def milestones(workers: Workers, figures: dict[str, Any]) -> dict[float, Any]:
        def stop(name: str) -> Any:
            async def act() -> None:
                began = time.monotonic()
                assert await workers.stop(name) == 0, workers.all[name].log_text()[-3000:]
                stops.append(time.monotonic() - began)
            return act

        def start(name: str) -> Any:
            async def act() -> None:
                await workers.start(name)
            return act

        return {0.2: stop("a"), 0.3: start("a"), 0.55: stop("b"), 0.65: start("b")}

    # the test asserts a clean stop (exit 0); on a loaded CI machine one stop took longer than the
    # 30 s default deadline and exited 75 (docs/adr/0024): the deadline is not what is tested here
    app_env = {**app_env, "CONNECT_SHUTDOWN_GRACE": "120"}
    figures = await run_customer_scale(app_env, tmp_path, RUN, milestones)
    print(f"\nrolling restart: {sum(RUN.paths.values())} people over {figures['arrival']:.0f}s; "
          f"{figures['worker_events']}; longest pause in the writes {figures['longest_pause']:.1f}s; "
          f"converged {figures['converged']:.1f}s after the first arrival, quiet at {figures['quiet']:.1f}s; "
          f"writes {figures['writes']}; took {figures['took']:.0f}s")
    assert len(stops) == 2 and max(stops) < STOP_BUDGET, stops
    assert figures["longest_pause"] < PAUSE_BOUND, figures["longest_pause"]

"""The chaos run, small (tests/support/chaos.py; the full one is `make chaos`): 30 people through
the customer sync paths with 10 % API faults and expiring tokens, two workers each SIGKILLed once
and a source SIGKILLed, then every invariant counted against the sandbox's systems must be 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.chaos import INVARIANTS, ChaosPlan, run_chaos

pytestmark = pytest.mark.integration


async def test_chaos_small_every_invariant_holds(kafka_bootstrap: str, tmp_path: Path) -> None:
    figures = await run_chaos(ChaosPlan(people=30, worker_kills=2, source_kills=1), tmp_path, kafka_bootstrap)
    print(json.dumps(figures))
    assert figures["kills"] == {"worker": 2, "source": 1, "broker": 0}
    assert all(figures["faults_injected"].values()), figures["faults_injected"]
    assert figures["edits"] > 0
    assert {name: figures[name] for name in INVARIANTS} == dict.fromkeys(INVARIANTS, 0), figures

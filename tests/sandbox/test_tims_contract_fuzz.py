"""The TIMS simulator against its own document, fuzzed by schemathesis (docs/adr/0018).

Schemathesis reads ``/openapi.yaml`` from a running simulator and sends schema-valid and
schema-violating requests to every operation, with every check: no 5xx, only declared status
codes, headers and content types, responses valid by their schemas, invalid input refused,
valid input accepted (unless refused for state: tims_fuzz_checks.py), 405 with ``Allow`` for
undeclared methods. A fixed seed and a bounded number of examples keep the run repeatable and
under two minutes; any disagreement between the document and the simulator fails the test.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sandbox.faults import Faults
from sandbox.tims import DEFAULT_API_KEYS, TimsStore, start_server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KEY = next(k for k, v in DEFAULT_API_KEYS.items() if v == "connect")
SEED = 20260607
EXAMPLES = 12
METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture
def tims_url() -> Iterator[str]:
    """A simulator on a free loopback port, on its own event loop: schemathesis runs as a
    separate process and the test thread waits on it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="tims-fuzz-sandbox", daemon=True)
    thread.start()
    runner, url = asyncio.run_coroutine_threadsafe(
        start_server("127.0.0.1", 0, TimsStore(), Faults()), loop).result(15)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _operations() -> int:
    doc = yaml.safe_load((ROOT / "docs" / "tims-openapi.yaml").read_text(encoding="utf-8"))
    return sum(1 for item in doc["paths"].values() for method in item if method in METHODS)


def test_the_simulator_and_its_document_agree_under_schemathesis(tims_url: str, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "tims_fuzz.toml"),
        "run", f"{tims_url}/openapi.yaml",
        "--header", f"Authorization: Bearer {KEY}",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--seed", str(SEED), "--max-examples", str(EXAMPLES), "--workers", "1",
        "--generation-database", "none", "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.sandbox.tims_fuzz_checks",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis found disagreements:\n{output[-20000:]}"
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert selected is not None, output[-5000:]
    # every operation but the one that served schemathesis the document (GET /openapi.yaml)
    assert {int(n) for n in selected.groups()} == {_operations() - 1}, selected.group(0)

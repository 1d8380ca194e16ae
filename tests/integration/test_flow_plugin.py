"""A flow from a package outside topologies/, registered by entry point, in a real worker.

Nothing in stream_app/ names it: the worker finds it through the flow registry's entry-point
group, as it would find a site's own flow package installed beside ours.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.kafka import produce_json, read_json
from tests.support.worker import WorkerProcess
from topologies.registry import ENTRY_POINT_GROUP

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def register_tally(site: Path) -> dict[str, str]:
    """What installing a package with the entry point leaves behind: a dist-info on the path."""
    dist = site / "acme_tally-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-tally\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntally = tests.flows.tally:FLOW\n")
    return {"PYTHONPATH": os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])}


def note(record_id: str, n: int) -> dict[str, object]:
    return {"event_id": f"note-{record_id}-{n}", "source": "tims", "entity": "note", "record_id": record_id,
            "change_type": "UPDATE", "fields": {"text": f"edit {n}"}, "commit_timestamp": 1_000 + n}


async def test_a_flow_package_outside_topologies_runs_end_to_end(app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    env = {**app_env, **register_tally(tmp_path / "site"), "CONNECT_FLOWS": "tally"}
    changes = [("N1", note("N1", 1)), ("N2", note("N2", 1)), ("N1", note("N1", 2)), ("N1", ["not", "an", "event"])]
    with WorkerProcess(env, tmp_path / "worker.log").start() as worker:
        await produce_json(bootstrap, f"{prefix}src.tims.note", changes)
        counted = await read_json(bootstrap, f"{prefix}tally.counted", until=lambda vs: len(vs) >= 3, timeout=90)
        quarantined = await read_json(bootstrap, f"{prefix}quarantine.tally", until=lambda vs: len(vs) >= 1)
        log = worker.log_text()
        worker.stop()

    assert sorted((v["record_id"], v["count"]) for v in counted) == [("N1", 1), ("N1", 2), ("N2", 1)]
    assert quarantined[0]["flow"] == "tally" and quarantined[0]["raw"] == ["not", "an", "event"]
    assert "customer_sync" not in log, "CONNECT_FLOWS=tally runs that flow only"

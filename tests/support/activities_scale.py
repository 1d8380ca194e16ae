"""The activities flow at scale: many activities for many prospects, a worker killed mid-run.

The run starts the sandbox and a worker (activities flow, Task sink), publishes the prospects
(each synced with a Contact or a Lead) and the activities straight onto the source topics, as
the Pardot source would, SIGKILLs the worker ``kills`` times on the way (each time a new one
starts), then counts against the Salesforce sandbox: every activity of a type that makes a Task
of its own is in exactly one Task, every roll-up counts exactly its activities, nothing else
was made, and the Salesforce calls it took per 1,000 activities (bench/activities_bench.py
prints them; tests/integration/test_activities_scale.py runs a smaller plan).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from connectors.envelope import SourceEvent
from sandbox.run import start_sandbox
from tests.support.flows import CLIENT, connector_writes
from tests.support.kafka import produce_json
from tests.support.worker import WorkerProcess, free_port
from topologies.activities.tasks import DEFAULT_MAPPING_DIR, load_mapping, task_key

__all__ = ["ScalePlan", "run_activity_scale", "INVARIANTS"]

INVARIANTS = ("missing", "duplicated", "miscounted", "unexpected")
#: (Pardot type, type name, weight): form submissions and clicks make Tasks, views and opens roll up
MIX = ((4, "Form Handler", 10), (1, "Click", 15), (2, "View", 45), (11, "Open", 20), (6, "Sent", 10))
_COUNT = re.compile(r"^Pardot: (\d+) ")


@dataclass(frozen=True)
class ScalePlan:
    activities: int = 10_000
    prospects: int = 1_000
    kills: int = 1
    days: int = 3
    seed: int = 14


def _events(plan: ScalePlan, whos: list[tuple[str, str]]) -> tuple[list[SourceEvent], list[SourceEvent]]:
    rng = random.Random(plan.seed)
    start = datetime(2026, 12, 1, 8, tzinfo=timezone.utc)
    prospects = [SourceEvent(event_id=f"pardot:prospect:{1001 + i}:sync", source="pardot", entity="prospect",
                             record_id=str(1001 + i), change_type="UPDATE", full_state=True,
                             fields={"id": 1001 + i, field: who}, commit_timestamp=int(start.timestamp() * 1000))
                 for i, (field, who) in enumerate(whos)]
    kinds = [(t, n) for t, n, w in MIX for _ in range(w)]
    activities = []
    for number in range(plan.activities):
        type_, name = rng.choice(kinds)
        at = start + timedelta(days=rng.randrange(plan.days), minutes=rng.randrange(600))
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        fields = {"id": 4001 + number, "prospectId": 1001 + rng.randrange(plan.prospects), "type": type_,
                  "typeName": name, "details": f"/page/{rng.randrange(50)}", "createdAt": stamp, "updatedAt": stamp}
        activities.append(SourceEvent(event_id=f"pardot:visitor_activity:{4001 + number}:{stamp}", source="pardot",
                                      entity="visitor_activity", record_id=str(4001 + number), change_type="CREATE",
                                      fields=fields, full_state=True, commit_timestamp=int(at.timestamp() * 1000)))
    return prospects, activities


def _expected(activities: list[SourceEvent]) -> tuple[set[str], Counter[str]]:
    """The Tasks of their own (external ids) and each roll-up's count, as the shipped mapping says."""
    mapping = load_mapping(DEFAULT_MAPPING_DIR)
    own: set[str] = set()
    rollups: Counter[str] = Counter()
    for event in activities:
        fields = event.fields
        rule = mapping.rule_for(fields["type"], fields["typeName"])
        if rule.task == "each":
            own.add(task_key(str(fields["prospectId"]), str(fields["id"])))
        elif rule.task == "daily":
            rollups[task_key(str(fields["prospectId"]), group=rule.rollup_group, day=fields["createdAt"][:10])] += 1
    return own, rollups


def _tally(tasks: list[dict[str, Any]], own: set[str], rollups: Counter[str]) -> dict[str, int]:
    keys = Counter(task["Pardot_Activity_Key__c"] for task in tasks)
    counted = {task["Pardot_Activity_Key__c"]: int(m.group(1)) for task in tasks
               if (m := _COUNT.match(task.get("Subject") or "")) and task["Pardot_Activity_Key__c"] in rollups}
    return {"missing": len(own - set(keys)) + len(set(rollups) - set(keys)),
            "duplicated": sum(n - 1 for n in keys.values() if n > 1),
            "miscounted": sum(1 for key, n in rollups.items() if key in counted and counted[key] != n),
            "unexpected": len(set(keys) - own - set(rollups))}


async def run_activity_scale(env: dict[str, str], workdir: Path, plan: ScalePlan) -> dict[str, Any]:
    """Run the plan against the broker and app named by ``env``; returns the invariants and figures."""
    began = time.monotonic()
    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0})
    worker_env = {**env, **sandbox.worker_env(), "CONNECT_FLOWS": "activities",
                  "CONNECT_SINK_OBJECTS": "salesforce.Task", "CONNECT_WEB_PORT": str(free_port())}
    workers: list[WorkerProcess] = []
    try:
        whos = [("salesforceContactId", sandbox.org.create("Contact", {"LastName": f"P{i}"})) if i % 2 else
                ("salesforceLeadId", sandbox.org.create("Lead", {"LastName": f"P{i}", "Company": "Acme"}))
                for i in range(plan.prospects)]
        prospects, activities = _events(plan, whos)
        own, rollups = _expected(activities)
        workers.append(await asyncio.to_thread(WorkerProcess(worker_env, workdir / "worker-0.log").start, 120.0))
        topic = f"{env['CONNECT_TOPIC_PREFIX']}src.pardot."
        bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
        await produce_json(bootstrap, topic + "prospect", [(e.record_id, e.model_dump(mode="json")) for e in prospects])
        parts = plan.kills + 1
        for part in range(parts):
            chunk = activities[part * len(activities) // parts:(part + 1) * len(activities) // parts]
            await produce_json(bootstrap, topic + "visitor_activity",
                               [(e.record_id, e.model_dump(mode="json")) for e in chunk])
            if part < plan.kills:
                before = len(sandbox.org.records("Task"))
                while len(sandbox.org.records("Task")) <= before:
                    await asyncio.sleep(0.2)
                await asyncio.to_thread(workers[-1].kill)
                workers.append(await asyncio.to_thread(
                    WorkerProcess(worker_env, workdir / f"worker-{part + 1}.log").start, 120.0))
        deadline = time.monotonic() + max(300.0, plan.activities / 20)
        while (tally := _tally(sandbox.org.records("Task"), own, rollups)) != dict.fromkeys(INVARIANTS, 0):
            assert workers[-1].proc is not None and workers[-1].proc.poll() is None, workers[-1].log_text()[-3000:]
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(5.0)  # what the sinks still had in hand lands, or shows as a duplicate
        tally = _tally(sandbox.org.records("Task"), own, rollups)
        writes = connector_writes(sandbox)[0]
        kinds = {kind.split(" ", 1)[1]: n for kind, n in
                 sandbox.org.snapshot(with_records=False)["api"]["by_client_kind"].items() if kind.split(" ")[0] == CLIENT}
        calls = sum(kinds.values())
        return {**tally, "activities": plan.activities, "prospects": plan.prospects, "kills": plan.kills,
                "tasks": len(sandbox.org.records("Task")), "own_tasks": len(own), "rollups": len(rollups),
                "salesforce_writes": writes, "salesforce_calls": calls, "calls_by_kind": kinds,
                "calls_per_1000_activities": round(calls * 1000 / plan.activities, 2),
                "seconds": round(time.monotonic() - began, 1)}
    finally:
        for worker in workers:
            await asyncio.to_thread(worker.stop, 30.0)
        await sandbox.stop()

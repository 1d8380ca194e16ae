"""The activities flow at scale: Salesforce calls per 1,000 activities (tests/support/activities_scale.py).

10,000 Pardot visitor activities for 1,000 prospects (half synced with a Contact, half with a
Lead; form submissions, clicks, page views, email opens and sends over three days) published
onto the source topics; a worker runs the activities flow and the Task sink against the
Salesforce sandbox and is SIGKILLed once mid-run (a new one takes over). Then every activity is
looked for in exactly one Task or its roll-up.

Usage: .venv/bin/python bench/activities_bench.py [--activities 10000] [--prospects 1000] [--kills 1]
Uses KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092) and deletes its topics afterwards. The last
line is one JSON object: the invariants (missing, duplicated, miscounted, unexpected: all 0 when
the flow held up), the Salesforce calls, and calls_per_1000_activities (goal: 6 or fewer).
Exit status 0 only when every invariant is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.kafka_admin import KafkaAdmin  # noqa: E402
from tests.support.activities_scale import INVARIANTS, ScalePlan, run_activity_scale  # noqa: E402


async def run(plan: ScalePlan, workdir: Path) -> dict[str, object]:
    token = uuid.uuid4().hex[:8]
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CONNECT_APP_ID": f"bench-activities-{token}",
           "CONNECT_TOPIC_PREFIX": f"bench{token}.", "CONNECT_DATA_DIR": str(workdir / "data"),
           "CONNECT_TOPIC_PARTITIONS": "4", "CONNECT_BROKER_COMMIT_INTERVAL": "1"}
    try:
        return await run_activity_scale(env, workdir, plan)
    finally:
        async with KafkaAdmin(bootstrap, client_id="bench-cleanup") as kafka:
            await kafka.delete_topics([t for t in await kafka.list_topics() if token in t], wait=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activities", type=int, default=10_000)
    parser.add_argument("--prospects", type=int, default=1_000)
    parser.add_argument("--kills", type=int, default=1)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    plan = ScalePlan(activities=args.activities, prospects=args.prospects, kills=args.kills, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="activities-bench-") as workdir:
        result = asyncio.run(run(plan, Path(workdir)))
    print(json.dumps(result))
    return 0 if all(result[name] == 0 for name in INVARIANTS) else 1


if __name__ == "__main__":
    sys.exit(main())

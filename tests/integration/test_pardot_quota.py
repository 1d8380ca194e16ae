"""One Pardot budget for every process, through Kafka (connectors/pardot/quota.py), on the real broker.

Two members see each other's counts and split the five concurrent requests; then two Pardot
source processes and a worker writing Pardot list memberships run against a sandbox whose daily
quota is 60: the worker writes 40 memberships, and the sources poll until the business unit as a
whole is at the reserve (each counting alone would have gone on to 54 calls of its own, past the
quota), and Pardot never has to refuse a call for the quota.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from connectors.budget import ApiBudget
from connectors.envelope import SinkCommand
from connectors.kafka_io import KafkaTarget
from connectors.pardot.client import DailyUsage
from connectors.pardot.quota import SharedQuota
from sandbox.run import Sandbox
from tests.support.flows import flow_rig
from tests.support.kafka import produce_json
from tests.support.names import unique

pytestmark = pytest.mark.integration
BU = "0Uv000000000001AAA"


async def until(what: str, check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f}s"
        await asyncio.sleep(0.2)


async def test_two_members_add_up_their_counts_and_split_the_slots(kafka_bootstrap: str) -> None:
    target = KafkaTarget(kafka_bootstrap, prefix=unique("quota") + ".", partitions=1)
    members = []
    for name in ("a", "b"):
        budget = ApiBudget("pardot", max_concurrent=5)
        usage = DailyUsage(budget, daily_limit=100)
        budget.sharing = SharedQuota(target, budget, usage, BU, 5, member=name, interval=0.2)
        members.append((budget, usage))
    (budget_a, usage_a), (budget_b, usage_b) = members
    try:
        await asyncio.gather(budget_a.wait_for_budget(), budget_b.wait_for_budget())
        for _ in range(40):
            usage_a.count()
        for _ in range(45):
            usage_b.count()
        await until("each sees the business unit's 85 calls", lambda: budget_a.usage.used == 85 == budget_b.usage.used)
        await until("the slots split 3 + 2", lambda: (budget_a.slots.size, budget_b.slots.size) == (3, 2))
        assert not budget_a.exhausted() and not budget_b.exhausted(), "15 % left: above the 10 % reserve"
        for _ in range(6):
            usage_a.count()
        await until("b holds its calls at a's count too", budget_b.exhausted)
        held = asyncio.ensure_future(budget_b.wait_for_budget())
        await asyncio.sleep(1.0)
        assert not held.done(), "b waits while the business unit is at its reserve"
        held.cancel()
    finally:
        await budget_b.sharing.aclose()
    await until("a member that leaves hands its slots back", lambda: budget_a.slots.size == 5)
    await budget_a.sharing.aclose()


async def test_two_sources_and_a_worker_stop_at_one_daily_quota(app_env: dict[str, str], tmp_path: Path) -> None:
    def settings(sandbox: Sandbox) -> dict[str, str]:
        return {"CONNECT_FLOWS": "activities", "CONNECT_SINK_OBJECTS": "pardot.list_membership",
                "CONNECT_PARDOT_DAILY_LIMIT": "60", "CONNECT_PARDOT_POLL_INTERVAL": "1",
                "CONNECT_PARDOT_ENTITIES": "prospect,visitor_activity"}

    async with flow_rig(app_env, tmp_path, settings, ()) as rig:
        limits = f"{rig.sandbox.urls['pardot']}/__admin/limits"
        async with httpx.AsyncClient() as admin:
            await admin.put(limits, json={"daily_limit": 60})

            async def pardot_limits() -> dict[str, int]:
                return (await admin.get(limits)).json()

            newsletter = rig.sandbox.pardot.create_list("Newsletter")["id"]
            people = [rig.sandbox.pardot.create_prospect(f"p{i}@example.com")["id"] for i in range(40)]
            commands = [SinkCommand(system="pardot", object="list_membership", external_id_field="listId:prospectId",
                                    external_id=f"{newsletter}:{p}", version=1, record_key=f"p{p}",
                                    fields={"listId": newsletter, "prospectId": p}) for p in people]
            for name in ("source-pardot-a", "source-pardot-b"):
                rig.sources.start(name, "source", "pardot")
            await produce_json(app_env["KAFKA_BOOTSTRAP_SERVERS"], f"{app_env['CONNECT_TOPIC_PREFIX']}sink.pardot.list_membership",
                               [(c.partition_key, c.model_dump(mode="json")) for c in commands])
            seen: list[int] = []
            deadline = time.monotonic() + 90
            while len(seen) < 8 or seen[-1] != seen[-8] or seen[-1] < 45:
                rig.sources.check()
                assert time.monotonic() < deadline, f"the calls did not come to a stop: {seen[-10:]}"
                await asyncio.sleep(1.0)
                seen.append((await pardot_limits())["used_today"])
            final = await pardot_limits()
        members = len(rig.sandbox.pardot.memberships(list_id=newsletter))
        print(f"\npardot quota: {final['used_today']} calls of 60 by two sources and a worker "
              f"({members} of 40 memberships written), peak {final['peak_in_flight']} in flight")
        assert 45 <= final["used_today"] < 60, "stopped together near the 10 % reserve, before the quota"
        assert final["refused_quota"] == 0, "Pardot never had to refuse a call for the quota"
        assert final["peak_in_flight"] <= 5
        assert members == 40, "the worker wrote its 40 first: the sources stopped at the count that includes them"

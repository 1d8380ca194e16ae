"""The Pardot source on the real broker, against the Pardot sandbox, authenticated by a token from
the Salesforce sandbox (Pardot accepts the org's Salesforce tokens only)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx
import pytest

from connectors.kafka_io import KafkaTarget, PositionStore
from connectors.pardot.source import PardotSource
from sandbox.faults import Faults
from sandbox.pardot import PardotStore
from sandbox.pardot import start_server as start_pardot
from sandbox.salesforce.oauth import OAuthConfig, token_checker
from sandbox.salesforce.org import Org
from sandbox.salesforce.rest import start_rest_server
from stream_app.run_source import backfill, build
from stream_app.settings import Settings, load_settings
from tests.support.kafka import read_json
from tests.support.names import unique

pytestmark = pytest.mark.integration

BU = "0Uv5e0000000001AAA"


@dataclass
class Stack:
    sf_url: str
    sf_faults: Faults
    url: str
    store: PardotStore
    admin: httpx.AsyncClient


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    org, sf_faults, oauth = Org(), Faults(), OAuthConfig()
    sf_runner, sf_url = await start_rest_server("127.0.0.1", 0, org, sf_faults, oauth=oauth)
    store = PardotStore()
    runner, url = await start_pardot("127.0.0.1", 0, store, Faults(), business_unit_ids={BU},
                                     token_validator=token_checker(org, sf_faults, oauth))
    async with httpx.AsyncClient(base_url=url, timeout=30) as admin:
        yield Stack(sf_url, sf_faults, url, store, admin)
    await runner.cleanup()
    await sf_runner.cleanup()


def settings_for(stack: Stack, target: KafkaTarget, **extra: Any) -> Settings:
    """Real validated settings, polling fast."""
    return load_settings(**{
        "kafka_bootstrap_servers": target.bootstrap, "topic_prefix": target.prefix,
        "topic_partitions": target.partitions, "salesforce_login_url": stack.sf_url,
        "salesforce_auth_flow": "client_credentials", "salesforce_client_id": "pardot-tims-connect",
        "salesforce_client_secret": "s3cret", "pardot_base_url": stack.url, "pardot_business_unit_id": BU,
        "pardot_poll_interval": 0.3, "pardot_overlap_seconds": 5.0, **extra})


@pytest.fixture
def target(kafka_bootstrap: str) -> KafkaTarget:
    return KafkaTarget(kafka_bootstrap, prefix=unique("pardot") + ".", partitions=2)


@asynccontextmanager
async def running(source: PardotSource) -> AsyncIterator[PardotSource]:
    await source.start()
    task = asyncio.create_task(source.run())
    try:
        yield source
    finally:
        source.stop()
        await asyncio.wait_for(task, 30)
        await source.close()


def expected(store: PardotStore, collection: str, entity: str) -> set[str]:
    rows = store.snapshot()["records"][collection]
    return {f"pardot:{entity}:{row['id']}:{row['updatedAt']}" for row in rows}


def ids(values: list[dict[str, Any]]) -> set[str]:
    return {v["event_id"] for v in values}


async def read(target: KafkaTarget, entity: str, wanted: set[str], **kw: Any) -> list[dict[str, Any]]:
    return await read_json(target.bootstrap, target.topic(f"src.pardot.{entity}"),
                           until=lambda vs: ids(vs) >= wanted, timeout=60, **kw)


async def test_prospects_and_visitor_activities_land_in_kafka(stack: Stack, target: KafkaTarget) -> None:
    ada, _ = stack.store.submit_form("ada@example.com", {"firstName": "Ada", "lastName": "Lovelace"})
    stack.store.submit_form("grace@example.com", {"firstName": "Grace", "company": "Navy"})
    gone = stack.store.create_prospect("gone@example.com", firstName="Gone")
    stack.store.delete("prospects", gone["id"])
    source = build("pardot", settings_for(stack, target))
    assert isinstance(source, PardotSource)

    async with running(source):
        prospects = await read(target, "prospect", expected(stack.store, "prospects", "prospect"))
        activities = await read(target, "visitor_activity",
                                expected(stack.store, "visitor-activities", "visitor_activity"))
        limits = (await stack.admin.get("/__admin/limits")).json()

        await stack.admin.post("/__admin/expire-tokens")
        stack.sf_faults.expire_tokens()
        stack.store.update_prospect(ada["id"], jobTitle="Countess")
        after = await read(target, "prospect", expected(stack.store, "prospects", "prospect"), quiet_after=1.0)

    by_email = {v["fields"]["email"]: v for v in prospects}
    assert by_email["ada@example.com"]["fields"]["score"] == 50 and by_email["ada@example.com"]["change_type"]
    assert by_email["gone@example.com"]["change_type"] == "DELETE"
    assert {v["fields"]["typeName"] for v in activities} == {"Form Handler"} and len(activities) == 2
    assert ada["id"] in {v["fields"]["prospectId"] for v in activities}
    assert limits["used_today"] >= 2 and set(limits["in_flight"]) == {BU}, "every call named the business unit"
    assert source.client.tokens.refreshes >= 1, "an expired Salesforce token was refreshed"
    titles = [v["fields"]["jobTitle"] for v in after if v["fields"]["email"] == "ada@example.com"]
    assert titles[-1] == "Countess"
    assert len(after) == len(ids(after)), "nothing was published twice"

    saved = await _positions(target)
    assert saved["pardot:prospect"]["updated_at"] and saved["pardot:visitor_activity"]["id"]


async def test_a_restarted_source_carries_on_from_its_saved_position(stack: Stack, target: KafkaTarget) -> None:
    for i in range(5):
        stack.store.create_prospect(f"p{i}@example.com", firstName=f"P{i}")
    settings = settings_for(stack, target, pardot_entities="prospect", pardot_page_size=2)
    async with running(build("pardot", settings)):
        await read(target, "prospect", expected(stack.store, "prospects", "prospect"))
    stack.store.create_prospect("p9@example.com", firstName="P9")
    async with running(build("pardot", settings)):
        values = await read(target, "prospect", expected(stack.store, "prospects", "prospect"), quiet_after=1.0)
    assert len(values) == 6 == len(ids(values))


async def test_backfill_publishes_snapshots_and_records_the_live_position(stack: Stack, target: KafkaTarget) -> None:
    for i in range(7):
        stack.store.create_prospect(f"s{i}@example.com", firstName=f"S{i}")
    settings = settings_for(stack, target)
    assert await backfill("pardot", settings, ["prospect"]) == 7
    values = await read(target, "prospect", expected(stack.store, "prospects", "prospect"))
    assert {v["change_type"] for v in values} == {"SNAPSHOT"} and len(values) == 7
    newest = max(stack.store.snapshot()["records"]["prospects"], key=lambda r: (r["updatedAt"], r["id"]))
    saved = (await _positions(target))["pardot:prospect"]
    assert (saved["updated_at"], saved["id"]) == (newest["updatedAt"], str(newest["id"]))


async def _positions(target: KafkaTarget) -> dict[str, dict[str, Any]]:
    store = PositionStore(target)
    await store.start()
    try:
        return await store.load()
    finally:
        await store.stop()

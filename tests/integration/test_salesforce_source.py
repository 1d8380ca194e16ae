"""The Salesforce CDC source against the real broker and the sandbox org (REST/OAuth + Pub/Sub
over gRPC): nothing lost across SIGKILLs, expired replay ids, gap and overflow events, tokens
that expire and a Pub/Sub outage; malformed events quarantined; the backfill's handover."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
from fastavro import parse_schema, schemaless_writer

from connectors.kafka_io import PositionStore
from connectors.salesforce.auth import TokenProvider
from connectors.salesforce.pubsub import PubSubClient, ReplayPreset
from connectors.salesforce.source import SalesforceCdcSource
from sandbox.salesforce.avro_schemas import build_record
from sandbox.salesforce.org import Org
from stream_app.run_source import backfill, build, kafka_target
from stream_app.settings import Settings, SettingsError, load_settings
from tests.support.sf_sandbox import SandboxThread, SourceProcess, bus_event_ids, read_topics
from tests.support.names import unique

pytestmark = pytest.mark.integration

ENTITIES = ("Lead", "Contact", "Account")
TOPIC_OF = {e: f"src.salesforce.{e}" for e in ENTITIES}


@pytest.fixture
def sandbox() -> Iterator[SandboxThread]:
    thread = SandboxThread(keepalive_seconds=1.0)
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def settings(sandbox: SandboxThread, kafka_bootstrap: str) -> Settings:
    return load_settings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=unique("sf") + ".",
                         **sandbox.settings())


class Running:
    """A source in this process, on this event loop."""

    def __init__(self, settings: Settings) -> None:
        self.source: SalesforceCdcSource = build("salesforce", settings)  # type: ignore[assignment]
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> "Running":
        await self.source.start()
        self.task = asyncio.create_task(self.source.run())
        return self

    async def stop(self) -> None:
        self.source.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)
        await self.source.close()


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[list[Running]]:
    started: list[Running] = []
    yield started
    for item in started:
        if item.task is not None and not item.task.done():
            await item.stop()


async def start_source(settings: Settings, registry: list[Running]) -> SalesforceCdcSource:
    item = await Running(settings).start()
    registry.append(item)
    return item.source


def topics(settings: Settings, *entities: str) -> list[str]:
    return [settings.topic(TOPIC_OF[e]) for e in entities or ENTITIES]


def by_record(values: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for value in values:
        out[value["record_id"]].append(value)
    return out


# -- flow control --------------------------------------------------------------------------------

async def test_subscription_asks_for_more_only_as_events_are_consumed(sandbox: SandboxThread) -> None:
    connection = load_settings(**sandbox.settings()).connector_config("salesforce")
    tokens = TokenProvider(connection)
    client = PubSubClient(connection, tokens)
    for i in range(25):
        sandbox.sandbox.org.create("Contact", {"LastName": f"F{i}"})
    try:
        async with client.subscribe("/data/ContactChangeEvent", ReplayPreset.EARLIEST, batch_size=10) as sub:
            first = await sub.next_batch()
            assert len(first.events) == 10 and sub.requested == 0
            idle = await asyncio.wait_for(sub.next_batch(), 5)  # nothing asked for: only a keep-alive
            assert idle.keepalive and idle.latest_replay_id
            await sub.consumed()
            assert sub.requested == 10
            second = await sub.next_batch()
            await sub.consumed()
            third = await sub.next_batch()
            assert [len(b.events) for b in (second, third)] == [10, 5]
            schema = await client.schema(third.events[0].schema_id)
            await client.schema(third.events[0].schema_id)
            assert client.schema_fetches == 1 and schema.entity == "Contact"
    finally:
        await client.close()
        await tokens.aclose()


# -- 2,000 changes, three SIGKILLs ----------------------------------------------------------------

REQUIRED = {"Lead": {"LastName": "L", "Company": "Acme"}, "Contact": {"LastName": "C"}, "Account": {"Name": "A"}}
UPDATED_FIELD = {"Lead": "Title", "Contact": "Title", "Account": "Description"}


def write_changes(org: Org, total: int, seconds: float, done: threading.Event) -> None:
    """``total`` record changes across the entities (creates, some several to one transaction,
    updates, deletes), spread over about ``seconds``."""
    rng = random.Random(2000)
    live: dict[str, list[str]] = {e: [] for e in ENTITIES}
    made = 0
    pause = seconds / total
    while made < total:
        entity = rng.choice(ENTITIES)
        roll = rng.random()
        if roll < 0.35 or len(live[entity]) < 3:
            count = min(rng.randint(1, 3), total - made)
            with org.transaction() as tx:
                live[entity].extend(tx.create(entity, {**REQUIRED[entity]}) for _ in range(count))
            made += count
        elif roll < 0.92:
            org.update(entity, rng.choice(live[entity]), {UPDATED_FIELD[entity]: f"v{made}"})
            made += 1
        else:
            org.delete(entity, live[entity].pop(rng.randrange(len(live[entity]))))
            made += 1
        time.sleep(pause)
    done.set()


@pytest.mark.timeout(240)
def test_sigkill_three_times_loses_nothing(sandbox: SandboxThread, app_env: dict[str, str], tmp_path: Path) -> None:
    env = {**app_env, **sandbox.env(",".join(ENTITIES))}
    settings = load_settings(kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], topic_prefix=env["CONNECT_TOPIC_PREFIX"])
    source = SourceProcess(env, tmp_path / "source.log").start(channels=len(ENTITIES))
    done = threading.Event()
    writer = threading.Thread(target=write_changes, args=(sandbox.sandbox.org, 2000, 20.0, done), daemon=True)
    writer.start()
    rng = random.Random(3)
    for _ in range(3):
        time.sleep(rng.uniform(2.0, 4.5))
        source.kill()
        source.start(channels=len(ENTITIES))
        assert "from EARLIEST" not in source.log_text(), "a restart did not resume from its saved positions"
    writer.join(120)
    assert done.is_set(), "the writer did not finish"

    expected = bus_event_ids(sandbox.sandbox.bus)
    assert len(expected) == 2000
    values = asyncio.run(read_topics(settings.kafka_bootstrap_servers, topics(settings),
                                     lambda vs: expected <= {v["event_id"] for v in vs}, timeout=120))
    source.stop()

    seen = {v["event_id"] for v in values}
    assert expected - seen == set()
    assert seen - expected == set(), "an event id that matches no change"
    copies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for value in values:
        copies[value["event_id"]].append(value)
    assert all(all(c == group[0] for c in group) for group in copies.values()), "a duplicate that differs"
    print(f"{len(values)} messages for {len(expected)} changes ({len(values) - len(expected)} redelivered)")


# -- expired replay id ----------------------------------------------------------------------------

async def test_expired_replay_id_resubscribes_and_resyncs(
    sandbox: SandboxThread, settings: Settings, running: list[Running], caplog: pytest.LogCaptureFixture,
) -> None:
    org, bus = sandbox.sandbox.org, sandbox.sandbox.bus
    kept = [org.create("Contact", {"LastName": f"Kept{i}"}) for i in range(10)]
    first = await start_source(settings, running)
    await read_topics(settings.kafka_bootstrap_servers, topics(settings, "Contact"), lambda vs: len(vs) >= 10)
    await running[0].stop()

    updated = kept[:4]
    for record_id in updated:
        org.update("Contact", record_id, {"Title": "changed while down"})
    created = [org.create("Contact", {"LastName": f"New{i}", "Title": "created while down"}) for i in range(3)]
    deleted = kept[4]
    org.delete("Contact", deleted)
    bus.retention_seconds = 0.2  # everything retained, including the saved replay id, ages out
    await asyncio.sleep(0.5)
    assert bus.events() == [] and bus.counters["expired"] > 0
    bus.retention_seconds = 3600

    caplog.set_level(logging.WARNING, logger="connectors.salesforce.source")
    second = await start_source(settings, running)

    def resynced(values: list[dict[str, Any]]) -> bool:
        snapshots = {v["record_id"]: v for v in values if v["change_type"] == "SNAPSHOT"}
        return (all(snapshots.get(r, {}).get("fields", {}).get("Title") == "changed while down" for r in updated)
                and all(snapshots.get(r, {}).get("fields", {}).get("Title") == "created while down" for r in created)
                and any(v["change_type"] == "DELETE" and v["record_id"] == deleted for v in values))

    await read_topics(settings.kafka_bootstrap_servers, topics(settings, "Contact"), resynced, timeout=60)
    # Contact's saved replay id expired. Account and Lead saw no change, but each may have saved the
    # bus position from a keep-alive before the stop (timing), and then that one expired as well.
    assert first.replay_expired == 0 and 1 <= second.replay_expired <= len(ENTITIES)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "replay id" in r.getMessage()]
    assert len(errors) == second.replay_expired
    assert [m for m in errors if "/data/ContactChangeEvent" in m and "resyncing Contact over REST" in m]

    org.update("Contact", kept[0], {"Title": "after the resync"})  # the LATEST stream carries on
    await read_topics(settings.kafka_bootstrap_servers, topics(settings, "Contact"), lambda vs: any(
        v["change_type"] == "UPDATE" and v["fields"].get("Title") == "after the resync" for v in vs))

    positions = PositionStore(kafka_target(settings))
    await positions.start()
    try:
        saved = (await positions.load())["salesforce:/data/ContactChangeEvent"]
    finally:
        await positions.stop()
    assert saved["replay_id"] and saved["commit_timestamp"]


# -- gap and overflow -----------------------------------------------------------------------------

async def test_gap_event_refetches_and_overflow_resyncs(
    sandbox: SandboxThread, settings: Settings, running: list[Running],
) -> None:
    org, bus = sandbox.sandbox.org, sandbox.sandbox.bus
    contacts = [org.create("Contact", {"LastName": f"G{i}"}) for i in range(4)]
    leads = [org.create("Lead", {"LastName": f"O{i}", "Company": "Acme"}) for i in range(3)]
    source = await start_source(settings, running)
    await read_topics(settings.kafka_bootstrap_servers, topics(settings), lambda vs: len(vs) >= 7)

    org.listener = None  # changes the event bus never sees: only a gap event tells of them
    org.update("Contact", contacts[0], {"Title": "missed"})
    org.update("Contact", contacts[1], {"Email": "missed@example.com"})
    org.delete("Contact", contacts[2])
    for record_id in leads:
        org.update("Lead", record_id, {"Title": "overflowed"})
    org.listener = bus
    bus.inject_gap("Contact", contacts[:3], "GAP_UPDATE", transaction_key="gap-tx")
    bus.inject_overflow("Lead")

    def refetched(values: list[dict[str, Any]]) -> bool:
        records = by_record(values)
        snap = {r: [v for v in vs if v["change_type"] == "SNAPSHOT"] for r, vs in records.items()}
        return (any(v["fields"].get("Title") == "missed" for v in snap.get(contacts[0], []))
                and any(v["fields"].get("Email") == "missed@example.com" for v in snap.get(contacts[1], []))
                and any(v["change_type"] == "DELETE" for v in records.get(contacts[2], []))
                and all(any(v["fields"].get("Title") == "overflowed" for v in snap.get(r, [])) for r in leads))

    values = await read_topics(settings.kafka_bootstrap_servers, topics(settings), refetched, timeout=60)
    [gone] = [v for v in values if v["record_id"] == contacts[2] and v["change_type"] == "DELETE"]
    assert gone["event_id"] == f"sf:gap-tx:1:{contacts[2]}"
    snapshot = next(v for v in values if v["record_id"] == contacts[0] and v["change_type"] == "SNAPSHOT")
    assert snapshot["full_state"] and snapshot["fields"]["LastName"] == "G0"
    assert snapshot["event_id"].startswith(f"sf:snapshot:Contact:{contacts[0]}:")
    assert source.gap_refetches == 1 and source.resyncs == 1
    assert contacts[3] not in {v["record_id"] for v in values if v["change_type"] == "SNAPSHOT"}


# -- malformed events -----------------------------------------------------------------------------

def contact_payload(org_bus: Any, header: dict[str, Any]) -> bytes:
    schema = org_bus.schema_of("Contact")
    base = {"entityName": "Contact", "recordIds": ["003000000000001AAA"], "changeType": "CREATE",
            "changeOrigin": "", "transactionKey": "tx-bad", "sequenceNumber": 1,
            "commitTimestamp": int(time.time() * 1000), "commitNumber": 1, "commitUser": "005000000000001AAA",
            "nulledFields": [], "diffFields": [], "changedFields": []}
    buffer = io.BytesIO()
    record = {"ChangeEventHeader": {**base, **header}, **build_record(org_bus.fields_of("Contact"), {"LastName": "X"})}
    schemaless_writer(buffer, parse_schema(schema), record)
    return buffer.getvalue()


async def test_malformed_events_are_quarantined_and_the_stream_goes_on(
    sandbox: SandboxThread, settings: Settings, running: list[Running],
) -> None:
    org, bus = sandbox.sandbox.org, sandbox.sandbox.bus
    source = await start_source(settings, running)
    bad_avro = b"\xff\xff\xff\x7fthis is not avro"
    injected = {
        bus.inject_raw("Contact", bad_avro).hex(): "bad Avro payload",
        bus.inject_raw("Contact", contact_payload(bus, {}), schema_id="NoSuchSchema0000").hex(): "unknown schema",
        bus.inject_raw("Contact", contact_payload(bus, {"entityName": "Bogus"})).hex(): "unknown entity 'Bogus'",
        bus.inject_raw("Contact", contact_payload(bus, {"transactionKey": "", "recordIds": []})).hex():
            "missing header fields: transactionKey, recordIds",
    }
    good = org.create("Contact", {"LastName": "AfterTheBadOnes"})

    quarantined = await read_topics(settings.kafka_bootstrap_servers, [settings.topic("quarantine.salesforce")],
                                    lambda vs: len(vs) >= 4)
    published = await read_topics(settings.kafka_bootstrap_servers, topics(settings, "Contact"),
                                  lambda vs: any(v["record_id"] == good for v in vs))
    assert len(quarantined) == 4
    for entry in quarantined:
        expected = injected[entry["context"]["replay_id"]]
        assert entry["source"] == "salesforce" and expected in entry["reason"], entry["reason"]
    bad = next(e for e in quarantined if "bad Avro" in e["reason"])
    assert base64.b64decode(bad["raw"]) == bad_avro
    assert {e["context"]["channel"] for e in quarantined} == {"/data/ContactChangeEvent"}
    assert source.quarantined == 4 and not running[0].task.done()  # type: ignore[union-attr]
    assert [v["record_id"] for v in published] == [good]


# -- expired token and an outage ------------------------------------------------------------------

async def test_token_expiry_and_outage_reconnect_without_loss(
    sandbox: SandboxThread, settings: Settings, running: list[Running],
) -> None:
    org, bus = sandbox.sandbox.org, sandbox.sandbox.bus
    source = await start_source(settings, running)
    for i in range(20):
        org.create("Contact", {"LastName": f"Before{i}"})
    await read_topics(settings.kafka_bootstrap_servers, topics(settings, "Contact"), lambda vs: len(vs) >= 20)

    sandbox.sandbox.faults["salesforce-rest"].expire_tokens()  # the Pub/Sub API trusts the org's tokens
    for i in range(120):  # past half the requested events: the next FetchRequest meets the dead token
        org.create("Contact", {"LastName": f"Expired{i}"})
    await read_topics(settings.kafka_bootstrap_servers, topics(settings, "Contact"), lambda vs: len(vs) >= 140)
    assert source.auth_refreshes >= 1 and source.rest.tokens.refreshes >= 1

    sandbox.sandbox.faults["salesforce-pubsub"].go_down(2.0)
    await asyncio.sleep(0.8)
    for i in range(15):
        org.create("Contact", {"LastName": f"During{i}"})
    expected = bus_event_ids(bus)
    values = await read_topics(settings.kafka_bootstrap_servers, topics(settings, "Contact"),
                               lambda vs: expected <= {v["event_id"] for v in vs}, timeout=60)
    assert source.reconnects >= 1
    assert {v["event_id"] for v in values} == expected


# -- backfill ---------------------------------------------------------------------------------------

async def test_backfill_snapshots_then_the_live_stream_takes_over(
    sandbox: SandboxThread, settings: Settings, running: list[Running],
) -> None:
    org = sandbox.sandbox.org
    existing = [org.create("Contact", {"LastName": f"Old{i}", "Email": f"old{i}@example.com"}) for i in range(2100)]

    assert await backfill("salesforce", settings, ["Contact"]) == len(existing)
    snapshots = await read_topics(settings.kafka_bootstrap_servers, topics(settings, "Contact"),
                                  lambda vs: len(vs) >= len(existing))
    assert {v["record_id"] for v in snapshots} == set(existing)
    assert {v["change_type"] for v in snapshots} == {"SNAPSHOT"}

    # the backfill did not wait for the stream: it handed the channel over with a resync bound
    positions = PositionStore(kafka_target(settings))
    await positions.start()
    try:
        handed = (await positions.load())["salesforce:/data/ContactChangeEvent"]
    finally:
        await positions.stop()
    assert handed["saved_by"] == "backfill" and "replay_id" not in handed and handed["resync_since"] > 0

    # a change between the backfill and the live source's start: read by its resync over REST
    between = org.create("Contact", {"LastName": "BetweenBackfillAndSource"})
    await start_source(settings, running)
    await read_topics(settings.kafka_bootstrap_servers, topics(settings, "Contact"),
                      lambda vs: any(v["record_id"] == between for v in vs))
    # once the stream runs, a change comes through it
    after = org.create("Contact", {"LastName": "AfterBackfill"})
    values = await read_topics(settings.kafka_bootstrap_servers, topics(settings, "Contact"),
                               lambda vs: any(v["record_id"] == after and v["change_type"] == "CREATE" for v in vs))
    live = [v for v in values if v["change_type"] != "SNAPSHOT"]
    assert [v["record_id"] for v in live] == [after], "the stream replayed what the backfill covered"
    with pytest.raises(SettingsError, match="CONNECT_SALESFORCE_ENTITIES: does not list Task"):
        await backfill("salesforce", settings, ["Task"])

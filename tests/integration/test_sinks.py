"""Salesforce sink end to end: the real broker, a `stream-app worker` subprocess, the sandbox.

The Salesforce sandbox runs in this process on its own event loop (a background thread); the
worker reaches it over loopback with the client-credentials flow. Commands are produced the
way a topology does: JSON ``SinkCommand`` keyed by ``partition_key`` on ``sink.salesforce.Contact``.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import httpx
import pytest

from connectors.envelope import SinkCommand
from sandbox.faults import Faults
from sandbox.salesforce.oauth import OAuthConfig
from sandbox.salesforce.org import Org
from sandbox.salesforce.rest import start_rest_server
from tests.support.kafka import create_topics, produce_json, read_json
from tests.support.worker import STREAM_APP, WorkerProcess

pytestmark = pytest.mark.integration

CLIENT_ID, CLIENT_SECRET = "tims-connect-sink", "sink-s3cret"
EXT = "TIMS_Customer_ID__c"
TOPIC = "sink.salesforce.Contact"


class SalesforceSandbox:
    """The sandbox org on a background event loop; the test reads the org directly."""

    def __init__(self) -> None:
        self.org = Org()
        self.faults = Faults()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sf-sandbox", daemon=True)
        self._thread.start()
        oauth = OAuthConfig(required_clients={CLIENT_ID: CLIENT_SECRET})
        self._runner, self.url = self._run(start_rest_server("127.0.0.1", 0, self.org, self.faults, oauth=oauth))

    def _run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)  # type: ignore[arg-type]

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.url}/__admin{path}", **kwargs)
        response.raise_for_status()
        return response.json()

    def env(self) -> dict[str, str]:
        return {
            "CONNECT_SINK_OBJECTS": "salesforce.Contact",
            "CONNECT_SALESFORCE_LOGIN_URL": self.url,
            "CONNECT_SALESFORCE_AUTH_FLOW": "client_credentials",
            "CONNECT_SALESFORCE_CLIENT_ID": CLIENT_ID,
            "CONNECT_SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
        }

    def contacts(self) -> dict[str, dict[str, Any]]:
        return {r[EXT]: r for r in self.org.records("Contact") if r.get(EXT)}

    @property
    def collection_calls(self) -> int:
        return self.org.api.by_kind["collections.upsert"]

    def close(self) -> None:
        self._run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def salesforce() -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox()
    try:
        yield sandbox
    finally:
        sandbox.close()


def ext_id(record: int) -> str:
    return f"T-{record:04d}"


def contact_command(record: int, version: int, last_name: str | None = None) -> tuple[str, dict[str, Any]]:
    command = SinkCommand(
        system="salesforce", object="Contact", external_id_field=EXT, external_id=ext_id(record),
        fields={"LastName": last_name or f"Customer {record}", "Description": f"v{version}",
                "Title": f"title at v{version}"},
        version=version, record_key=f"ck-{record}", source_commit_timestamp=int(time.time() * 1000),
    )
    return command.partition_key, command.model_dump(mode="json")


def interleaved(records: int, versions: int, seed: int = 5) -> list[tuple[str, dict[str, Any]]]:
    """Every version of every record, records interleaved at random, each record's in order."""
    slots = [r for r in range(records) for _ in range(versions)]
    random.Random(seed).shuffle(slots)
    seen: dict[int, int] = {}
    out = []
    for record in slots:
        seen[record] = seen.get(record, 0) + 1
        out.append(contact_command(record, seen[record]))
    return out


async def wait_for(condition: Callable[[], bool], timeout: float, what: str, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout}s\n{worker.log_text()[-3000:]}")
        await asyncio.sleep(0.25)


def all_at(sandbox: SalesforceSandbox, records: int, version: int) -> bool:
    contacts = sandbox.contacts()
    return len(contacts) == records and all(c["Description"] == f"v{version}" for c in contacts.values())


async def stats(worker: WorkerProcess) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{worker.env['CONNECT_WEB_PORT']}/sinks/stats/")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


async def sink_messages(worker: WorkerProcess, system: str, sobject: str) -> dict[str, float]:
    """``connect_sink_messages_total`` of one sink on the worker's /metrics, by outcome."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{worker.env['CONNECT_WEB_PORT']}/metrics")).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("connect_sink_messages_total{") and f'system="{system}"' in line \
                and f'object="{sobject}"' in line:
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            found[outcome] = float(line.rsplit(" ", 1)[1])
    return found


def print_figures(title: str, figures: dict[str, Any]) -> None:
    print(f"\n[{title}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))


async def test_2000_commands_for_500_records_land_in_few_collection_calls(
    app_env: dict[str, str], salesforce: SalesforceSandbox, tmp_path: Path
) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    await create_topics(bootstrap, [prefix + TOPIC])
    commands = interleaved(500, 4)
    await produce_json(bootstrap, prefix + TOPIC, commands)

    started = time.monotonic()
    with WorkerProcess({**app_env, **salesforce.env()}, tmp_path / "worker.log").start() as worker:
        await wait_for(lambda: all_at(salesforce, 500, 4), 90, "every record at its last version", worker)
        elapsed = time.monotonic() - started
        figures = await stats(worker)
        worker.stop()

    sink = figures["sinks"]["sink-salesforce-Contact"]
    print_figures("batching", {
        "commands": len(commands), "records": 500, "collection_calls": salesforce.collection_calls,
        "batches": sink["batches"], "folded": sink["folded"], "written": sink["written"],
        "retries": sink["retries"] + figures["salesforce"]["retries"],
        "refreshes": figures["salesforce"]["auth_refreshes"], "seconds_from_worker_start": round(elapsed, 1)})
    assert salesforce.collection_calls <= 12
    assert sink["received"] == 2000 and sink["dead_lettered"] == 0 and sink["quarantined"] == 0
    assert sink["written"] + sink["folded"] + sink["stale"] == 2000
    assert salesforce.org.count("Contact") == 500
    assert dict(salesforce.org.api.by_client) == {"pardot-tims-connect": salesforce.org.api.used}, \
        "every call carries Sforce-Call-Options: client=<our name>"


async def test_faults_and_expiring_tokens_still_land_every_command_once_in_effect(
    app_env: dict[str, str], salesforce: SalesforceSandbox, tmp_path: Path
) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    salesforce.admin("PUT", "/faults", json={"error_rate": 0.1, "error_kinds": ["503", "429", "lock"],
                                             "paths": ["/services/data/"], "retry_after": 1, "token_ttl": 20,
                                             "seed": 7})  # seed 7: 7 locks and 7 503/429 in the first 120 calls
    commands = interleaved(300, 4, seed=9)
    waves = [commands[i:i + 100] for i in range(0, len(commands), 100)]
    assert len(waves) == 12
    # Small batches: enough calls (~120) for a 10 % fault rate to hit every kind.
    with WorkerProcess({**app_env, **salesforce.env(), "CONNECT_SINK_BATCH_SIZE": "10"},
                       tmp_path / "worker.log").start() as worker:
        for wave in waves:  # spread over ~54 s: a 20 s token expires twice meanwhile
            await produce_json(bootstrap, prefix + TOPIC, wave)
            await asyncio.sleep(4.5)
        await wait_for(lambda: all_at(salesforce, 300, 4), 120, "every record at its last version", worker)
        await asyncio.sleep(2)
        figures = await stats(worker)
        worker.stop()

    sink, client = figures["sinks"]["sink-salesforce-Contact"], figures["salesforce"]
    injected = salesforce.admin("GET", "/faults")["injected"]
    print_figures("faults", {
        "commands": len(commands), "records": 300, "collection_calls": salesforce.collection_calls,
        "injected": injected, "call_retries": client["retries"], "record_retries": sink["retries"],
        "refreshes": client["auth_refreshes"], "tokens_issued": salesforce.org.snapshot(with_records=False)["sessions"],
        "dead_lettered": sink["dead_lettered"]})
    assert injected.get("503", 0) + injected.get("429", 0) > 0 and injected.get("lock", 0) > 0
    assert client["auth_refreshes"] >= 2, "a 20 s token over ~54 s of traffic must have been refreshed twice"
    assert client["retries"] == injected.get("503", 0) + injected.get("429", 0), "each failed call retried once"
    # A lock drawn for a request whose token has just expired is answered 401 instead.
    assert sink["retries"] >= injected["lock"] - client["auth_refreshes"] > 0, "locked records are retried"
    assert sink["dead_lettered"] == 0 and client["gave_up"] == 0
    assert salesforce.org.count("Contact") == 300
    assert sink["written"] + sink["folded"] + sink["stale"] == 1200


async def test_poison_goes_to_the_dlq_older_versions_change_nothing_and_malformed_is_quarantined(
    app_env: dict[str, str], salesforce: SalesforceSandbox, tmp_path: Path
) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    salesforce.admin("POST", "/validation-rules", json={"object": "Contact", "field": "LastName",
                                                        "equals": "POISON", "message": "no poison here"})
    poison_key, poison = contact_command(7, 4, last_name="POISON")
    batch = [contact_command(r, 1) for r in range(20) if r != 7] + [(poison_key, poison)]
    malformed = [("salesforce:Contact:T-0999", {"system": "salesforce", "object": "Contact"}),
                 ("wrong-key", contact_command(998, 1)[1])]
    await create_topics(bootstrap, [prefix + TOPIC])
    await produce_json(bootstrap, prefix + TOPIC, batch + malformed)
    with WorkerProcess({**app_env, **salesforce.env()}, tmp_path / "worker.log").start() as worker:
        dead = await read_json(bootstrap, f"{prefix}dlq.salesforce", until=lambda vs: len(vs) >= 1, timeout=60)
        quarantined = await read_json(bootstrap, f"{prefix}quarantine.sink", until=lambda vs: len(vs) >= 2,
                                      timeout=30)
        await wait_for(lambda: len(salesforce.contacts()) == 19, 30, "the poison's batch-mates", worker)
        for _ in range(40):  # the sandbox shows the records a moment before the worker counts them
            if (first := (await stats(worker))["sinks"]["sink-salesforce-Contact"])["written"] >= 19:
                break
            await asyncio.sleep(0.25)
        calls_for_first_batch = salesforce.collection_calls

        # A newer version lands; an older one sent after it changes nothing.
        await produce_json(bootstrap, prefix + TOPIC, [contact_command(3, 5)])
        await wait_for(lambda: salesforce.contacts()["T-0003"]["Description"] == "v5", 30, "v5", worker)
        landed = salesforce.contacts()["T-0003"]
        await produce_json(bootstrap, prefix + TOPIC, [contact_command(3, 2, last_name="Stale")])
        # The poison, fixed at v6, lands; the v4 taken back from the DLQ then changes nothing.
        await produce_json(bootstrap, prefix + TOPIC, [contact_command(7, 6)])
        await wait_for(lambda: salesforce.contacts().get("T-0007", {}).get("Description") == "v6", 30, "v6", worker)
        await produce_json(bootstrap, prefix + TOPIC, [(dead[0]["partition_key"], dead[0]["command"])])
        sink: dict[str, Any] = {}

        async def two_stale() -> None:
            nonlocal sink
            while (sink := (await stats(worker))["sinks"]["sink-salesforce-Contact"])["stale"] < 2:
                await asyncio.sleep(0.25)

        await asyncio.wait_for(two_stale(), 30)
        dead_after = await read_json(bootstrap, f"{prefix}dlq.salesforce", until=lambda vs: True, quiet_after=2)
        # every message the sink took is accounted for, on /metrics: 20 + 2 malformed + 4 later
        messages: dict[str, float] = {}
        for _ in range(60):
            messages = await sink_messages(worker, "salesforce", "Contact")
            if messages.get("processed", 0) >= 23:
                break
            await asyncio.sleep(0.25)
        worker.stop()

    print_figures("guard+dlq", {"collection_calls": salesforce.collection_calls, **sink})
    [entry] = dead
    assert entry["error_code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION" and "no poison here" in entry["error"]
    assert entry["reason"] == "rejected" and entry["attempts"] == 1
    assert entry["command"]["version"] == 4 and entry["command"]["external_id"] == "T-0007"
    assert entry["first_attempt_at"] <= entry["last_attempt_at"] <= entry["dead_lettered_at"]
    # How many batches the first 22 commands arrive in depends on the fetches; what matters is that
    # the poison costs no extra call: one collection call per batch that had something to write.
    assert calls_for_first_batch == first["calls"] <= first["batches"], \
        "the poison and its batch-mates went in one call per batch"
    assert first["retries"] == 0 and first["written"] == 19, "the batch-mates were not re-sent one by one"
    reasons = sorted(q["reason"] for q in quarantined)
    assert "not a SinkCommand" in reasons[1] and "is not the command's partition_key" in reasons[0]
    assert salesforce.contacts()["T-0003"] == landed, "the older version changed the record"
    assert salesforce.contacts()["T-0007"]["LastName"] == "Customer 7"
    assert len(dead_after) == 1, "the stale command from the DLQ was not even attempted"
    assert sink["stale"] == 2 and sink["dead_lettered"] == 1 and sink["quarantined"] == 2
    assert messages == {"in": 26, "processed": 23, "quarantined": 2, "dead_lettered": 1}, messages


async def test_a_dead_letter_overtaken_by_a_newer_write_lands_only_the_fields_it_alone_carries(
    app_env: dict[str, str], salesforce: SalesforceSandbox, tmp_path: Path
) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    salesforce.admin("POST", "/validation-rules", json={"object": "Contact", "field": "Title",
                                                        "equals": "Chief Poison Officer", "message": "no such title"})

    def command(version: int, **fields: str) -> tuple[str, dict[str, Any]]:
        c = SinkCommand(system="salesforce", object="Contact", external_id_field=EXT, external_id=ext_id(42),
                        fields=fields, version=version, record_key="ck-42")
        return c.partition_key, c.model_dump(mode="json")

    await create_topics(bootstrap, [prefix + TOPIC])
    env = {**app_env, **salesforce.env()}
    with WorkerProcess(env, tmp_path / "worker.log").start() as worker:
        await produce_json(bootstrap, prefix + TOPIC, [command(1, LastName="Lovelace", Title="Engineer", Description="v1")])
        await wait_for(lambda: "T-0042" in salesforce.contacts(), 60, "the record", worker)
        await produce_json(bootstrap, prefix + TOPIC, [command(4, Title="Chief Poison Officer", Description="v4")])
        await read_json(bootstrap, f"{prefix}dlq.salesforce", until=lambda vs: len(vs) >= 1, timeout=60)
        # A newer change to the Description lands while the v4 waits in the DLQ.
        await produce_json(bootstrap, prefix + TOPIC, [command(6, Description="v6")])
        await wait_for(lambda: salesforce.contacts()["T-0042"]["Description"] == "v6", 30, "v6", worker)

        salesforce.admin("DELETE", "/validation-rules")  # the operator fixes the cause
        replay = subprocess.run([STREAM_APP, "dlq", "replay", "--all"], capture_output=True, text=True,
                                timeout=120, env={**os.environ, **env})
        assert replay.returncode == 0, replay.stderr
        await wait_for(lambda: salesforce.contacts()["T-0042"]["Title"] == "Chief Poison Officer", 30,
                       "the title only the dead letter carried", worker)
        sink = (await stats(worker))["sinks"]["sink-salesforce-Contact"]
        worker.stop()

    record = salesforce.contacts()["T-0042"]
    assert record["Description"] == "v6", "the replayed v4 overwrote the newer v6"
    assert record["LastName"] == "Lovelace"
    assert sink["trimmed"] == 1 and sink["dead_lettered"] == 1 and sink["stale"] == 0, sink


async def test_a_worker_killed_mid_batch_loses_nothing_and_leaves_no_older_value(
    app_env: dict[str, str], salesforce: SalesforceSandbox, tmp_path: Path
) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    await create_topics(bootstrap, [prefix + TOPIC])
    commands = interleaved(400, 4, seed=3)
    await produce_json(bootstrap, prefix + TOPIC, commands)
    salesforce.admin("PUT", "/faults", json={"latency_ms": 700, "paths": ["/composite/"]})
    env = {**app_env, **salesforce.env(), "CONNECT_SINK_BATCH_SIZE": "200"}
    log = tmp_path / "worker.log"

    first = WorkerProcess(env, log, "first").start()
    await wait_for(lambda: salesforce.collection_calls >= 2, 60, "writes under way", first)
    first.kill()
    at_kill = salesforce.contacts()
    calls_at_kill = salesforce.collection_calls
    salesforce.admin("PUT", "/faults", json={})

    with WorkerProcess(env, log, "second").start() as second:
        await wait_for(lambda: all_at(salesforce, 400, 4), 120, "every record at its last version", second)
        await asyncio.sleep(3)
        figures = await stats(second)
        second.stop()

    sink = figures["sinks"]["sink-salesforce-Contact"]
    print_figures("kill", {"commands": len(commands), "records": 400, "landed_before_kill": len(at_kill),
                           "calls_before_kill": calls_at_kill, "calls_total": salesforce.collection_calls,
                           "second_worker": sink})
    finished_at_kill = len(at_kill) == 400 and all(c["Description"] == "v4" for c in at_kill.values())
    assert at_kill and not finished_at_kill, "the kill did not come mid-run"
    assert all_at(salesforce, 400, 4) and salesforce.org.count("Contact") == 400
    assert sink["dead_lettered"] == 0 and sink["quarantined"] == 0

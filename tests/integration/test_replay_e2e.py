"""Replays and the DLQ end to end, as an operator runs them (issue #8, "Done means").

The real broker, the sandbox (in this process, so the test can count every write our client
makes), a worker and the three sources as subprocesses, and the `stream-app` CLI:

- every topic the worker consumes replayed from offset 0 after the flows ran: no record in
  Salesforce, TIMS or Pardot changes, and our client makes no write at all;
- a TIMS outage long enough for writes to dead-letter, fixed, then the sink topic replayed from
  a time in the middle: the missed change lands, what had landed is not written again;
- a Salesforce validation rule rejects a write: a DLQ entry, the rule removed, the entry replayed
  by id lands, purge empties the DLQ.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import httpx
import pytest

from connectors import kafka_admin
from sandbox.run import Sandbox, start_sandbox
from sandbox.demo import PEOPLE, _play
from tests.support.kafka import app_lag, read_json
from tests.support.worker import STREAM_APP, WorkerProcess

pytestmark = pytest.mark.integration

SINKS = "salesforce.Contact,salesforce.Account,tims.customer"
SINK_TOPICS = [f"sink.{s}" for s in SINKS.split(",")]
SOURCE_TOPICS = ["src.salesforce.Lead", "src.salesforce.Contact", "src.salesforce.Account",
                 "src.pardot.prospect", "src.tims.customer"]
#: every topic the worker's consumer group reads: sources, TIMS links, the flow's own, sinks
GROUP_TOPICS = [*SOURCE_TOPICS, "links.tims", "customer_sync.identify", "customer_sync.merge", *SINK_TOPICS]
OUR_SALESFORCE_CLIENT = "pardot-tims-connect"
OUR_TIMS_CLIENT = "connect"
_SALESFORCE_WRITES = {"create", "update", "delete", "upsert", "collections.create", "collections.update",
                      "collections.delete", "collections.upsert"}
_TIMS_WRITES = ("create", "update", "replace", "upsert", "delete", "batch_upsert")


class Connect:
    """What an operator runs: the sandbox's systems, one worker, the three sources, the CLI."""

    def __init__(self, sandbox: Sandbox, env: dict[str, str], logs: Path) -> None:
        self.sandbox, self.env, self.logs = sandbox, env, logs
        self.worker = WorkerProcess(env, logs / "worker.log")
        self.sources: dict[str, subprocess.Popen[bytes]] = {}
        self.tims_calls: Counter[str] = Counter()
        self._count_tims_writes()

    # -- processes
    @property
    def bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def prefix(self) -> str:
        return self.env["CONNECT_TOPIC_PREFIX"]

    @property
    def group(self) -> str:
        return self.env["CONNECT_APP_ID"]

    async def start_worker(self) -> None:
        await asyncio.to_thread(self.worker.start, 120)

    async def stop_worker(self) -> None:
        code = await asyncio.to_thread(self.worker.stop)
        assert code == 0, f"worker stopped with {code}:\n{self.worker.log_text()[-3000:]}"

    def start_sources(self) -> None:
        for system in ("salesforce", "tims", "pardot"):
            with open(self.logs / f"source-{system}.log", "ab") as log:
                self.sources[system] = subprocess.Popen(
                    [STREAM_APP, "source", system], env={**os.environ, **self.env}, stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    async def stop_sources(self) -> None:
        for proc in self.sources.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.sources.values():
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.sources.clear()

    def check(self) -> None:
        """Raise when a process died (``_play`` calls it while it waits)."""
        proc = self.worker.proc
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{self.worker.log_text()[-4000:]}")
        for name, source in self.sources.items():
            if source.poll() is not None:
                raise RuntimeError(f"source {name} exited with {source.returncode}; see {self.logs}")

    async def kill_all(self) -> None:
        if self.worker.proc is not None and self.worker.proc.poll() is None:
            await asyncio.to_thread(self.worker.kill)
        await self.stop_sources()

    async def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(subprocess.run, [STREAM_APP, *args], capture_output=True, text=True,
                                       timeout=timeout, env={**os.environ, **self.env})

    # -- what the systems hold and what we wrote
    def _count_tims_writes(self) -> None:
        store = self.sandbox.tims
        for name in _TIMS_WRITES:
            original = getattr(store, name)

            def counted(*args: Any, _name: str = name, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
                if kwargs.get("modified_by") == OUR_TIMS_CLIENT:
                    self.tims_calls[_name] += 1
                return _original(*args, **kwargs)

            setattr(store, name, counted)

    def writes(self) -> dict[str, int]:
        """API write calls our client made so far: Salesforce (by the org's accounting) and TIMS
        (every write request, including upserts that change nothing)."""
        api = self.sandbox.org.snapshot(with_records=False)["api"]["by_client_kind"]
        salesforce = sum(n for client_kind, n in api.items()
                         if client_kind.split(" ")[0] == OUR_SALESFORCE_CLIENT
                         and client_kind.split(" ")[-1] in _SALESFORCE_WRITES)
        return {"salesforce": salesforce, "tims": sum(self.tims_calls.values())}

    def snapshot(self) -> dict[str, Any]:
        """Every record of the three systems, system fields (LastModifiedDate, version ...) included."""
        org = self.sandbox.org
        return copy.deepcopy({
            "salesforce": {entity: {r["Id"]: r for r in org.records(entity, include_deleted=True)}
                           for entity in ("Lead", "Contact", "Account")},
            "tims": {c["customer_id"]: c for c in self.sandbox.tims.all("customers")},
            "tims_changes": len(self.sandbox.tims.changes),
            "pardot": self.sandbox.pardot.snapshot()["records"]["prospects"],
        })

    # -- waiting
    async def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if check():
                return
            await asyncio.sleep(0.3)
        raise AssertionError(f"not after {timeout:.0f}s: {what}")

    async def group_lag(self) -> int:
        return await app_lag(self.bootstrap, self.group, self.prefix, GROUP_TOPICS)

    async def settle(self, quiet: float = 4.0, timeout: float = 90) -> None:
        """Wait until the worker has read everything and no write happened for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            before = self.writes()
            if await self.group_lag() == 0:
                await asyncio.sleep(quiet)
                if self.writes() == before and await self.group_lag() == 0:
                    return
            else:
                await asyncio.sleep(0.5)
        raise AssertionError(f"the systems did not settle within {timeout:.0f}s (lag {await self.group_lag()})")

    async def sink_stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{self.worker.env['CONNECT_WEB_PORT']}/sinks/stats/")
            return response.json()["sinks"]

    async def dlq_entries(self, system: str) -> list[dict[str, Any]]:
        topic = f"{self.prefix}dlq.{system}"
        return await read_json(self.bootstrap, topic, until=lambda values: True, timeout=10, quiet_after=0.5)


def connect_env(sandbox: Sandbox, app_env: dict[str, str], **overrides: str) -> dict[str, str]:
    return {**app_env, **sandbox.worker_env(), "CONNECT_SINK_OBJECTS": SINKS, "CONNECT_SINK_LINGER": "0.2",
            "CONNECT_TIMS_POLL_INTERVAL": "1", "CONNECT_PARDOT_POLL_INTERVAL": "1",
            "CONNECT_METRICS_LAG_INTERVAL": "3600", **overrides}


@pytest.fixture
async def connect(app_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    """The sandbox, a worker and the sources, after flows 1 and 2 of the demo ran and the
    systems went quiet. Parametrize it indirectly with a dict to add worker settings."""
    overrides: dict[str, str] = getattr(request, "param", None) or {}
    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0},
                                  keepalive_seconds=2)
    system = Connect(sandbox, connect_env(sandbox, app_env, **overrides), tmp_path)
    try:
        await system.start_worker()
        system.start_sources()
        lines: list[str] = []
        assert await _play(sandbox, system, lines.append, 90), "\n".join(lines)
        await system.settle()
        yield system
    finally:
        await system.kill_all()
        await sandbox.stop()


def first_onboarded() -> Any:
    return next(p for p in PEOPLE if p.qualified and "tims" in p.ids)


# -- (a) replay everything from offset 0 ---------------------------------------------------------

async def test_replaying_every_topic_from_offset_zero_changes_nothing_and_writes_nothing(connect: Connect) -> None:
    before, writes_before = connect.snapshot(), connect.writes()
    assert len(before["tims"]) == 3 and writes_before["salesforce"] > 0 and writes_before["tims"] > 0
    sinks_before = await kafka_admin.end_offsets(connect.bootstrap, [connect.prefix + t for t in SINK_TOPICS])
    await connect.stop_worker()

    replayed: dict[str, int] = {}
    for topic in GROUP_TOPICS:
        result = await connect.cli("replay", "--topic", topic, "--from-offset", "0")
        assert result.returncode == 0, result.stderr
        replayed[topic] = int(re.search(r"total: (\d+) messages to reprocess", result.stdout).group(1))
    assert all(replayed[t] > 0 for t in GROUP_TOPICS), replayed
    assert await connect.group_lag() == sum(replayed.values())

    await connect.start_worker()
    await connect.settle(quiet=5)

    assert connect.writes() == writes_before, "a replay made our client write"
    assert connect.snapshot() == before, "a replay changed a record"
    # The replay really went through both safety layers: the flow dropped every replayed source
    # event as already seen, and the sinks took every replayed command and found it applied.
    stats = await connect.sink_stats()
    for sink in SINK_TOPICS:
        name = "sink-" + sink.removeprefix("sink.").replace(".", "-")
        assert stats[name]["received"] == replayed[sink], (sink, stats[name])
        assert stats[name]["stale"] == replayed[sink] and stats[name]["written"] == 0, (sink, stats[name])
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{connect.worker.env['CONNECT_WEB_PORT']}/metrics")).text

    def total(name: str, labels: str = "") -> float:
        return sum(float(v) for v in re.findall(rf"^{name}_total\{{[^}}]*{labels}[^}}]*\}} (\S+)$", metrics, re.M))

    # the customer sync's events (the orders flow reads the Account events too, docs/adr/0021)
    customer_sync = 'flow="customer_sync"'
    assert total("connect_flow_events_in", customer_sync) == sum(replayed[t] for t in SOURCE_TOPICS)
    # each replayed event reached its golden record at least once (more: the flow topics were
    # replayed too) and was recognised; no command came out of any flow
    assert total("connect_flow_duplicates", customer_sync) >= total("connect_flow_events_in", customer_sync)
    assert total("connect_flow_commands_out") == 0
    assert await kafka_admin.end_offsets(connect.bootstrap, [connect.prefix + t for t in SINK_TOPICS]) == sinks_before


# -- (b) a sink outage, fixed, then a replay from a time in the middle ---------------------------

#: sink retries that give up within a second, so the outage needs to last only that long
FAST_DLQ = {"CONNECT_SINK_MAX_ATTEMPTS": "2", "CONNECT_SINK_RETRY_BASE_DELAY": "0.1",
            "CONNECT_SINK_RETRY_MAX_DELAY": "0.5"}


@pytest.mark.parametrize("connect", [FAST_DLQ], indirect=True, ids=["fast-dlq"])
async def test_after_a_tims_outage_a_replay_from_a_time_in_the_middle_lands_the_missed_changes(connect: Connect) -> None:
    person = first_onboarded()
    contact_id, tims_id = person.ids["contact"], person.ids["tims"]
    tims, org = connect.sandbox.tims, connect.sandbox.org
    middle = time.time()
    await asyncio.sleep(1.1)

    # After the middle and before the outage: a change that lands.
    org.update("Contact", contact_id, {"Phone": "(415) 555-0199"})
    await connect.wait_for("the phone reaches TIMS", lambda: tims.customer(tims_id).get("phone") == "+14155550199")
    await connect.settle()
    landed_writes = connect.writes()

    # TIMS's customer API answers 503 for longer than the sink's attempts last.
    async with httpx.AsyncClient(base_url=connect.sandbox.urls["tims"]) as admin:
        outage = {"error_rate": 1.0, "error_kinds": ["503"], "retry_after": 0, "paths": ["/v1/customers"]}
        assert (await admin.put("/__admin/faults", json=outage)).status_code == 200
        org.update("Contact", contact_id, {"MailingCity": "Leeds", "MailingPostalCode": "LS1 4AP"})
        deadline = time.monotonic() + 60
        while True:
            stats = (await connect.sink_stats())["sink-tims-customer"]
            if stats["dead_lettered"] >= 1:
                break
            assert time.monotonic() < deadline, f"nothing dead-lettered: {stats}"
            await asyncio.sleep(0.5)
        assert (await admin.post("/__admin/faults/reset")).status_code == 200  # TIMS is back
    [entry] = await connect.dlq_entries("tims")
    assert entry["reason"] == "retries_exhausted" and entry["command"]["external_id"] == tims_id
    assert (tims.customer(tims_id).get("billing_address") or {}).get("city") != "Leeds"  # missed

    # The operator stops the workers and replays the TIMS sink from the middle. (Not the source
    # topics: the golden record remembers those events, and it recorded the city as sent to TIMS
    # when it emitted the command, so a source replay re-emits nothing; the sink topic holds the
    # command itself, and the version guard lets through only what never landed.)
    await connect.stop_worker()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle)) + "Z"
    dry = await connect.cli("replay", "--topic", "sink.tims.customer", "--from-time", stamp, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "total: 2 messages to reprocess" in dry.stdout, dry.stdout  # the landed and the missed command
    done = await connect.cli("replay", "--topic", "sink.tims.customer", "--from-time", stamp)
    assert done.returncode == 0, done.stderr
    await connect.start_worker()

    await connect.wait_for("the missed change lands in TIMS",
                           lambda: (tims.customer(tims_id).get("billing_address") or {}).get("city") == "Leeds")
    await connect.settle()
    customer = tims.customer(tims_id)
    assert customer["billing_address"]["postal_code"] == "LS1 4AP" and customer["phone"] == "+14155550199"
    # Exactly one TIMS write for the two replayed commands: the one that had landed is skipped by
    # the version guard; nothing else is written anywhere.
    after = connect.writes()
    assert after["tims"] == landed_writes["tims"] + 1, (landed_writes, after)
    assert after["salesforce"] == landed_writes["salesforce"], (landed_writes, after)
    stats = (await connect.sink_stats())["sink-tims-customer"]
    assert stats["received"] == 2 and stats["stale"] == 1 and stats["written"] == 1, stats
    assert len(tims.all("customers")) == 3

    # The dead letter is now redundant: replaying it changes nothing (the version guard), purge.
    replayed = await connect.cli("dlq", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    await connect.settle()
    assert connect.writes() == after
    purged = await connect.cli("dlq", "purge", "--yes")
    assert purged.returncode == 0 and "purged 1 DLQ entries" in purged.stdout, purged.stdout + purged.stderr


# -- (c) a validation rule rejects a write: DLQ, fix, replay by id, purge --------------------------

async def test_a_write_refused_by_a_validation_rule_is_replayed_from_the_dlq_once_the_rule_is_gone(
        connect: Connect) -> None:
    person = first_onboarded()
    contact_id, account_id, tims_id = person.ids["contact"], person.ids["account"], person.ids["tims"]
    org, tims = connect.sandbox.org, connect.sandbox.tims
    rest = httpx.AsyncClient(base_url=connect.sandbox.urls["salesforce-rest"])
    try:
        rule = (await rest.post("/__admin/validation-rules", json={
            "object": "Contact", "field": "TIMS_Payment_Terms__c", "equals": "COD",
            "message": "COD customers need the finance team's approval"})).json()
        before = connect.writes()

        tims.update_customer(tims_id, payment_terms="COD")  # a TIMS user
        await connect.wait_for("the Account (no rule) gets COD",
                               lambda: (org.get("Account", account_id) or {}).get("TIMS_Payment_Terms__c") == "COD")
        listed = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = await connect.cli("dlq", "list")
            if "1 entries" in listed.stdout:
                break
            await asyncio.sleep(1)
        assert listed is not None and "1 entries" in listed.stdout, listed and listed.stdout
        assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in listed.stdout and f"Id={contact_id}" in listed.stdout
        entry_id = re.search(r"^(salesforce:\d+:\d+)\s", listed.stdout, re.M).group(1)
        assert (org.get("Contact", contact_id) or {}).get("TIMS_Payment_Terms__c") != "COD"

        # The cause is fixed: the rule goes. Replaying by id lands the write.
        assert (await rest.delete(f"/__admin/validation-rules/{rule['id']}")).json() == {"removed": 1}
        await connect.settle()
        fixed = connect.writes()
        replayed = await connect.cli("dlq", "replay", entry_id)
        assert replayed.returncode == 0 and "replayed 1 commands" in replayed.stdout, replayed.stdout + replayed.stderr
        await connect.wait_for("the replayed write lands on the Contact",
                               lambda: (org.get("Contact", contact_id) or {}).get("TIMS_Payment_Terms__c") == "COD")
        await connect.settle()
        assert connect.writes()["salesforce"] == fixed["salesforce"] + 1  # one upsert, nothing else
        assert connect.writes()["tims"] == before["tims"]  # TIMS's own edit is never written back

        purged = await connect.cli("dlq", "purge", "--yes")
        assert purged.returncode == 0 and "purged 1 DLQ entries" in purged.stdout, purged.stdout + purged.stderr
        empty = await connect.cli("dlq", "list")
        assert empty.returncode == 0 and "0 entries" in empty.stdout
    finally:
        await rest.aclose()

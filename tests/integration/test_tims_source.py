"""The TIMS source on the real broker against the TIMS sandbox server: polling, restarts (in-process
and a SIGKILLed ``stream-app source tims``), downtime, webhooks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Coroutine

import httpx
import pytest

from connectors.kafka_io import KafkaTarget, PositionStore, Publisher
from connectors.retry import RetryPolicy
from connectors.tims.client import TimsClient
from connectors.tims.config import TimsConfig
from connectors.tims.source import POSITION_KEY, TimsSource
from connectors.tims.webhook import TimsWebhookSource, sign
from sandbox.faults import Faults
from sandbox.tims import DEFAULT_API_KEYS, TimsStore, start_server
from stream_app.run_source import backfill
from stream_app.settings import load_settings
from stream_app.shutdown import EXIT_SHUTDOWN_DEADLINE
from tests.support.kafka import private_broker, read_json
from tests.support.worker import STREAM_APP
from tests.support.names import unique

pytestmark = pytest.mark.integration

KEY = next(k for k, v in DEFAULT_API_KEYS.items() if v == "connect")
SECRET = "whsec-integration"


@dataclass
class Tims:
    url: str
    store: TimsStore
    faults: Faults
    http: httpx.AsyncClient


@pytest.fixture
async def tims() -> AsyncIterator[Tims]:
    store, faults = TimsStore(), Faults()
    runner, url = await start_server("127.0.0.1", 0, store, faults, webhook_backoff_seconds=0.05,
                                     webhook_timeout_seconds=5)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
        yield Tims(url, store, faults, http)
    await runner.cleanup()


@pytest.fixture
def target(kafka_bootstrap: str) -> KafkaTarget:
    return KafkaTarget(kafka_bootstrap, prefix=unique("tims") + ".", partitions=2)


def make_source(tims: Tims, target: KafkaTarget, cls: type[TimsSource] = TimsSource, **options: Any) -> TimsSource:
    config = TimsConfig(base_url=tims.url, api_key=KEY,
                        **{"poll_interval": 0.2, "overlap_seconds": 5.0, "page_size": 7, **options})
    client = TimsClient(config, policy=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.5))
    backoff = RetryPolicy(base_delay=0.2, max_delay=1.0)
    if cls is TimsWebhookSource:
        return TimsWebhookSource(Publisher(target), PositionStore(target), client, config, secret=SECRET)
    return cls(Publisher(target), PositionStore(target), client, config, backoff=backoff)


@asynccontextmanager
async def running(source: TimsSource) -> AsyncIterator[TimsSource]:
    await source.start()
    task = asyncio.create_task(source.run())
    try:
        yield source
    finally:
        source.stop()
        await asyncio.wait_for(task, 30)
        await source.close()


def event_ids(values: list[dict[str, Any]]) -> Counter[str]:
    return Counter(v["event_id"] for v in values)


def feed_ids(store: TimsStore, entity: str = "customer") -> set[str]:
    return {f"tims:{c.change_id}" for c in store.changes if c.entity == entity}


async def read_ids(target: KafkaTarget, wanted: set[str], entity: str = "customer", timeout: float = 60,
                   quiet_after: float = 0.0) -> list[dict[str, Any]]:
    return await read_json(target.bootstrap, target.topic(f"src.tims.{entity}"),
                           until=lambda vs: set(event_ids(vs)) >= wanted, timeout=timeout, quiet_after=quiet_after)


async def test_every_change_is_published_with_stable_ids_and_a_restart_resumes(tims: Tims,
                                                                                target: KafkaTarget) -> None:
    for i in range(20):
        tims.store.upsert_customer(f"001A{i:04d}", name=f"Customer {i}", email=f"c{i}@example.com")
    ours = [{"external_id": f"001B{i:04d}", "name": f"Ours {i}"} for i in range(5)]
    assert (await tims.http.post("/v1/customers/batch-upsert", json={"records": ours})).status_code == 200
    tims.store.create("items", {"sku": "ARGON-80", "name": "Argon 80 cu ft"})

    async with running(make_source(tims, target)) as first:
        values = await read_ids(target, feed_ids(tims.store))
        before_restart = set(event_ids(values))
        items = await read_ids(target, feed_ids(tims.store, "item"), entity="item")
    assert first.published == 26
    for value in values:
        assert value["event_id"] == f"tims:{value['position']['change_id']}"
        assert value["record_id"] == value["fields"]["customer_id"] and value["full_state"]
    origins = Counter(v["change_origin"] for v in values)
    assert origins == {"tims-ui": 20, "connect": 5}, "our own writes are recognisable by modified_by"
    assert items[0]["record_id"] == "IT000001" and items[0]["change_type"] == "CREATE"

    saved = (await _load_positions(target))[POSITION_KEY]
    newest = tims.store.changes[-1]
    assert (saved["change_id"], saved["cursor"] is not None) == (newest.change_id, True)

    # while no source runs: an insert, an update, a delete, and a commit stamped before the newest
    tims.store.upsert_customer("001C0001", name="while stopped")
    tims.store.update_customer("C000001", name="renamed in TIMS")
    tims.store.delete("customers", "C000002")
    tims.store.upsert_customer("001L0001", name="late commit", at=newest.updated_at - timedelta(seconds=1))
    async with running(make_source(tims, target)) as second:
        values = await read_ids(target, feed_ids(tims.store), quiet_after=1.5)
    counts = event_ids(values)
    assert set(counts) == feed_ids(tims.store)
    assert max(counts.values()) == 1, "a clean restart repeats nothing"
    assert second.late == 1 and second.published == 4
    new = [v for v in values if v["event_id"] not in before_restart]
    kinds = {v["fields"]["name"]: v["change_type"] for v in new}
    assert kinds["renamed in TIMS"] == "UPDATE" and kinds["late commit"] == "CREATE"
    assert sorted(kinds.values()) == ["CREATE", "CREATE", "DELETE", "UPDATE"]


async def test_tims_downtime_is_waited_out_and_nothing_is_missed(tims: Tims, target: KafkaTarget) -> None:
    tims.store.upsert_customer("001D0000", name="before")
    async with running(make_source(tims, target)) as source:
        await read_ids(target, feed_ids(tims.store))
        assert (await tims.http.post("/__admin/down", params={"seconds": "3"})).status_code == 200
        for i in range(1, 11):
            tims.store.upsert_customer(f"001D{i:04d}", name=f"during downtime {i}")
        values = await read_ids(target, feed_ids(tims.store), timeout=60)
    assert source.outages >= 1 and tims.faults.injected["down"] >= 1
    assert set(event_ids(values)) == feed_ids(tims.store) and len(feed_ids(tims.store)) == 11


async def test_webhook_deliveries_are_verified_counted_and_published(tims: Tims, target: KafkaTarget) -> None:
    source = make_source(tims, target, TimsWebhookSource, source_mode="webhook", webhook_port=0, reconcile_interval=0.2)
    assert isinstance(source, TimsWebhookSource)
    async with running(source):
        url = await _wait_for(lambda: source.receiver.url)
        body = b'{"change_id": "000000000999"}'
        async with httpx.AsyncClient() as http:
            forged = await http.post(url, content=body, headers={
                "X-TIMS-Timestamp": "1780000000", "X-TIMS-Signature": sign("not-the-secret", "1780000000", body),
                "X-TIMS-Delivery-Id": "forged-1"})
        assert forged.status_code == 401
        assert source.receiver.rejected["bad_signature"] == 1

        config = await tims.http.put("/__admin/webhook", json={"url": url, "secret": SECRET})
        assert config.status_code == 200
        tims.store.upsert_customer("001W0001", name="pushed by TIMS")
        status = (await tims.http.post("/__admin/webhook/drain")).json()
        values = await read_ids(target, feed_ids(tims.store), quiet_after=1.0)
    assert status["delivered"] == 1 and status["failed"] == 0
    assert source.receiver.accepted == 1
    assert source.published == 1, "the feed read skips what the webhook delivered"
    [event] = values
    assert event["event_id"] == f"tims:{tims.store.changes[0].change_id}"
    assert event["fields"]["name"] == "pushed by TIMS"


async def test_webhook_mode_reads_the_feed_for_deliveries_tims_gave_up_on(tims: Tims, target: KafkaTarget) -> None:
    source = make_source(tims, target, TimsWebhookSource, source_mode="webhook", webhook_port=0, reconcile_interval=0.3)
    assert isinstance(source, TimsWebhookSource)
    async with running(source):
        url = await _wait_for(lambda: source.receiver.url)
        await tims.http.put("/__admin/webhook", json={"url": url, "secret": "a-stale-secret", "max_attempts": 1})
        tims.store.upsert_customer("001W0002", name="undeliverable")
        status = (await tims.http.post("/__admin/webhook/drain")).json()
        values = await read_ids(target, feed_ids(tims.store))
    assert status["failed"] == 1 and source.receiver.rejected["bad_signature"] == 1
    assert [v["fields"]["name"] for v in values] == ["undeliverable"]


async def test_a_sigkilled_source_process_loses_nothing_after_a_restart(app_env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    sandbox = ThreadedTims()
    try:
        for i in range(30):
            sandbox.call(lambda i=i: sandbox.store.upsert_customer(f"001K{i:04d}", name=f"Before kill {i}"))
        env = {**os.environ, **app_env, "CONNECT_TIMS_BASE_URL": sandbox.url, "CONNECT_TIMS_API_KEY": KEY}
        bootstrap, topic = app_env["KAFKA_BOOTSTRAP_SERVERS"], f"{app_env['CONNECT_TOPIC_PREFIX']}src.tims.customer"
        log = tmp_path / "source.log"

        first = _spawn(env, log)
        try:
            await read_json(bootstrap, topic, until=lambda vs: set(event_ids(vs)) >= sandbox.feed_ids(), timeout=90)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(30)
        assert first.returncode == -signal.SIGKILL

        for i in range(30, 45):
            sandbox.call(lambda i=i: sandbox.store.upsert_customer(f"001K{i:04d}", name=f"After kill {i}"))
        second = _spawn(env, log)
        try:
            values = await read_json(bootstrap, topic, until=lambda vs: set(event_ids(vs)) >= sandbox.feed_ids(),
                                     timeout=90, quiet_after=2.0)
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(30)
        assert second.returncode == 0, log.read_text()[-3000:]
        counts = event_ids(values)
        assert set(counts) == sandbox.feed_ids() and len(counts) == 45
        target = KafkaTarget(bootstrap, app_env["CONNECT_TOPIC_PREFIX"])
        saved = (await _load_positions(target))[POSITION_KEY]
        assert saved["change_id"] == sandbox.call(lambda: sandbox.store.changes[-1].change_id)
    finally:
        sandbox.stop()


async def test_a_source_whose_broker_is_gone_exits_within_its_grace_on_sigterm(tmp_path: Path) -> None:
    """As a worker (test_worker_shutdown.py): the batch in flight waits for acks from a broker
    that is gone; past CONNECT_SHUTDOWN_GRACE the process ends with code 75, and its position
    was not saved past what Kafka acked."""
    grace, margin = 8, 15
    sandbox = ThreadedTims()
    try:
        sandbox.call(lambda: [sandbox.store.upsert_customer(f"001G{i:05d}", name=f"Backlog {i}") for i in range(3000)])
        async with private_broker() as broker:
            run = unique()
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "CONNECT_APP_ID": f"test-{run}",
                   "CONNECT_TOPIC_PREFIX": f"t{run}.", "CONNECT_DATA_DIR": str(tmp_path / "data"),
                   "CONNECT_TIMS_BASE_URL": sandbox.url, "CONNECT_TIMS_API_KEY": KEY,
                   "CONNECT_SHUTDOWN_GRACE": str(grace)}
            log = tmp_path / "source.log"
            source = _spawn(env, log)
            try:
                await read_json(broker.bootstrap, f"t{run}.src.tims.customer", until=lambda vs: len(vs) >= 1, timeout=90)
                pid = broker.status().pid
                assert pid is not None
                os.killpg(pid, signal.SIGKILL)  # while the source publishes the backlog
                await asyncio.sleep(1)
                asked = time.monotonic()
                os.killpg(source.pid, signal.SIGTERM)
                try:
                    code = await asyncio.to_thread(source.wait, grace + margin)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"the source still ran {grace + margin} s after SIGTERM (grace {grace} s)")
                took = time.monotonic() - asked
            finally:
                if source.poll() is None:
                    os.killpg(source.pid, signal.SIGKILL)
                    source.wait(10)
    finally:
        sandbox.stop()
    text = log.read_text(errors="replace")
    assert f"shutdown: SIGTERM received; stopping, and exiting with code {EXIT_SHUTDOWN_DEADLINE}" in text
    assert code == EXIT_SHUTDOWN_DEADLINE, f"exit code {code} after {took:.1f} s: the stop did not need the deadline"
    assert "source tims: the batch in flight" in text


async def test_backfill_snapshots_then_the_live_source_hands_over_without_a_gap(tims: Tims,
                                                                                  target: KafkaTarget) -> None:
    for i in range(12):
        tims.store.upsert_customer(f"001S{i:04d}", name=f"Existing {i}")
    tims.store.update_customer("C000003", name="edited before the backfill")
    settings = load_settings(kafka_bootstrap_servers=target.bootstrap, topic_prefix=target.prefix,
                             topic_partitions=target.partitions, tims_base_url=tims.url, tims_api_key=KEY)
    assert await backfill("tims", settings, ["customer"]) == 12

    snapshot = await read_json(target.bootstrap, target.topic("src.tims.customer"), until=lambda vs: len(vs) >= 12)
    assert {v["change_type"] for v in snapshot} == {"SNAPSHOT"}
    edited = next(v for v in snapshot if v["record_id"] == "C000003")
    assert edited["event_id"] == "tims:customer:C000003:v2" and edited["fields"]["name"] == "edited before the backfill"
    handover = (await _load_positions(target))[POSITION_KEY]
    assert handover["cursor"] and handover["change_id"] == tims.store.changes[-1].change_id

    async with running(make_source(tims, target)) as live:
        tims.store.upsert_customer("001S9999", name="after the backfill")
        values = await read_ids(target, feed_ids(tims.store) - _older_than_backfill(tims.store), quiet_after=1.0)
    assert live.published == 1, "changes the snapshot covered are not published again"
    assert [v["fields"]["name"] for v in values if v["change_type"] != "SNAPSHOT"] == ["after the backfill"]


# -- helpers ---------------------------------------------------------------------------------

def _older_than_backfill(store: TimsStore) -> set[str]:
    return {f"tims:{c.change_id}" for c in store.changes[:-1]}


class ThreadedTims:
    """The sandbox on its own event loop in a thread, so it serves while the test blocks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tims-sandbox", daemon=True)
        self.thread.start()
        self.store, self.faults = TimsStore(), Faults()
        self.runner, self.url = self._run(start_server("127.0.0.1", 0, self.store, self.faults))

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the sandbox's loop (the store belongs to it)."""
        async def run() -> Any:
            return fn()
        return self._run(run())

    def feed_ids(self) -> set[str]:
        return self.call(lambda: feed_ids(self.store))

    def stop(self) -> None:
        self._run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([STREAM_APP, "source", "tims"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


async def _load_positions(target: KafkaTarget) -> dict[str, dict[str, Any]]:
    store = PositionStore(target)
    await store.start()
    try:
        return await store.load()
    finally:
        await store.stop()


async def _wait_for(probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    for _ in range(int(timeout / 0.05)):
        value = probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not met")

"""The shop source on the real broker against the Shopify simulator: webhooks delivered twice,
webhooks lost and found again by reconciliation, forged and hostile deliveries, the throttle,
and a restart that resumes from the saved position."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import httpx
import pytest

from connectors.kafka_io import KafkaTarget, PositionStore, Publisher
from connectors.retry import RetryPolicy
from connectors.shop.config import ShopConfig
from connectors.shop.shopify import Shopify, ShopifyClient, sign
from connectors.shop.source import ShopSource, position_key
from sandbox.faults import FaultConfig
from sandbox.shop import ACCESS_TOKEN, ShopServer, WebhookSettings, start_server
from stream_app.run_source import backfill
from stream_app.settings import load_settings
from tests.support.kafka import read_json
from tests.support.names import unique

pytestmark = pytest.mark.integration

SECRET = "shpss_integration"


@pytest.fixture
async def shop() -> AsyncIterator[tuple[ShopServer, str]]:
    server = ShopServer()
    runner, url = await start_server("127.0.0.1", 0, server)
    yield server, url
    await runner.cleanup()


@pytest.fixture
def target(kafka_bootstrap: str) -> KafkaTarget:
    return KafkaTarget(kafka_bootstrap, prefix=unique("shop") + ".", partitions=2)


def make_source(url: str, target: KafkaTarget, **options: Any) -> ShopSource:
    config = ShopConfig(shop_url=url, access_token=ACCESS_TOKEN, webhook_secret=SECRET, webhook_port=0,
                        shop_domain="connect-sandbox.myshopify.com", **{"reconcile_interval": 3600.0, "overlap_seconds": 5.0, "page_size": 4, **options})
    client = ShopifyClient(config, policy=RetryPolicy(max_attempts=6, base_delay=0.05, max_delay=5.0))
    return ShopSource(Publisher(target), PositionStore(target), Shopify(config, client), config,
                      backoff=RetryPolicy(base_delay=0.2, max_delay=1.0))


@asynccontextmanager
async def running(source: ShopSource) -> AsyncIterator[ShopSource]:
    await source.start()
    task = asyncio.create_task(source.run())
    try:
        for _ in range(100):
            if source.receiver is None or source.receiver.url:
                break
            await asyncio.sleep(0.05)
        yield source
    finally:
        source.stop()
        await asyncio.wait_for(task, 30)
        await source.close()


def new_order(server: ShopServer, sku: str = "AR-125") -> dict[str, Any]:
    return server.store.create_order(email="ada@example.com", line_items=[{"sku": sku, "quantity": 1, "price": "61.50"}])


async def read_orders(target: KafkaTarget, count: int, quiet_after: float = 1.0, timeout: float = 60) -> list[dict[str, Any]]:
    return await read_json(target.bootstrap, target.topic("src.shop.order"), until=lambda vs: len(vs) >= count,
                           timeout=timeout, quiet_after=quiet_after)


def hooks(server: ShopServer, source: ShopSource, **options: Any) -> None:
    assert source.receiver is not None and source.receiver.url
    server.webhooks.configure(WebhookSettings(url=source.receiver.url, secret=SECRET, backoff_seconds=0.05, **options))


async def test_a_webhook_delivered_twice_lands_once(shop: tuple[ShopServer, str], target: KafkaTarget) -> None:
    server, url = shop
    async with running(make_source(url, target, reconcile_interval=0.5)) as source:
        hooks(server, source, duplicate_rate=1.0, topics=["orders/create"])
        made = new_order(server)
        await server.webhooks.drain()
        values = await read_orders(target, 1, quiet_after=2.0)  # two reconciliation passes, too
    assert server.webhooks.counts["duplicated"] == 1 and source.receiver.answers["duplicate"] == 1
    # one event: one event id, which downstream dedupes on. A reconciliation pass that runs while
    # the webhook's record is on its way finds the same state and publishes it under the same id.
    events = {v["event_id"]: v for v in values}
    assert [v["record_id"] for v in events.values()] == [made["id"]]
    assert len(values) == 1 + source.reconciled and source.reconciled <= 1, ([v["position"] for v in values],
                                                                             source.reconciled)
    [event] = [v for v in values if v["position"]["via"] != "reconciliation"]
    assert event["position"]["via"] == "webhook orders/create" and event["change_type"] == "CREATE"
    assert event["fields"]["line_items"] == [{"sku": "AR-125", "title": "AR-125", "quantity": 1, "price": "61.50"}]


async def test_a_missed_webhook_is_caught_by_reconciliation(shop: tuple[ShopServer, str], target: KafkaTarget) -> None:
    server, url = shop
    async with running(make_source(url, target, reconcile_interval=0.5)) as source:
        hooks(server, source, drop_rate=1.0)
        made = [new_order(server) for _ in range(3)]
        await server.webhooks.drain()
        values = await read_orders(target, 3, quiet_after=1.5)
        # and one the platform gave up on after its retries
        server.webhooks.configure(WebhookSettings(url=source.receiver.url + "-gone", secret=SECRET, max_attempts=2,
                                                  backoff_seconds=0.01))
        late = server.store.update("Order", made[0]["id"], displayFinancialStatus="REFUNDED")
        await server.webhooks.drain()
        values = await read_orders(target, 4, quiet_after=1.5)
    assert server.webhooks.counts["dropped"] >= 3 and server.webhooks.counts["gave_up"] == 1
    assert Counter(v["record_id"] for v in values) == {made[0]["id"]: 2, made[1]["id"]: 1, made[2]["id"]: 1}
    assert {v["position"]["via"] for v in values} == {"reconciliation"}
    assert values[-1]["fields"]["financial_status"] == "refunded" and values[-1]["fields"]["updated_at"] == late["updatedAt"]
    assert source.reconciled == 4
    assert len({v["event_id"] for v in values}) == 4


async def test_forged_and_hostile_deliveries(shop: tuple[ShopServer, str], target: KafkaTarget) -> None:
    server, url = shop
    order = server.store.rest("Order", new_order(server))
    body = httpx.Request("POST", "/", json=order).content
    headers = {"X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": "w-forged", "Content-Type": "application/json",
               "X-Shopify-Shop-Domain": server.store.domain}
    async with running(make_source(url, target, reconcile_interval=3600.0)) as source, \
            httpx.AsyncClient(timeout=10) as http:
        await read_orders(target, 1)  # the first reconciliation pass
        published = source.published
        hook = source.receiver.url

        forged = await http.post(hook, content=body, headers={**headers, "X-Shopify-Hmac-Sha256": sign("guess", body)})
        unsigned = await http.post(hook, content=body, headers=headers)
        elsewhere = await http.post(hook, content=body, headers={
            **headers, "X-Shopify-Hmac-Sha256": sign(SECRET, body), "X-Shopify-Shop-Domain": "rival.myshopify.com"})
        assert (forged.status_code, unsigned.status_code, elsewhere.status_code) == (401, 401, 401)

        huge = b"{" + b" " * (300 * 1024) + b"}"
        too_big = await http.post(hook, content=huge, headers={**headers, "X-Shopify-Hmac-Sha256": sign(SECRET, huge)})
        assert too_big.status_code == 413

        garbage = b"<html>not json</html>"
        signed = {**headers, "X-Shopify-Hmac-Sha256": sign(SECRET, garbage)}
        answers = [await http.post(hook, content=garbage, headers={**signed, "X-Shopify-Webhook-Id": f"w-{i}"})
                   for i in range(2)]
        assert [a.status_code for a in answers] == [400, 400]

        not_an_order = b'{"id": "1", "note": "hello"}'
        wrong = await http.post(hook, content=not_an_order,
                                headers={**headers, "X-Shopify-Webhook-Id": "w-3",
                                         "X-Shopify-Hmac-Sha256": sign(SECRET, not_an_order)})
        assert wrong.status_code == 422 and "id" in wrong.json()["detail"]
        assert source.published == published, "nothing refused was published"
    quarantined = await read_json(target.bootstrap, target.topic("quarantine.shop"), until=lambda vs: len(vs) >= 2,
                                  quiet_after=1.0)
    assert [q["reason"].split(":")[0] for q in quarantined] == ["not_json", "not_the_resource"]
    assert quarantined[0]["context"]["topic"] == "orders/create"
    answers = source.receiver.answers
    assert (answers["bad_signature"], answers["missing_headers"], answers["other_shop"]) == (1, 1, 1)


async def test_reconciliation_respects_the_throttle_and_a_restart_resumes(shop: tuple[ShopServer, str],
                                                                         target: KafkaTarget) -> None:
    server, url = shop
    made = [new_order(server)["id"] for _ in range(12)]
    server.bucket.configure(maximum=300, restore_rate=40, available=0)
    async with running(make_source(url, target, entities="order")) as first:
        values = await read_orders(target, 12)
    client = first.platform.client  # type: ignore[attr-defined]
    assert client.cost.throttled >= 1 and client.cost.waited > 0, "the empty bucket was waited for"
    assert sorted(v["record_id"] for v in values) == sorted(made)

    store = PositionStore(target)
    await store.start()
    try:
        window = (await store.load())[position_key("order")]
    finally:
        await store.stop()
    assert window["cursor"] is None and window["since"] < window["newest"], "saved after the pass, with its overlap"

    newer = new_order(server)["id"]
    async with running(make_source(url, target, entities="order")):
        values = await read_orders(target, 13, quiet_after=1.5)
    assert newer in {v["record_id"] for v in values}
    # the overlap window is read again after a restart: repeats keep their event ids (the flows drop them)
    assert max(Counter(v["event_id"] for v in values).values()) <= 2
    assert len({v["event_id"] for v in values}) == 13


async def test_backfill_snapshots_every_record_and_hands_over(shop: tuple[ShopServer, str], target: KafkaTarget) -> None:
    server, url = shop
    for i in range(7):
        server.store.create_customer(email=f"c{i}@example.com", first_name=f"C{i}")
    made = [new_order(server)["id"] for _ in range(5)]
    settings = load_settings(kafka_bootstrap_servers=target.bootstrap, topic_prefix=target.prefix,
                             topic_partitions=target.partitions, shop_shop_url=url, shop_access_token=ACCESS_TOKEN,
                             shop_page_size=3)
    assert await backfill("shop", settings, ["order", "customer"]) == 12
    snapshot = await read_orders(target, 5)
    assert {v["change_type"] for v in snapshot} == {"SNAPSHOT"} and sorted(v["record_id"] for v in snapshot) == sorted(made)
    store = PositionStore(target)
    await store.start()
    try:
        saved = await store.load()
    finally:
        await store.stop()
    assert saved[position_key("order")]["since"] and saved[position_key("customer")]["since"], "the live position first"

    async with running(make_source(url, target, entities="order", reconcile_interval=0.3)):
        after = new_order(server)["id"]
        values = await read_json(target.bootstrap, target.topic("src.shop.order"),
                                 until=lambda vs: after in {v["record_id"] for v in vs}, quiet_after=1.0)
    live = [v for v in values if v["change_type"] != "SNAPSHOT"]
    new_ids = {v["event_id"] for v in live} - {v["event_id"] for v in snapshot}
    assert new_ids == {v["event_id"] for v in live if v["record_id"] == after}, \
        "the overlap window re-reads what the snapshot held, with the same event ids"


async def test_reconciliation_rides_out_errors_and_downtime(shop: tuple[ShopServer, str], target: KafkaTarget) -> None:
    server, url = shop
    made = [new_order(server)["id"] for _ in range(10)]
    server.faults.configure(FaultConfig(error_rate=0.5, error_kinds=["429", "503"], retry_after=0.1, seed=7))
    async with running(make_source(url, target, entities="order", reconcile_interval=0.3)) as source:
        values = await read_orders(target, 10)
        server.faults.reset()
        server.faults.go_down(1.5)
        later = new_order(server)["id"]
        values = await read_json(target.bootstrap, target.topic("src.shop.order"),
                                 until=lambda vs: later in {v["record_id"] for v in vs}, timeout=60)
    injected = server.faults.injected
    assert injected["429"] + injected["503"] > 0 and injected["down"] > 0
    assert {v["record_id"] for v in values} == set(made) | {later}
    assert source.platform.client.stats.retries > 0  # type: ignore[attr-defined]

"""The shop's webhook receiver without a broker: a delivery sent again while the first is still
being published is answered once it is safe, and published once; a failed hand-over is a 503."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import test_utils
from pydantic import SecretStr

from connectors.shop.config import ShopConfig
from connectors.shop.platform import Delivery
from connectors.shop.records import ShopRecord
from connectors.shop.shopify import Shopify, sign
from connectors.shop.webhook import ShopWebhookReceiver

SECRET = "s3cret"
BODY = (b'{"id": 7, "admin_graphql_api_id": "gid://shopify/Customer/7", "email": "ada@example.com",'
        b' "created_at": "2026-01-01T09:00:00-05:00", "updated_at": "2026-01-01T09:00:00-05:00"}')
HEADERS = {"X-Shopify-Hmac-Sha256": sign(SECRET, BODY), "X-Shopify-Topic": "customers/create",
           "X-Shopify-Webhook-Id": "w-7", "Content-Type": "application/json"}


def receiver(publish: Any) -> ShopWebhookReceiver:
    shopify = Shopify(ShopConfig(shop_url="http://127.0.0.1:1", access_token=SecretStr("t"),
                                 webhook_secret=SecretStr(SECRET)))

    async def quarantine(reason: str, raw: str, delivery: Delivery) -> None:
        raise AssertionError("nothing to quarantine")

    return ShopWebhookReceiver(shopify, publish, quarantine)


async def test_a_delivery_sent_twice_at_once_is_published_once() -> None:
    published: list[list[ShopRecord]] = []
    release = asyncio.Event()

    async def publish(records: list[ShopRecord], delivery: Delivery) -> None:
        published.append(records)
        await release.wait()

    hook = receiver(publish)
    async with test_utils.TestClient(test_utils.TestServer(hook.app())) as client:
        first = asyncio.create_task(client.post("/shop/webhook", data=BODY, headers=HEADERS))
        second = asyncio.create_task(client.post("/shop/webhook", data=BODY, headers=HEADERS))
        await asyncio.sleep(0.2)
        assert not first.done() and not second.done(), "neither is answered before the publish is safe"
        release.set()
        answers = [await first, await second]
        assert sorted(a.status for a in answers) == [200, 200]
        assert sorted([(await a.json())["status"] for a in answers]) == ["accepted", "duplicate"]
    assert len(published) == 1 and published[0][0].fields["email"] == "ada@example.com"


async def test_a_failed_hand_over_is_a_503_and_the_redelivery_is_taken() -> None:
    calls = 0

    async def publish(records: list[ShopRecord], delivery: Delivery) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("broker gone")

    hook = receiver(publish)
    async with test_utils.TestClient(test_utils.TestServer(hook.app())) as client:
        assert (await client.post("/shop/webhook", data=BODY, headers=HEADERS)).status == 503
        assert (await client.post("/shop/webhook", data=BODY, headers=HEADERS)).status == 200
    assert calls == 2 and hook.answers["accepted"] == 1


async def test_every_answer_is_counted_in_its_delivery_class() -> None:
    """The classes the metrics report (connect_webhook_deliveries_total): a forged signature is
    refused, a redelivery a duplicate, an unread topic ignored, a broker failure unavailable."""
    failing = True

    async def publish(records: list[ShopRecord], delivery: Delivery) -> None:
        if failing:
            raise ConnectionError("broker gone")

    hook = receiver(publish)
    forged = {**HEADERS, "X-Shopify-Hmac-Sha256": sign("not the secret", BODY)}
    unread = {**HEADERS, "X-Shopify-Topic": "app/uninstalled", "X-Shopify-Webhook-Id": "w-8"}
    async with test_utils.TestClient(test_utils.TestServer(hook.app())) as client:
        assert (await client.post("/shop/webhook", data=BODY, headers=forged)).status == 401
        assert (await client.post("/shop/webhook", data=BODY, headers={"X-Shopify-Topic": "x"})).status == 401
        assert (await client.post("/shop/webhook", data=BODY, headers=HEADERS)).status == 503
        failing = False
        for _ in range(3):
            assert (await client.post("/shop/webhook", data=BODY, headers=HEADERS)).status == 200
        assert (await client.post("/shop/webhook", data=BODY, headers=unread)).status == 200
    assert dict(hook.deliveries) == {"refused": 2, "unavailable": 1, "accepted": 1, "duplicate": 2, "ignored": 1}

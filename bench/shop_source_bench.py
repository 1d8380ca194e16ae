"""The shop source's two paths, timed: N web orders by webhook, then N by reconciliation alone.

Each run starts the Shopify simulator (default bucket: 1,000 points, 50 per second) and one
shop source reading orders; N orders are made in the shop and the run ends when the source has
published N events (every one acked by the broker). The webhook run measures the receiver (one
ack per delivery, deliveries one at a time as the simulator sends them); the reconciliation run
has no webhooks and measures paging under the cost throttle (docs/adr/0033).

Usage: .venv/bin/python bench/shop_source_bench.py [--orders 500]
Uses KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092) and deletes its topics afterwards. The last
line is one JSON object per path: seconds, orders per second, API calls, seconds waited for the
bucket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any

from connectors.kafka_admin import delete_topics, list_topics
from connectors.kafka_io import KafkaTarget, PositionStore, Publisher
from connectors.shop.config import ShopConfig
from connectors.shop.shopify import Shopify, ShopifyClient
from connectors.shop.source import ShopSource
from sandbox.shop import ACCESS_TOKEN, ShopServer, WebhookSettings, start_server

SECRET = "bench-secret"


async def one_path(bootstrap: str, prefix: str, orders: int, webhooks: bool) -> dict[str, Any]:
    server = ShopServer()
    runner, url = await start_server("127.0.0.1", 0, server)
    config = ShopConfig(shop_url=url, access_token=ACCESS_TOKEN, webhook_secret=SECRET if webhooks else None,
                        webhook_port=0, reconcile_interval=3600.0 if webhooks else 0.2, entities="order")
    target = KafkaTarget(bootstrap, prefix=prefix, partitions=2)
    source = ShopSource(Publisher(target), PositionStore(target), Shopify(config, ShopifyClient(config)), config)
    await source.start()
    task = asyncio.create_task(source.run())
    try:
        while source.receiver is not None and source.receiver.url is None:
            await asyncio.sleep(0.05)
        if source.receiver is not None:
            server.webhooks.configure(WebhookSettings(url=source.receiver.url, secret=SECRET))
        started = time.monotonic()
        for i in range(orders):
            server.store.create_order(email=f"buyer{i}@example.com",
                                      line_items=[{"sku": "AR-125", "quantity": 1 + i % 3, "price": "61.50"}])
        while source.published < orders:
            await asyncio.sleep(0.05)
        seconds = time.monotonic() - started
    finally:
        source.stop()
        await task
        await source.close()
        await runner.cleanup()
    client = source.platform.client  # type: ignore[attr-defined]
    return {"path": "webhook" if webhooks else "reconciliation", "orders": orders, "seconds": round(seconds, 1),
            "per_second": round(orders / seconds, 1), "api_calls": client.calls, "throttled": client.cost.throttled,
            "waited_for_bucket": round(client.cost.waited, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=500)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    prefix = f"shopbench{uuid.uuid4().hex[:8]}."
    try:
        results = [await one_path(bootstrap, prefix + "w.", args.orders, True),
                   await one_path(bootstrap, prefix + "r.", args.orders, False)]
    finally:
        await delete_topics(bootstrap, [t for t in await list_topics(bootstrap) if t.startswith(prefix)])
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())

"""The Shopify writer against the simulator (default bucket: 1,000 points, 50 a second): N
fulfilments and N variant prices in batches as the sink hands them over; prints one JSON line
(docs/adr/0035)."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from connectors.envelope import SinkCommand
from connectors.shop.config import ShopConfig
from connectors.shop.shopify import ShopifyClient
from connectors.shop.shopify_writer import ShopifyWriter
from sandbox.shop import ACCESS_TOKEN, ShopServer, start_server


def _command(obj: str, key_field: str, key: str, **fields: object) -> SinkCommand:
    return SinkCommand(system="shop", object=obj, external_id_field=key_field, external_id=key, fields=fields,
                       version=1, record_key=key)


async def main(count: int) -> dict[str, object]:
    server = ShopServer()
    runner, url = await start_server("127.0.0.1", 0, server)
    config = ShopConfig(shop_url=url, access_token=ACCESS_TOKEN)
    writer = ShopifyWriter(config, client=ShopifyClient(config))
    orders = [server.store.create_order(email=f"p{n}@example.com", line_items=[{"sku": "AR-125", "quantity": 1}])
              for n in range(count)]
    products = [server.store.create_product(title=f"P{n}", variants=[{"sku": f"S{n}", "price": "1.00"}])
                for n in range(count)]
    figures: dict[str, object] = {"count": count, "batch": writer.max_batch}
    for name, commands in (
        ("fulfilments", [_command("fulfillment", "order_id", o["id"], tracking_number=f"1Z{n}")
                         for n, o in enumerate(orders)]),
        ("prices", [_command("variant", "id", p["variants"][0]["id"], product_id=p["id"], price="2.00")
                    for p in products]),
    ):
        before, began = server.requests, time.monotonic()
        for start in range(0, len(commands), writer.max_batch):
            outcomes = await writer.write(commands[start:start + writer.max_batch])
            assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
        seconds = time.monotonic() - began
        figures[name] = {"seconds": round(seconds, 2), "per_second": round(count / seconds, 1),
                         "requests": server.requests - before}
    figures["throttled"], figures["waited_seconds"] = writer.client.cost.throttled, round(writer.client.cost.waited, 1)
    await writer.close()
    await runner.cleanup()
    return figures


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))))

"""The Shopify writer against the simulator over HTTP: fulfilments with tracking (once, however
often the command comes), prices grouped by product, stock in one call, refusals as outcomes,
and the cost bucket respected when it runs dry (docs/adr/0035)."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from connectors.envelope import SinkCommand
from connectors.retry import RetryPolicy
from connectors.shop.config import ShopConfig
from connectors.shop.shopify import ShopifyClient
from connectors.shop.shopify_writer import ShopifyWriter
from sandbox.shop import ACCESS_TOKEN, ShopServer, start_server
from sandbox.shop.store import LOCATION

pytestmark = pytest.mark.integration


@pytest.fixture
async def shop() -> AsyncIterator[tuple[ShopServer, ShopifyWriter]]:
    server = ShopServer()
    runner, url = await start_server("127.0.0.1", 0, server)
    config = ShopConfig(shop_url=url, access_token=ACCESS_TOKEN)
    writer = ShopifyWriter(config, client=ShopifyClient(config, policy=RetryPolicy(max_attempts=8, base_delay=0.05,
                                                                                      max_delay=5.0)))
    yield server, writer
    await writer.close()
    await runner.cleanup()


def command(obj: str, key_field: str, key: str, version: int = 1, **fields: Any) -> SinkCommand:
    return SinkCommand(system="shop", object=obj, external_id_field=key_field, external_id=key, fields=fields,
                       version=version, record_key=key)


def fulfil(order: dict[str, Any], number: str) -> SinkCommand:
    return command("fulfillment", "order_id", order["id"], tracking_number=number, tracking_company="UPS")


async def test_fulfilments_carry_tracking_and_happen_once(shop: tuple[ShopServer, ShopifyWriter]) -> None:
    server, writer = shop
    orders = [server.store.create_order(email=f"p{n}@example.com", line_items=[{"sku": "AR-125", "quantity": 1,
                                                                               "price": "61.50"}]) for n in range(3)]
    before = server.requests
    outcomes = await writer.write([fulfil(order, f"1Z{n}") for n, order in enumerate(orders)])
    assert [o.ok for o in outcomes] == [True, True, True]
    assert server.requests - before == 2  # one read of every order, one document of every fulfilment
    for n, order in enumerate(orders):
        stored = server.store.get("Order", order["id"])
        assert stored["displayFulfillmentStatus"] == "FULFILLED"
        assert [t["number"] for f in stored["fulfillments"] for t in f["trackingInfo"]] == [f"1Z{n}"]
    again = await writer.write([fulfil(orders[0], "1Z0")])  # a retry or a replay: nothing twice
    assert again[0].ok and len(server.store.get("Order", orders[0]["id"])["fulfillments"]) == 1


async def test_unknown_order_and_wrong_key_are_outcomes_not_raises(shop: tuple[ShopServer, ShopifyWriter]) -> None:
    server, writer = shop
    order = server.store.create_order(email="ada@example.com", line_items=[{"sku": "AR-125", "quantity": 1}])
    outcomes = await writer.write([fulfil({"id": "gid://shopify/Order/999999"}, "X"),
                                   command("fulfillment", "name", "#1001"), fulfil(order, "1ZOK")])
    assert [(o.ok, o.error_code) for o in outcomes] == [(False, "not_found"), (False, "unsupported"), (True, None)]


async def test_prices_grouped_by_product_and_stock_in_one_call(shop: tuple[ShopServer, ShopifyWriter]) -> None:
    server, writer = shop
    argon = server.store.create_product(title="Argon", variants=[{"sku": "AR-125", "price": "61.50"},
                                                                 {"sku": "AR-300", "price": "99.00"}])
    helium = server.store.create_product(title="Helium", variants=[{"sku": "HE-80", "price": "45.00"}])
    a125, a300 = argon["variants"]
    he80 = helium["variants"][0]
    before = server.requests
    outcomes = await writer.write([
        command("variant", "id", a125["id"], product_id=argon["id"], price="62.25"),
        command("variant", "id", he80["id"], product_id=helium["id"], price="47.10"),
        command("variant", "id", a300["id"], product_id=argon["id"], price="101.00"),
        command("variant", "id", he80["id"], product_id=argon["id"], price="1.00"),  # not argon's variant
    ])
    assert server.requests - before == 1
    # argon's mutation is refused whole for the stray variant (as Shopify's is); helium's goes through
    assert [(o.ok, o.error_code) for o in outcomes] == [(False, "user_error"), (True, None), (False, "user_error"),
                                                         (False, "user_error")]
    assert server.store.get("Product", helium["id"])["variants"][0]["price"] == "47.10"
    ok = await writer.write([command("variant", "id", a125["id"], product_id=argon["id"], price="62.25"),
                             command("variant", "id", a300["id"], product_id=argon["id"], price="101.00")])
    assert all(o.ok for o in ok)
    assert [v["price"] for v in server.store.get("Product", argon["id"])["variants"]] == ["62.25", "101.00"]

    stock = await writer.write([
        command("inventory", "inventory_item_id", a125["inventoryItem"]["id"], location_id=LOCATION, quantity=7),
        command("inventory", "inventory_item_id", he80["inventoryItem"]["id"], location_id=LOCATION, quantity=3),
        command("inventory", "inventory_item_id", a300["inventoryItem"]["id"], location_id=LOCATION, quantity=2.5),
    ])
    assert [(o.ok, o.error_code) for o in stock] == [(True, None), (True, None), (False, "invalid")]
    assert server.store.available(a125["inventoryItem"]["id"]) == 7
    assert server.store.available(he80["inventoryItem"]["id"]) == 3


async def test_a_dry_bucket_is_waited_for(shop: tuple[ShopServer, ShopifyWriter]) -> None:
    server, writer = shop
    server.bucket.configure(maximum=400, restore_rate=100, available=5)
    orders = [server.store.create_order(email=f"p{n}@example.com", line_items=[{"sku": "AR-125", "quantity": 1}])
              for n in range(30)]
    outcomes = await writer.write([fulfil(order, f"1Z{n}") for n, order in enumerate(orders)])
    assert all(o.ok for o in outcomes)
    assert writer.client.cost.throttled + writer.client.cost.waited > 0
    assert all(server.store.get("Order", o["id"])["displayFulfillmentStatus"] == "FULFILLED" for o in orders)


async def test_stock_keyed_by_level_sets_one_item_at_several_locations(shop: tuple[ShopServer, ShopifyWriter]) -> None:
    server, writer = shop
    argon = server.store.create_product(title="Argon", variants=[{"sku": "AR-125", "price": "61.50"}])
    item = argon["variants"][0]["inventoryItem"]["id"]
    east = "gid://shopify/Location/2"
    outcomes = await writer.write([command("inventory", "level", f"{item}@{LOCATION}", quantity=9),
                                   command("inventory", "level", f"{item}@{east}", quantity=4),
                                   command("inventory", "level", f"{item}@gid://shopify/Location/77", quantity=1),
                                   command("inventory", "level", "no-location", quantity=1)])
    # an unknown location refuses the whole call, as Shopify's userErrors do; a key without one is refused alone
    assert [(o.ok, o.error_code) for o in outcomes] == [(False, "user_error")] * 3 + [(False, "invalid")]
    ok = await writer.write([command("inventory", "level", f"{item}@{LOCATION}", quantity=9),
                             command("inventory", "level", f"{item}@{east}", quantity=4)])
    assert all(o.ok for o in ok)
    assert (server.store.inventory[(item, LOCATION)], server.store.inventory[(item, east)]) == (9, 4)

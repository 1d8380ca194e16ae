"""Simulated Shopify shop: the GraphQL Admin API subset the shop connector uses, cost-based
throttling, signed webhooks with retries, duplicates and drops, and fault injection
(docs/adr/0033-ecommerce-shopify-graphql.md).

Typical use::

    server = ShopServer()
    runner, url = await start_server("127.0.0.1", 0, server)
    server.store.create_order(email="ada@example.com", line_items=[{"sku": "AR-125", "quantity": 2, "price": "61.50"}])
"""

from sandbox.shop.server import ACCESS_TOKEN, API_VERSION, ShopServer, start_server
from sandbox.shop.store import ShopStore
from sandbox.shop.webhooks import WebhookSettings, shopify_hmac

__all__ = ["ACCESS_TOKEN", "API_VERSION", "ShopServer", "ShopStore", "WebhookSettings", "shopify_hmac", "start_server"]

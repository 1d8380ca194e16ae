"""The Shopify simulator (sandbox/shop/): the GraphQL Admin API subset, its pagination and cost
throttle, the mutations the writer will use, and webhook delivery (signatures, retries,
duplicates, drops)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx
import pytest
from aiohttp import web

from sandbox.faults import FaultConfig
from sandbox.http import serve
from sandbox.shop import ACCESS_TOKEN, API_VERSION, ShopServer, WebhookSettings, shopify_hmac, start_server

SECRET = "shpss_test"
ORDERS_PAGE = """query Orders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    edges { cursor node { id name updatedAt lineItems(first: 5) { nodes { sku quantity } } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


@dataclass
class Shop:
    server: ShopServer
    url: str
    http: httpx.AsyncClient

    async def graphql(self, document: str, token: str = ACCESS_TOKEN, **variables: Any) -> httpx.Response:
        return await self.http.post(f"{self.url}/admin/api/{API_VERSION}/graphql.json",
                                    json={"query": document, "variables": variables},
                                    headers={"X-Shopify-Access-Token": token})


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    server = ShopServer()
    runner, url = await start_server("127.0.0.1", 0, server)
    async with httpx.AsyncClient(timeout=10) as http:
        yield Shop(server, url, http)
    await runner.cleanup()


def order(shop: Shop, sku: str = "AR-125", quantity: int = 1) -> dict[str, Any]:
    return shop.server.store.create_order(email="ada@example.com", line_items=[
        {"sku": sku, "quantity": quantity, "price": "61.50"}])


async def test_orders_page_by_cursor_and_filter_by_updated_at(shop: Shop) -> None:
    made = [order(shop, quantity=i + 1)["id"] for i in range(7)]
    seen, after, pages = [], None, 0
    while True:
        answer = (await shop.graphql(ORDERS_PAGE, first=3, after=after)).json()
        page = answer["data"]["orders"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == made and pages == 3
    assert answer["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] == 1000.0

    later = shop.server.store.all("Order")[0]
    later["updatedAt"] = "2999-01-01T00:00:00Z"
    newer = (await shop.graphql(ORDERS_PAGE, first=10, query="updated_at:>'2998-12-31T23:59:59Z'")).json()
    assert [e["node"]["id"] for e in newer["data"]["orders"]["edges"]] == [later["id"]]


async def test_pagination_rules_follow_shopify(shop: Shop) -> None:
    missing_first = (await shop.graphql("{ orders { nodes { id } } }")).json()
    assert "first or last" in missing_first["errors"][0]["message"]
    too_many = (await shop.graphql("{ customers(first: 251) { nodes { id } } }")).json()
    assert "between 0 and 250" in too_many["errors"][0]["message"]
    bad_cursor = (await shop.graphql('{ customers(first: 1, after: "nope") { nodes { id } } }')).json()
    assert "cursor" in bad_cursor["errors"][0]["message"]
    unknown_field = (await shop.graphql("{ orders(first: 1) { nodes { id secretField } } }")).json()
    assert "secretField" in unknown_field["errors"][0]["message"]


async def test_the_access_token_is_required(shop: Shop) -> None:
    refused = await shop.graphql("{ orders(first: 1) { nodes { id } } }", token="shpat_wrong")
    assert refused.status_code == 401 and "Invalid API key or access token" in refused.json()["errors"]


async def test_cost_is_metered_and_an_empty_bucket_throttles(shop: Shop) -> None:
    shop.server.bucket.configure(maximum=100, restore_rate=20, available=100)
    first = (await shop.graphql(ORDERS_PAGE, first=10)).json()["extensions"]["cost"]
    assert first["requestedQueryCost"] == 2 + 10 + 10 * (2 + 5) and first["actualQueryCost"] == 2  # an empty connection
    assert first["throttleStatus"]["currentlyAvailable"] >= 98, "charged the actual cost, not the requested"

    shop.server.bucket.configure(available=5)
    throttled = (await shop.graphql(ORDERS_PAGE, first=10)).json()
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED" and "data" not in throttled
    status = throttled["extensions"]["cost"]["throttleStatus"]
    wait = (throttled["extensions"]["cost"]["requestedQueryCost"] - status["currentlyAvailable"]) / status["restoreRate"]
    await asyncio.sleep(wait + 0.2)
    assert "data" in (await shop.graphql(ORDERS_PAGE, first=10)).json()

    too_big = (await shop.graphql(ORDERS_PAGE, first=250)).json()
    assert too_big["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


async def test_mutations_fulfil_reprice_and_restock(shop: Shop) -> None:
    store = shop.server.store
    product = store.create_product(title="Argon 125", variants=[{"sku": "AR-125", "price": "61.50", "available": 10}])
    made = order(shop, quantity=2)
    variant = product["variants"][0]
    item = variant["inventoryItem"]["id"]
    assert store.available(item) == 8

    fulfilment = (await shop.graphql(
        """mutation($fo: ID!) { fulfillmentCreate(fulfillment: {lineItemsByFulfillmentOrder: [{fulfillmentOrderId: $fo}],
             trackingInfo: {number: "1Z999", company: "UPS"}}) { fulfillment { id status } userErrors { message } } }""",
        fo=made["fulfillmentOrders"][0]["id"])).json()["data"]["fulfillmentCreate"]
    assert fulfilment["userErrors"] == [] and fulfilment["fulfillment"]["status"] == "SUCCESS"
    assert store.get("Order", made["id"])["displayFulfillmentStatus"] == "FULFILLED"
    again = (await shop.graphql(
        """mutation($fo: ID!) { fulfillmentCreate(fulfillment: {lineItemsByFulfillmentOrder: [{fulfillmentOrderId: $fo}]})
             { fulfillment { id } userErrors { message } } }""", fo=made["fulfillmentOrders"][0]["id"])).json()
    assert again["data"]["fulfillmentCreate"]["userErrors"], "a closed fulfillment order is not fulfilled twice"

    price = (await shop.graphql(
        """mutation($p: ID!, $v: [ProductVariantsBulkInput!]!) { productVariantsBulkUpdate(productId: $p, variants: $v)
             { productVariants { id price } userErrors { message } } }""",
        p=product["id"], v=[{"id": variant["id"], "price": "64.00"}])).json()["data"]["productVariantsBulkUpdate"]
    assert price["productVariants"] == [{"id": variant["id"], "price": "64.00"}]

    stock = """mutation($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input)
                 { inventoryAdjustmentGroup { reason } userErrors { message } } }"""
    row = {"inventoryItemId": item, "locationId": "gid://shopify/Location/1", "quantity": 40}
    stale = (await shop.graphql(stock, input={"name": "available", "reason": "correction",
                                              "quantities": [{**row, "compareQuantity": 10}]})).json()
    assert stale["data"]["inventorySetQuantities"]["userErrors"] and store.available(item) == 8
    done = (await shop.graphql(stock, input={"name": "available", "reason": "correction",
                                             "quantities": [{**row, "compareQuantity": 8}]})).json()
    assert done["data"]["inventorySetQuantities"]["userErrors"] == [] and store.available(item) == 40


async def test_injected_faults_answer_like_an_http_server(shop: Shop) -> None:
    shop.server.faults.configure(FaultConfig(error_rate=1.0, error_kinds=["429"], retry_after=2))
    limited = await shop.graphql("{ orders(first: 1) { nodes { id } } }")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    shop.server.faults.reset()
    shop.server.faults.go_down(5)
    assert (await shop.graphql("{ orders(first: 1) { nodes { id } } }")).status_code == 503


class Receiver:
    """A webhook endpoint that answers the statuses it is given, in turn, and keeps what came."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver([])
    app = web.Application()
    app.router.add_post("/hooks", hook.handle)
    runner, url = await serve(app, "127.0.0.1", 0)
    yield hook, f"{url}/hooks"
    await runner.cleanup()


async def test_webhooks_are_signed_and_retried_with_the_same_id(shop: Shop, receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.statuses = [500, 503]
    shop.server.webhooks.configure(WebhookSettings(url=url, secret=SECRET, topics=["orders/create"],
                                                   backoff_seconds=0.01))
    made = order(shop)
    await shop.server.webhooks.drain()
    assert len(hook.received) == 3
    ids = {headers["X-Shopify-Webhook-Id"] for headers, _ in hook.received}
    assert len(ids) == 1, "a retry keeps the delivery's webhook id"
    headers, body = hook.received[-1]
    assert headers["X-Shopify-Hmac-Sha256"] == shopify_hmac(SECRET, body)
    assert headers["X-Shopify-Topic"] == "orders/create"
    assert headers["X-Shopify-Shop-Domain"] == shop.server.store.domain
    assert headers["X-Shopify-API-Version"] == API_VERSION and headers["X-Shopify-Triggered-At"]
    payload = __import__("json").loads(body)
    assert payload["admin_graphql_api_id"] == made["id"] and payload["line_items"][0]["sku"] == "AR-125"
    assert shop.server.webhooks.counts["delivered"] == 1 and shop.server.webhooks.counts["failed_attempts"] == 2


async def test_webhooks_give_up_duplicate_and_drop(shop: Shop, receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    sender = shop.server.webhooks
    sender.configure(WebhookSettings(url=url, secret=SECRET, max_attempts=2, backoff_seconds=0.01))
    hook.statuses = [500, 500]
    order(shop)
    await sender.drain()
    assert sender.counts["gave_up"] == 1 and len(hook.received) == 2

    hook.received.clear()
    sender.configure(WebhookSettings(url=url, secret=SECRET, duplicate_rate=1.0))
    order(shop)
    await sender.drain()
    assert len(hook.received) == 2 and hook.received[0][1] == hook.received[1][1]
    assert hook.received[0][0]["X-Shopify-Webhook-Id"] == hook.received[1][0]["X-Shopify-Webhook-Id"]

    hook.received.clear()
    sender.configure(WebhookSettings(url=url, secret=SECRET, drop_rate=1.0))
    order(shop)
    await sender.drain()
    assert hook.received == [] and sender.counts["dropped"] == 1


async def test_the_admin_api_creates_edits_and_configures(shop: Shop) -> None:
    created = await shop.http.post(f"{shop.url}/__admin/customers", json={"email": "grace@example.com"})
    assert created.status_code == 201
    number = created.json()["id"].rsplit("/", 1)[1]
    edited = await shop.http.patch(f"{shop.url}/__admin/records/Customer/{number}", json={"firstName": "Grace"})
    assert edited.json()["firstName"] == "Grace"
    assert (await shop.http.post(f"{shop.url}/__admin/orders", json={"email": None, "line_items": []})).status_code == 400
    hooks = await shop.http.put(f"{shop.url}/__admin/webhooks", json={"url": "http://127.0.0.1:9/x", "secret": "s"})
    assert hooks.json()["secret"] is True, "the secret is never shown"
    throttle = await shop.http.put(f"{shop.url}/__admin/throttle", json={"maximum": 50, "restore_rate": 5})
    assert throttle.json()["maximumAvailable"] == 50
    state = (await shop.http.get(f"{shop.url}/__admin/state")).json()
    assert [c["email"] for c in state["Customer"]] == ["grace@example.com"]

"""Shopify: webhooks (HMAC-SHA256, base64, ``X-Shopify-*`` headers) and the GraphQL Admin API
with its cost-based throttle (docs/adr/0033).

Webhook bodies are REST-shaped (snake_case, numeric ids beside ``admin_graphql_api_id``, money
as strings, times in the shop's offset); API answers are GraphQL nodes. Both map to the same
:class:`ShopRecord`, so a change reads the same whichever way it came.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from typing import Any, Callable, Mapping

import httpx

from connectors.errors import FatalError, RetryableError
from connectors.http_client import HttpClient
from connectors.redact import redact_text
from connectors.retry import CostStats, RetryPolicy
from connectors.shop.config import ShopConfig
from connectors.shop.platform import Delivery, NotTheResource, Page, Platform, Refused
from connectors.shop.records import ShopRecord, utc

__all__ = ["Shopify", "ShopifyClient", "TOPICS", "sign", "from_webhook", "from_node"]

log = logging.getLogger(__name__)

#: webhook topic → neutral entity (topics not listed are acknowledged and not published)
TOPICS = {
    "orders/create": "order", "orders/updated": "order", "orders/paid": "order", "orders/fulfilled": "order",
    "orders/cancelled": "order", "checkouts/create": "checkout", "checkouts/update": "checkout",
    "products/create": "product", "products/update": "product", "inventory_levels/update": "inventory_level",
    "customers/create": "customer", "customers/update": "customer",
}
_FULFILMENT = {None: "unfulfilled", "UNFULFILLED": "unfulfilled", "fulfilled": "fulfilled", "FULFILLED": "fulfilled",
               "partial": "partial", "PARTIALLY_FULFILLED": "partial"}


def sign(secret: str, body: bytes) -> str:
    """``X-Shopify-Hmac-Sha256`` for ``body``."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


# -- webhook payloads (REST-shaped) --------------------------------------------------------

def _gid(payload: Mapping[str, Any], kind: str) -> str:
    given = payload.get("admin_graphql_api_id")
    if isinstance(given, str) and given.startswith("gid://shopify/"):
        return given
    number = payload.get("id")
    if type(number) is not int:
        raise NotTheResource(f"not a Shopify {kind}: id is missing")
    return f"gid://shopify/{kind}/{number}"


def _time(payload: Mapping[str, Any], name: str, required: bool = True) -> str | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    try:
        return utc(value)
    except (TypeError, ValueError, AttributeError):
        raise NotTheResource(f"{name} is not an ISO 8601 time") from None


def _lines(items: Any, price: Callable[[Mapping[str, Any]], Any]) -> list[dict[str, Any]]:
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise NotTheResource("line items are not a list of objects")
    return [{"sku": i.get("sku"), "title": i.get("title"), "quantity": i.get("quantity"), "price": price(i)}
            for i in items]


def _customer_id(customer: Any) -> str | None:
    if isinstance(customer, Mapping) and customer:
        return customer.get("admin_graphql_api_id") or customer.get("id")
    return None


def from_webhook(entity: str, payload: Any) -> ShopRecord:
    """The neutral record of one webhook body; NotTheResource when it is not one."""
    if not isinstance(payload, Mapping):
        raise NotTheResource("the body is not a JSON object")
    if entity == "inventory_level":
        item, location = payload.get("inventory_item_id"), payload.get("location_id")
        if type(item) is not int or type(location) is not int:
            raise NotTheResource("inventory_item_id and location_id must be numbers")
        record_id = f"gid://shopify/InventoryLevel/{location}?inventory_item_id={item}"
        updated = _time(payload, "updated_at")
        return ShopRecord(entity, record_id, updated, {
            "id": record_id, "inventory_item_id": f"gid://shopify/InventoryItem/{item}",
            "location_id": f"gid://shopify/Location/{location}", "available": payload.get("available"),
            "updated_at": updated})
    kind = {"order": "Order", "checkout": "AbandonedCheckout", "product": "Product", "customer": "Customer"}[entity]
    record_id, updated = _gid(payload, kind), _time(payload, "updated_at")
    base = {"id": record_id, "created_at": _time(payload, "created_at", required=False), "updated_at": updated}
    return ShopRecord(entity, record_id, updated, base | _webhook_fields(entity, payload))


def _webhook_fields(entity: str, p: Mapping[str, Any]) -> dict[str, Any]:
    if entity == "customer":
        return {"email": p.get("email"), "phone": p.get("phone"), "first_name": p.get("first_name"),
                "last_name": p.get("last_name")}
    if entity == "product":
        variants = p.get("variants") or []
        if not isinstance(variants, list) or not all(isinstance(v, Mapping) for v in variants):
            raise NotTheResource("variants are not a list of objects")
        return {"title": p.get("title"), "handle": p.get("handle"), "status": (p.get("status") or "").lower() or None,
                "variants": [{"id": _gid(v, "ProductVariant"), "sku": v.get("sku"), "title": v.get("title"),
                              "price": v.get("price"),
                              "inventory_item_id": f"gid://shopify/InventoryItem/{v.get('inventory_item_id')}",
                              "available": v.get("inventory_quantity")} for v in variants]}
    common = {"email": p.get("email") or (p.get("customer") or {}).get("email"),
              "customer_id": _customer_id(p.get("customer")), "currency": p.get("currency"),
              "total_price": p.get("total_price"), "line_items": _lines(p.get("line_items"), lambda i: i.get("price"))}
    if entity == "order":
        return common | {"name": p.get("name"), "financial_status": p.get("financial_status"),
                         "fulfillment_status": _FULFILMENT.get(p.get("fulfillment_status"), p.get("fulfillment_status")),
                         "cancelled_at": _time(p, "cancelled_at", required=False)}
    return common | {"recovery_url": p.get("abandoned_checkout_url"),
                     "completed_at": _time(p, "completed_at", required=False)}


# -- GraphQL nodes -------------------------------------------------------------------------

def _amount(bag: Any) -> Any:
    return ((bag or {}).get("shopMoney") or {}).get("amount")


def from_node(entity: str, node: Mapping[str, Any]) -> ShopRecord:
    """The neutral record of one API node (as the queries in :data:`QUERIES` select it)."""
    updated = utc(node["updatedAt"])
    base = {"id": node["id"], "created_at": utc(node["createdAt"]), "updated_at": updated}
    if entity == "customer":
        fields = {"email": node.get("email"), "phone": node.get("phone"), "first_name": node.get("firstName"),
                  "last_name": node.get("lastName")}
    elif entity == "product":
        fields = {"title": node["title"], "handle": node["handle"], "status": node["status"].lower(),
                  "variants": [{"id": v["id"], "sku": v.get("sku"), "title": v.get("title"), "price": v.get("price"),
                                "inventory_item_id": v["inventoryItem"]["id"], "available": v.get("inventoryQuantity")}
                               for v in node["variants"]["nodes"]]}
    else:
        customer = node.get("customer") or {}
        lines = _lines(node["lineItems"]["nodes"], lambda i: _amount(i.get("originalUnitPriceSet")))
        total = node.get("totalPriceSet") or {}
        fields = {"email": node.get("email") or customer.get("email"), "customer_id": customer.get("id"),
                  "currency": (total.get("shopMoney") or {}).get("currencyCode"), "total_price": _amount(total),
                  "line_items": lines}
        if entity == "order":
            fields |= {"name": node["name"], "financial_status": (node.get("displayFinancialStatus") or "").lower() or None,
                       "fulfillment_status": _FULFILMENT.get(node.get("displayFulfillmentStatus")),
                       "cancelled_at": utc(node["cancelledAt"]) if node.get("cancelledAt") else None}
        else:
            fields |= {"recovery_url": node.get("abandonedCheckoutUrl"),
                       "completed_at": utc(node["completedAt"]) if node.get("completedAt") else None}
    return ShopRecord(entity, node["id"], updated, base | fields)


_MONEY = "shopMoney { amount currencyCode }"
_LINES = f"lineItems(first: 20) {{ nodes {{ sku title quantity originalUnitPriceSet {{ {_MONEY} }} }} }}"
#: entity → (top-level field, sort key, the node's selection)
QUERIES = {
    "customer": ("customers", "UPDATED_AT", "id email phone firstName lastName createdAt updatedAt"),
    "product": ("products", "UPDATED_AT", "id title handle status createdAt updatedAt "
                "variants(first: 20) { nodes { id sku title price inventoryQuantity inventoryItem { id } } }"),
    "order": ("orders", "UPDATED_AT", "id name email createdAt updatedAt cancelledAt displayFinancialStatus "
              f"displayFulfillmentStatus totalPriceSet {{ {_MONEY} }} customer {{ id email }} {_LINES}"),
    "checkout": ("abandonedCheckouts", "ID", "id abandonedCheckoutUrl createdAt updatedAt completedAt "
                 f"totalPriceSet {{ {_MONEY} }} customer {{ id email }} {_LINES}"),
}


def _document(entity: str) -> str:
    field, sort, selection = QUERIES[entity]
    return (f"query Changed($first: Int!, $after: String, $query: String) {{ {field}(first: $first, after: $after, "
            f"query: $query, sortKey: {sort}) {{ nodes {{ {selection} }} pageInfo {{ hasNextPage endCursor }} }} }}")


# -- the API client ------------------------------------------------------------------------

class CostTooHigh(FatalError):
    """One query asks more than the bucket can ever hold (``MAX_COST_EXCEEDED``): ask for less."""


class ShopifyClient(HttpClient):
    """GraphQL over the one retry policy; waits for the bucket before a query it cannot pay and
    retries a ``THROTTLED`` answer after the time the bucket needs to refill."""

    system = "shop"

    def __init__(self, config: ShopConfig, *, policy: RetryPolicy | None = None,
                 http: httpx.AsyncClient | None = None, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        super().__init__(timeout=config.timeout, policy=policy, http=http)
        self.config = config
        self.throttle: dict[str, float] = {}
        self.cost = CostStats()
        self._last_requested = 0.0
        self._sleep = sleep

    async def query(self, document: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = await self.request("POST", "graphql.json", json={"query": document, "variables": dict(variables or {})})
        body = response.json()
        if body.get("errors"):
            raise FatalError(f"shop GraphQL: {_messages(body)}", code=_codes(body)[0] if _codes(body) else None)
        return body["data"]

    def _url(self, credential: Any, path: str) -> str:
        return f"{self.config.shop_url}/admin/api/{self.config.api_version}/{path}"

    def _headers(self, credential: Any) -> dict[str, str]:
        return {"X-Shopify-Access-Token": self.config.access_token.get_secret_value(),
                "Content-Type": "application/json"}

    def _read_error(self, response: httpx.Response) -> tuple[str, str]:
        try:
            errors = response.json().get("errors")
        except ValueError:
            return "", response.text[:200]
        return "", redact_text(errors if isinstance(errors, str) else str(errors)[:200])

    async def _send(self, credential: Any, method: str, path: str, json: Any,
                    params: Mapping[str, Any] | None) -> httpx.Response:
        await self._wait_for_bucket()
        response = await super()._send(credential, method, path, json, params)
        try:
            body = response.json()
        except ValueError:
            raise RetryableError("shop GraphQL: the answer is not JSON", status=response.status_code) from None
        cost = (body.get("extensions") or {}).get("cost") or {}
        self.throttle = dict(cost.get("throttleStatus") or self.throttle)
        self._last_requested = float(cost.get("requestedQueryCost") or self._last_requested)
        self._count_cost(cost)
        codes = _codes(body)
        if "THROTTLED" in codes:
            refill = self._refill_time()
            self.cost.throttled += 1
            self.cost.waited += refill
            raise RetryableError("shop GraphQL: throttled", code="THROTTLED", retry_after=refill)
        if "MAX_COST_EXCEEDED" in codes:
            raise CostTooHigh(f"shop GraphQL: {_messages(body)}", code="MAX_COST_EXCEEDED")
        return response

    def _count_cost(self, cost: Mapping[str, Any]) -> None:
        self.cost.points += float(cost.get("actualQueryCost") or 0)
        if self.throttle:
            self.cost.available = float(self.throttle.get("currentlyAvailable", 0))
            self.cost.maximum = float(self.throttle.get("maximumAvailable", 0))

    def _refill_time(self, requested: float | None = None) -> float:
        status = self.throttle
        rate = float(status.get("restoreRate") or 0)
        if rate <= 0:
            return 1.0
        missing = (requested if requested is not None else self._last_requested) - float(status.get("currentlyAvailable", 0))
        return max(0.0, missing / rate)

    async def _wait_for_bucket(self) -> None:
        """Before a query like the last one, wait until the bucket (as last reported) holds it."""
        wait = self._refill_time() if self.throttle and self._last_requested else 0.0
        if wait > 0:
            self.cost.waited += wait
            await self._sleep(min(wait, self.policy.max_delay))


def _codes(body: Mapping[str, Any]) -> list[str]:
    errors = body.get("errors")
    if not isinstance(errors, list):
        return []
    return [str((e.get("extensions") or {}).get("code")) for e in errors if isinstance(e, Mapping)]


def _messages(body: Mapping[str, Any]) -> str:
    """The errors' messages, masked: a GraphQL error may quote a variable's value (an email)."""
    errors = body.get("errors")
    if isinstance(errors, list):
        return redact_text("; ".join(str(e.get("message")) for e in errors if isinstance(e, Mapping))[:300])
    return redact_text(str(errors)[:300])


# -- the adapter ---------------------------------------------------------------------------

class Shopify(Platform):
    name = "shopify"

    def __init__(self, config: ShopConfig, client: ShopifyClient | None = None) -> None:
        self.config = config
        self.client = client or ShopifyClient(config)
        self._secret = config.webhook_secret.get_secret_value() if config.webhook_secret else ""
        #: page size per entity, halved when a page would cost more than the bucket's maximum
        self.page_sizes: dict[str, int] = {}

    def verify(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        signature, topic = headers.get("X-Shopify-Hmac-Sha256"), headers.get("X-Shopify-Topic")
        webhook_id = headers.get("X-Shopify-Webhook-Id")
        if not signature or not topic or not webhook_id or not self._secret:
            raise Refused("missing_headers")
        # compare_digest refuses non-ASCII text with a TypeError: compare bytes
        if not hmac.compare_digest(sign(self._secret, body).encode(), signature.strip().encode(errors="replace")):
            raise Refused("bad_signature")
        domain = self.config.shop_domain
        if domain and headers.get("X-Shopify-Shop-Domain", "").strip().lower() != domain.lower():
            raise Refused("other_shop")
        return Delivery(webhook_id=webhook_id[:200], topic=topic[:100], entity=TOPICS.get(topic))

    def webhook_records(self, delivery: Delivery, payload: Any) -> list[ShopRecord]:
        if delivery.entity is None:
            return []
        return [from_webhook(delivery.entity, payload)]

    async def changed_since(self, entity: str, since: str | None, cursor: str | None, limit: int) -> Page:
        field = QUERIES[entity][0]
        while True:
            size = min(limit, self.page_sizes.get(entity, limit))
            variables = {"first": size, "after": cursor, "query": f"updated_at:>'{since}'" if since else None}
            try:
                data = await self.client.query(_document(entity), variables)
                break
            except CostTooHigh:
                if size == 1:
                    raise
                self.page_sizes[entity] = max(1, size // 2)
                log.info("shop: a page of %d %s records costs more than the bucket holds; asking for %d",
                         size, entity, self.page_sizes[entity])
        connection = data[field]
        records = [from_node(entity, node) for node in connection["nodes"]]
        more = connection["pageInfo"]["hasNextPage"]
        return Page(records, connection["pageInfo"]["endCursor"] if more else None)

    async def aclose(self) -> None:
        await self.client.aclose()

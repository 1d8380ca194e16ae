"""The simulated shop's data: customers, products with variants and stock, orders, abandoned
checkouts, and what each write tells webhook subscribers.

Records are kept once and shown two ways, as the real platform does: as GraphQL nodes (camelCase,
``gid://shopify/<Type>/<n>`` ids, money as ``MoneyBag``, UTC times) for the Admin API, and as
the REST-shaped JSON that webhooks carry (snake_case, numeric ``id`` beside
``admin_graphql_api_id``, money as decimal strings, times in the shop's own offset).
Timestamps have whole seconds, like Shopify's.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

__all__ = ["ShopStore", "UnknownRecord", "KINDS", "LOCATION", "LOCATIONS", "gid", "numeric_id", "iso_utc"]

#: the GraphQL type of each kind of record the store keeps
KINDS = ("Customer", "Product", "Order", "AbandonedCheckout")
LOCATION = "gid://shopify/Location/1"
#: the shop's locations (every item is stocked at each: the simulator has no ``inventoryActivate``)
LOCATIONS = {LOCATION: "Main warehouse", "gid://shopify/Location/2": "East branch"}

Listener = Callable[[str, dict[str, Any]], None]


class UnknownRecord(KeyError):
    pass


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def numeric_id(global_id: str) -> int:
    return int(global_id.rsplit("/", 1)[1].split("?", 1)[0])


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ShopStore:
    clock: Callable[[], float] = time.time
    domain: str = "connect-sandbox.myshopify.com"
    currency: str = "USD"
    #: the shop's time zone, as webhook payloads show times
    utc_offset_hours: int = -5
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    #: (inventory item gid, location gid) → available
    inventory: dict[tuple[str, str], int] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    _numbers: Any = field(default_factory=lambda: itertools.count(1001))

    # -- reads ---------------------------------------------------------------------------------

    def get(self, kind: str, record_id: str) -> dict[str, Any]:
        try:
            return self.records[kind][record_id]
        except KeyError:
            raise UnknownRecord(f"no {kind} {record_id}") from None

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self.records[kind].values())

    def snapshot(self) -> dict[str, Any]:
        return {kind: self.all(kind) for kind in KINDS} | {
            "inventory": [{"inventoryItemId": item, "locationId": loc, "available": qty}
                          for (item, loc), qty in self.inventory.items()]}

    def reset(self) -> None:
        for kind in KINDS:
            self.records[kind].clear()
        self.inventory.clear()

    # -- writes (the admin API and the mutations call these) -----------------------------------

    def create_customer(self, *, email: str | None = None, first_name: str | None = None,
                        last_name: str | None = None, phone: str | None = None) -> dict[str, Any]:
        record = self._new("Customer", email=email, firstName=first_name, lastName=last_name, phone=phone)
        self._notify("customers/create", record)
        return record

    def create_product(self, *, title: str, variants: list[dict[str, Any]], status: str = "ACTIVE") -> dict[str, Any]:
        """``variants``: ``[{"sku", "price", "title"?, "available"?}]``."""
        kept = []
        for variant in variants:
            number = next(self._numbers)
            item = gid("InventoryItem", number)
            kept.append({"id": gid("ProductVariant", number), "title": variant.get("title", "Default Title"),
                         "sku": variant.get("sku"), "price": _money(variant.get("price", "0")),
                         "inventoryItem": {"id": item, "sku": variant.get("sku")}})
            self.inventory[(item, LOCATION)] = int(variant.get("available", 0))
        record = self._new("Product", title=title, handle=_handle(title), status=status, variants=kept)
        self._notify("products/create", record)
        return record

    def create_order(self, *, email: str | None, line_items: list[dict[str, Any]],
                     customer_id: str | None = None, financial_status: str = "PAID") -> dict[str, Any]:
        """``line_items``: ``[{"sku", "quantity", "price", "title"?}]``; stock at the one location drops."""
        lines = self._lines(line_items)
        number = len(self.records["Order"]) + 1001
        record = self._new("Order", name=f"#{number}", email=email, customerId=customer_id, cancelledAt=None,
                           displayFinancialStatus=financial_status, displayFulfillmentStatus="UNFULFILLED",
                           lineItems=lines, total=_total(lines), fulfillments=[])
        record["fulfillmentOrders"] = [{"id": gid("FulfillmentOrder", next(self._numbers)), "status": "OPEN"}]
        self._notify("orders/create", record)
        for line in lines:
            self._take_stock(line["sku"], line["quantity"])
        return record

    def create_checkout(self, *, email: str | None, line_items: list[dict[str, Any]],
                        customer_id: str | None = None) -> dict[str, Any]:
        lines = self._lines(line_items)
        record = self._new("AbandonedCheckout", email=email, customerId=customer_id, completedAt=None,
                           lineItems=lines, total=_total(lines))
        record["abandonedCheckoutUrl"] = (f"https://{self.domain}/checkouts/{numeric_id(record['id'])}"
                                          f"/recover?key={record['id'][-4:]}")
        self._notify("checkouts/create", record)
        return record

    def update(self, kind: str, record_id: str, **values: Any) -> dict[str, Any]:
        """An edit in the shop's admin: the given fields change, ``updatedAt`` moves."""
        record = self.get(kind, record_id)
        record.update(values)
        record["updatedAt"] = self._now()
        self._notify(_UPDATE_TOPIC[kind], record)
        return record

    def complete_checkout(self, checkout_id: str) -> dict[str, Any]:
        return self.update("AbandonedCheckout", checkout_id, completedAt=self._now())

    def fulfil(self, fulfillment_order_ids: list[str], tracking: dict[str, Any] | None) -> dict[str, Any]:
        """``fulfillmentCreate``: every fulfillment order named must be OPEN and of one order."""
        orders = {order["id"]: order for order in self.all("Order")
                  if any(fo["id"] in fulfillment_order_ids for fo in order["fulfillmentOrders"])}
        if len(orders) != 1:
            raise ValueError("the fulfillment orders must exist and belong to one order")
        order = next(iter(orders.values()))
        chosen = [fo for fo in order["fulfillmentOrders"] if fo["id"] in fulfillment_order_ids]
        if any(fo["status"] != "OPEN" for fo in chosen):
            raise ValueError("a fulfillment order is already closed")
        for fo in chosen:
            fo["status"] = "CLOSED"
        fulfillment = {"id": gid("Fulfillment", next(self._numbers)), "status": "SUCCESS", "createdAt": self._now(),
                       "trackingInfo": [dict(tracking)] if tracking else []}
        order["fulfillments"].append(fulfillment)
        done = all(fo["status"] == "CLOSED" for fo in order["fulfillmentOrders"])
        self.update("Order", order["id"], displayFulfillmentStatus="FULFILLED" if done else "PARTIALLY_FULFILLED")
        return fulfillment

    def set_prices(self, product_id: str, prices: dict[str, str]) -> dict[str, Any]:
        """``productVariantsBulkUpdate``: variant gid → price."""
        product = self.get("Product", product_id)
        variants = {variant["id"]: variant for variant in product["variants"]}
        unknown = set(prices) - set(variants)
        if unknown:
            raise ValueError(f"variant {sorted(unknown)[0]} is not a variant of {product_id}")
        for variant_id, price in prices.items():
            variants[variant_id]["price"] = _money(price)
        return self.update("Product", product_id)

    def set_available(self, item_id: str, location_id: str, quantity: int) -> None:
        """``inventorySetQuantities`` (name ``available``) and stock taken by orders."""
        if not any(v["inventoryItem"]["id"] == item_id for p in self.all("Product") for v in p["variants"]):
            raise ValueError(f"no inventory item {item_id}")
        if location_id not in LOCATIONS:
            raise ValueError(f"The specified location could not be found: {location_id}")
        self.inventory[(item_id, location_id)] = quantity
        level = {"inventory_item_id": numeric_id(item_id), "location_id": numeric_id(location_id),
                 "available": quantity, "updated_at": self._rest_time(self._now()),
                 "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{numeric_id(location_id)}"
                                         f"?inventory_item_id={numeric_id(item_id)}"}
        for listener in list(self.listeners):
            listener("inventory_levels/update", level)

    def available(self, item_id: str) -> int:
        return sum(qty for (item, _), qty in self.inventory.items() if item == item_id)

    # -- the REST-shaped JSON of webhooks ------------------------------------------------------

    def rest(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        number = numeric_id(record["id"])
        base = {"id": number, "admin_graphql_api_id": record["id"],
                "created_at": self._rest_time(record["createdAt"]), "updated_at": self._rest_time(record["updatedAt"])}
        if kind == "Customer":
            return base | {"email": record["email"], "phone": record["phone"], "first_name": record["firstName"],
                           "last_name": record["lastName"]}
        if kind == "Product":
            return base | {"title": record["title"], "handle": record["handle"], "status": record["status"].lower(),
                           "variants": [{"id": numeric_id(v["id"]), "admin_graphql_api_id": v["id"], "sku": v["sku"],
                                         "title": v["title"], "price": v["price"],
                                         "inventory_item_id": numeric_id(v["inventoryItem"]["id"]),
                                         "inventory_quantity": self.available(v["inventoryItem"]["id"])}
                                        for v in record["variants"]]}
        lines = [{"sku": line["sku"], "title": line["title"], "quantity": line["quantity"], "price": line["price"]}
                 for line in record["lineItems"]]
        customer = self._rest_customer(record.get("customerId"))
        common = {"email": record["email"], "currency": self.currency, "total_price": record["total"],
                  "line_items": lines, "customer": customer}
        if kind == "Order":
            status = {"UNFULFILLED": None, "FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial"}
            return base | common | {
                "name": record["name"], "financial_status": (record["displayFinancialStatus"] or "").lower() or None,
                "fulfillment_status": status[record["displayFulfillmentStatus"]],
                "cancelled_at": self._rest_time(record["cancelledAt"]) if record["cancelledAt"] else None}
        return {**base, **common, "token": record["id"][-8:], "abandoned_checkout_url": record["abandonedCheckoutUrl"],
                "completed_at": self._rest_time(record["completedAt"]) if record["completedAt"] else None}

    def _rest_customer(self, customer_id: str | None) -> dict[str, Any] | None:
        if not customer_id or customer_id not in self.records["Customer"]:
            return None
        return self.rest("Customer", self.records["Customer"][customer_id])

    def _rest_time(self, iso: str) -> str:
        moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone(timedelta(hours=self.utc_offset_hours))).isoformat()

    # -- helpers -------------------------------------------------------------------------------

    def _now(self) -> str:
        return iso_utc(self.clock())

    def _new(self, kind: str, **values: Any) -> dict[str, Any]:
        now = self._now()
        record = {"id": gid(kind, next(self._numbers)), "createdAt": now, "updatedAt": now, **values}
        self.records[kind][record["id"]] = record
        return record

    def _lines(self, line_items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not line_items:
            raise ValueError("at least one line item is required")
        return [{"id": gid("LineItem", next(self._numbers)), "sku": line.get("sku"),
                 "title": line.get("title") or line.get("sku") or "item", "quantity": int(line.get("quantity", 1)),
                 "price": _money(line.get("price", "0"))} for line in line_items]

    def _take_stock(self, sku: str | None, quantity: int) -> None:
        for product in self.all("Product"):
            for variant in product["variants"]:
                if sku and variant["sku"] == sku:
                    item = variant["inventoryItem"]["id"]
                    self.set_available(item, LOCATION, self.inventory.get((item, LOCATION), 0) - quantity)
                    return

    def _notify(self, topic: str, record: dict[str, Any]) -> None:
        kind = _KIND_OF_TOPIC[topic.split("/")[0]]
        payload = self.rest(kind, record)
        for listener in list(self.listeners):
            listener(topic, payload)


_UPDATE_TOPIC = {"Customer": "customers/update", "Product": "products/update", "Order": "orders/updated",
                 "AbandonedCheckout": "checkouts/update"}
_KIND_OF_TOPIC = {"customers": "Customer", "products": "Product", "orders": "Order", "checkouts": "AbandonedCheckout"}


def _money(value: Any) -> str:
    return str(Decimal(str(value)).quantize(Decimal("0.01")))


def _total(lines: list[dict[str, Any]]) -> str:
    return _money(sum(Decimal(line["price"]) * line["quantity"] for line in lines))


def _handle(title: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in title.lower()).split())

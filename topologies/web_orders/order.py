"""The web order record: one per shop order, folded from shop order and TIMS sales order events.
Pure: no Kafka, no Faust (docs/adr/0035).

A row (a JSON dict in the ``web_orders`` table) is keyed by the order's TIMS external id,
``shop:<the platform's id, "/" → ":">`` (``shop:shopify:Order:1001``; TIMS external ids allow no
``/``), so a TIMS sales order event finds its row by its ``external_id`` alone.

- A shop order becomes one TIMS sales order (batch upsert by ``external_id``: idempotent) once
  its buyer is linked to a TIMS customer and each line's SKU to a TIMS item (``sku:<sku>``, from
  TIMS item events). The buyer is the TIMS customer the customer master holds the order's shop
  customer under (``customer:shop:<platform>:Customer:<n>``, from the master's links,
  ``topologies.customer_links``: exact, whatever the emails), else the one with the buyer's email
  (``email:<address>``, from TIMS customer events); while neither is linked the order waits for
  both, and the first linked releases it.
- A line without a SKU, or a non-positive quantity, holds the order at once (quarantined with the
  reason). A SKU TIMS does not know after ``unknown_sku_grace_seconds`` holds it too (the item
  may still be on its way); a later TIMS item with that SKU releases it.
- A cancelled shop order that was not sent is never sent.
- TIMS status comes back forward only (``topologies.sales_order_status``); when it reaches
  ``shipped`` (or later) the shop order is fulfilled once, with the tracking number, unless the
  shop shows it fulfilled already.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from connectors.envelope import SourceEvent
from topologies.customer_links import CustomerLinks
from topologies.customer_sync.identity import normalize_email
from topologies.mapping_file import load_model
from topologies.money import MoneyError, currency_code, to_decimal, wire
from topologies.sales_order_status import rank
from topologies.waiting_orders import Decision, Write, conclude, hold, seen, tims_progress

__all__ = ["WebOrderMapping", "Links", "Decision", "load_mapping", "new_row", "row_key", "order_id_of", "apply_shop",
           "apply_tims", "recheck", "buyer_refs", "resolve_buyer", "master_link", "DEFAULT_MAPPING_DIR", "KEY_PREFIX",
           "BY_CUSTOMER"]

DEFAULT_MAPPING_DIR = Path(__file__).with_name("mappings")
KEY_PREFIX = "shop:"
#: the link of a shop customer (as the customer master holds it) to its TIMS customer
BY_CUSTOMER = "customer:"
SEEN_LIMIT = 50
_NOT_IN_EXTERNAL_ID = re.compile(r"[^A-Za-z0-9_.:-]")
ORDER_FIELDS = ("name", "email", "currency", "line_items", "created_at", "cancelled_at", "fulfillment_status",
                "customer_id")


class WebOrderMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: an order's currency when the shop names none (ISO 4217)
    currency: str = "USD"
    #: the TIMS status from which the shop order is fulfilled
    fulfil_from: str = "shipped"
    #: seconds an order waits for a SKU TIMS does not know before it is quarantined
    unknown_sku_grace_seconds: float = Field(default=60.0, ge=0)
    #: tell the buyer by the shop's shipping email
    notify_customer: bool = True
    tracking_company: str | None = None
    #: most orders that may wait for one reference; the next is quarantined
    waiting_limit: int = Field(default=1000, ge=1)

    def model_post_init(self, _: Any) -> None:
        currency_code(self.currency)
        if rank(self.fulfil_from) < 0:
            raise ValueError(f"fulfil_from {self.fulfil_from!r} is not a TIMS order status")


def load_mapping(directory: Path) -> WebOrderMapping:
    return load_model(directory / "web_orders.yaml", WebOrderMapping)


class Links(Protocol):
    """``customer:<shop customer>`` and ``email:<address>`` → TIMS customer id, ``sku:<sku>`` →
    TIMS item id."""

    def get(self, key: str) -> str | None: ...


def row_key(order_id: str) -> str:
    """``gid://shopify/Order/1001`` → ``shop:shopify:Order:1001`` (a TIMS external id)."""
    return KEY_PREFIX + _NOT_IN_EXTERNAL_ID.sub(":", order_id.removeprefix("gid://")).strip(":")


def order_id_of(key: str) -> str:
    """The platform's order id back from a row key (``shop:shopify:Order:1001`` → the gid)."""
    platform, kind, number = key.removeprefix(KEY_PREFIX).split(":", 2)
    return f"gid://{platform}/{kind}/{number}"


def buyer_refs(order: dict[str, Any]) -> list[str]:
    """The references that name the order's buyer, the customer master's first: its shop customer
    (``customer:shop:shopify:Customer:7``; none for a guest checkout) and its email."""
    refs = [BY_CUSTOMER + row_key(str(order["customer_id"]))] if order.get("customer_id") else []
    email = normalize_email(order.get("email"))
    return refs + ([f"email:{email}"] if email else [])


def resolve_buyer(order: dict[str, Any], links: Links) -> tuple[str | None, list[str]]:
    """The TIMS customer of the first of the buyer's references that is linked (None: none is
    yet), and the references (docs/adr/0035, addendum)."""
    refs = buyer_refs(order)
    for ref in refs:
        customer = links.get(ref)
        if customer is not None:
            return customer, refs
    return None, refs


def master_link(told: CustomerLinks) -> tuple[str, str] | None:
    """``(customer:<shop customer>, TIMS customer)`` when the customer master holds both for one
    person; else None (no shop customer, or no TIMS customer yet: the master tells again when it
    has one)."""
    shop, tims = told.links.get("shop_customer"), told.links.get("tims_customer")
    return (BY_CUSTOMER + shop, tims) if shop and tims else None


def new_row(key: str) -> dict[str, Any]:
    return {"key": key, "order_id": None, "shop": {}, "tims": {}, "sent": False, "fulfilled": False,
            "waiting": None, "held": None, "reported": None, "version": 0, "seen": []}


def apply_shop(row: dict[str, Any], event: SourceEvent, mapping: WebOrderMapping, links: Links,
               now_ms: int) -> Decision:
    """A shop order event (full state): the newest state is kept."""
    if seen(row, event, SEEN_LIMIT):
        return Decision(duplicate=True)
    if str(row["shop"].get("updated_at") or "") > str(event.fields.get("updated_at") or ""):
        return Decision(stale=True)
    row["order_id"] = event.record_id
    row["shop"] = {k: event.fields.get(k) for k in (*ORDER_FIELDS, "updated_at")}
    return _evaluate(row, mapping, links, now_ms, event)


def apply_tims(row: dict[str, Any], event: SourceEvent, mapping: WebOrderMapping, links: Links,
               now_ms: int) -> Decision:
    """A TIMS sales order event for a web order: taken only when it moves the order forward."""
    progress = tims_progress(row, event, SEEN_LIMIT)
    if isinstance(progress, Decision):
        return progress
    row["tims"] = {**progress, "tracking_number": event.fields.get("tracking_number"),
                   "ship_date": event.fields.get("ship_date")}
    row["order_id"] = row["order_id"] or order_id_of(row["key"])
    return _evaluate(row, mapping, links, now_ms, event)


def recheck(row: dict[str, Any], mapping: WebOrderMapping, links: Links, now_ms: int,
            final: bool = False) -> Decision:
    """A reference the order waited for is linked now; ``final``: the grace for its SKUs is over."""
    return _evaluate(row, mapping, links, now_ms, None, final)


def _evaluate(row: dict[str, Any], mapping: WebOrderMapping, links: Links, now_ms: int,
              event: SourceEvent | None, final: bool = False) -> Decision:
    decision = Decision()
    writes: list[Write] = []
    row["held"] = None
    try:
        writes += _sales_order(row, mapping, links, decision, final)
    except MoneyError as exc:
        hold(row, str(exc), decision)
    return conclude(row, decision, writes + _fulfilment(row, mapping), event, now_ms)


def _sales_order(row: dict[str, Any], mapping: WebOrderMapping, links: Links, decision: Decision,
                 final: bool) -> list[Write]:
    order = row["shop"]
    if row["sent"] or not order or order.get("cancelled_at") or row["tims"]:
        return []
    currency = currency_code(order.get("currency") or mapping.currency)
    lines = order.get("line_items") or []
    if not lines:
        hold(row, "an order without lines", decision)
        return []
    for n, line in enumerate(lines, start=1):
        if not line.get("sku"):
            hold(row, f"line {n} ({line.get('title')!s:.40}) has no SKU", decision)
            return []
        if to_decimal(line.get("quantity"), f"line {n} quantity") <= 0:
            hold(row, f"line {n} quantity is not positive", decision)
            return []
        to_decimal(line.get("price") or 0, f"line {n} price")
    customer, buyer = resolve_buyer(order, links)
    if not buyer:
        hold(row, "the buyer has no shop customer and no usable email", decision)
        return []
    if customer is None:
        decision.wait_for += buyer
    unknown = sorted({str(line["sku"]) for line in lines if links.get(f"sku:{line['sku']}") is None})
    decision.wait_for += [f"sku:{sku}" for sku in unknown]
    if unknown and final:  # held, and still parked: a TIMS item with that SKU releases it
        hold(row, f"unknown SKU {', '.join(unknown)}: no TIMS item has it", decision)
    if decision.wait_for:
        return []
    order_lines = [{"line_no": n, "item_id": links.get(f"sku:{line['sku']}"),
                    "quantity": wire(to_decimal(line.get("quantity"))),
                    "unit_price": wire(to_decimal(line.get("price") or 0, f"line {n} price")),
                    "description": str(line.get("title") or "")[:255] or None}
                   for n, line in enumerate(lines, start=1)]
    fields = {"customer_id": customer, "currency": currency, "order_date": str(order.get("created_at") or "")[:10]
              or None, "po_number": str(order.get("name") or "")[:40] or None, "lines": order_lines}
    row["sent"] = True
    return [("tims", "sales_order", "external_id", row["key"], fields)]


def _fulfilment(row: dict[str, Any], mapping: WebOrderMapping) -> list[Write]:
    """The shop order fulfilled once, when TIMS has shipped it (never again, never backwards)."""
    tims = row["tims"]
    if row["fulfilled"] or not tims or rank(tims.get("status")) < rank(mapping.fulfil_from):
        return []
    if tims.get("status") == "cancelled" or row["shop"].get("fulfillment_status") == "fulfilled":
        return []
    row["fulfilled"] = True
    fields: dict[str, Any] = {"tracking_number": tims.get("tracking_number"), "notify_customer": mapping.notify_customer}
    if mapping.tracking_company:
        fields["tracking_company"] = mapping.tracking_company
    return [("shop", "fulfillment", "order_id", row["order_id"] or order_id_of(row["key"]), fields)]

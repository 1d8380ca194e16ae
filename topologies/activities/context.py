"""A TIMS customer's ERP context for the salesperson: open orders, balance, last invoice.

Pure: no Kafka, no Faust. The customer sync's golden record holds the customer's TIMS-owned
fields (payment terms, credit limit, total revenue) but neither open orders, nor a balance,
nor invoices, and a flow may not read another flow's tables (docs/adr/0021). So this flow
folds the same TIMS events itself into a context row per TIMS customer (table ``activities``,
key ``customer:<TIMS id>``): the customer record's fields, its open sales orders and open
invoices, and its latest invoice. The summary of that row is what a Task carries
(docs/adr/0025).

Every TIMS record carries a ``version`` that rises with each change: an event whose version is
not newer than the one taken for that record is stale (late, repeated or replayed) and changes
nothing. Closed orders and settled invoices leave the row; their last version is kept (bounded)
so that a late event from before they closed cannot reopen them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors.envelope import SourceEvent
from topologies.money import MoneyError, quantize, text, to_decimal

__all__ = ["ERP_ENTITIES", "OPEN_ORDER_STATUSES", "CONTEXT_VALUES", "AMOUNTS", "Unusable", "new_context_row", "fold_tims",
           "summary", "describe"]

#: the TIMS entities this flow folds into a customer's context
ERP_ENTITIES = ("customer", "sales_order", "invoice")
#: sales orders a customer is still waiting for
OPEN_ORDER_STATUSES = frozenset({"open", "picked", "shipped"})
#: what a context summary names (the mapping's ``context_fields`` pick from these)
CONTEXT_VALUES = ("customer_id", "open_orders", "open_order_amount", "balance", "last_invoice", "last_invoice_date",
                  "last_invoice_amount", "payment_terms", "credit_limit", "total_revenue", "status")
#: the context values that are amounts (Decimal text in the row, numbers on the wire)
AMOUNTS = frozenset({"open_order_amount", "balance", "last_invoice_amount"})
#: versions of closed orders and settled invoices kept per customer, at most
CLOSED_LIMIT = 500
_CUSTOMER_FIELDS = ("payment_terms", "credit_limit", "total_revenue", "status")


class Unusable(ValueError):
    """A TIMS event this flow cannot take (no version, an amount that is not a number …)."""


def new_context_row(key: str) -> dict[str, Any]:
    return {"customer_id": key.removeprefix("customer:"), "external_id": None, "version": 0, "fields": {},
            "orders": {}, "invoices": {}, "closed": {}, "last_invoice": None, "published": None}


def _version(event: SourceEvent) -> int:
    version = event.fields.get("version")
    if type(version) is not int or version < 1:
        raise Unusable(f"{event.entity} {event.record_id}: version {version!r} is not a positive integer")
    return version


def _amount(value: Any, what: str, currency: str) -> str:
    if value is None:
        return "0"
    try:
        return text(quantize(to_decimal(value, what), currency))
    except MoneyError as exc:
        raise Unusable(str(exc)) from None


def _known_version(row: dict[str, Any], bucket: str, record_id: str) -> int:
    held = row[bucket].get(record_id)
    return held["v"] if held else row["closed"].get(f"{bucket}:{record_id}", 0)


def _close(row: dict[str, Any], bucket: str, record_id: str, version: int) -> None:
    row[bucket].pop(record_id, None)
    closed = row["closed"]
    closed.pop(f"{bucket}:{record_id}", None)
    closed[f"{bucket}:{record_id}"] = version
    while len(closed) > CLOSED_LIMIT:
        closed.pop(next(iter(closed)))


def fold_tims(row: dict[str, Any], event: SourceEvent, currency: str) -> bool:
    """Fold one TIMS customer, sales order or invoice event into ``row``; False when stale."""
    version = _version(event)
    fields = event.fields
    if event.entity == "customer":
        if version <= row["version"]:
            return False
        row["version"] = version
        if event.change_type != "DELETE":
            row["external_id"] = fields.get("external_id") or None
            row["fields"] = {name: fields.get(name) for name in _CUSTOMER_FIELDS}
        else:
            row["external_id"] = None
        return True
    bucket = "orders" if event.entity == "sales_order" else "invoices"
    if version <= _known_version(row, bucket, event.record_id):
        return False
    if bucket == "orders":
        still_open = event.change_type != "DELETE" and fields.get("status") in OPEN_ORDER_STATUSES
        value = {"v": version, "status": fields.get("status"),
                 "total": _amount(fields.get("total_amount"), "total_amount", currency)}
    else:
        still_open = event.change_type != "DELETE" and fields.get("status") == "open"
        value = {"v": version, "balance": _amount(fields.get("balance_due"), "balance_due", currency)}
        if event.change_type != "DELETE":
            _note_invoice(row, event, version, currency)
    if still_open:
        row[bucket][event.record_id] = value
    else:
        _close(row, bucket, event.record_id, version)
    return True


def _note_invoice(row: dict[str, Any], event: SourceEvent, version: int, currency: str) -> None:
    """The customer's latest invoice (by invoice date, then id); a void one is no invoice."""
    fields, last = event.fields, row["last_invoice"]
    if last and last["id"] == event.record_id and fields.get("status") == "void":
        row["last_invoice"] = None
        return
    if fields.get("status") == "void":
        return
    candidate = {"id": event.record_id, "date": str(fields.get("invoice_date") or ""),
                 "amount": _amount(fields.get("total_amount"), "total_amount", currency), "v": version}
    if last is not None and last["id"] == event.record_id:
        row["last_invoice"] = candidate if version > last["v"] else last
    elif last is None or (candidate["date"], candidate["id"]) > (last["date"], last["id"]):
        row["last_invoice"] = candidate


def summary(row: dict[str, Any], currency: str) -> dict[str, Any]:
    """What a Task carries about the customer: the values of :data:`CONTEXT_VALUES`."""
    orders = row["orders"].values()
    balance = sum((Decimal(i["balance"]) for i in row["invoices"].values()), Decimal(0))
    last = row["last_invoice"] or {}
    fields = row["fields"]
    return {
        "customer_id": row["customer_id"],
        "open_orders": len(orders),
        "open_order_amount": text(quantize(sum((Decimal(o["total"]) for o in orders), Decimal(0)), currency)),
        "balance": text(quantize(balance, currency)),
        "last_invoice": last.get("id"),
        "last_invoice_date": last.get("date") or None,
        "last_invoice_amount": last.get("amount"),
        "payment_terms": fields.get("payment_terms"),
        "credit_limit": fields.get("credit_limit"),
        "total_revenue": fields.get("total_revenue"),
        "status": fields.get("status"),
        "currency": currency,
    }


def describe(context: dict[str, Any]) -> str:
    """The context as lines a salesperson reads in a Task's description."""
    currency = context.get("currency") or ""
    lines = [f"TIMS customer {context['customer_id']}"
             + (f" ({context['status']})" if context.get("status") not in (None, "active") else ""),
             f"Open orders: {context['open_orders']} ({context['open_order_amount']} {currency})",
             f"Open balance: {context['balance']} {currency}"]
    if context.get("last_invoice"):
        lines.append(f"Last invoice: {context['last_invoice']} of {context['last_invoice_date']}, "
                     f"{context['last_invoice_amount']} {currency}")
    else:
        lines.append("Last invoice: none")
    terms = [f"terms {context['payment_terms']}" if context.get("payment_terms") else "",
             f"credit limit {context['credit_limit']} {currency}" if context.get("credit_limit") is not None else ""]
    if any(terms):
        text = "; ".join(t for t in terms if t)
        lines.append(text[0].upper() + text[1:])
    return "\n".join(lines)

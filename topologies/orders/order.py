"""The order record: one per order, folded from Opportunity, OpportunityLineItem and TIMS sales
order events. Pure: no Kafka, no Faust (docs/adr/0021).

A row (a JSON dict in the ``orders`` table) is keyed by the Opportunity Id, or ``so:<sales order
id>`` for an order entered in TIMS. It holds the Opportunity's fields and lines as Salesforce
showed them, the TIMS order as last taken, what we last wrote to the Opportunity (``written``:
the base of each status write, and how our echoes are told), and whether it waits for a link.

- A won Opportunity with lines, never sent and not itself made from a TIMS order, becomes one
  TIMS sales order (batch upsert by ``external_id`` = Opportunity Id: idempotent), once its
  Account's TIMS customer and each line's TIMS item are linked; until then it waits.
- Money is Decimal; a unit price keeps its own precision (a price per pound may have more
  decimals than the currency); each line's amount is quantity × unit price rounded half up to
  the currency's minor unit; the lines must sum to the Opportunity's Amount. Lines and Amount
  come on different channels, so an order that does not add up waits (``total:<key>``) for
  ``lines_grace_seconds``; still wrong then, it is quarantined with the reason (and a later
  event that makes it add up still releases it).
- TIMS status changes reach the Opportunity forward only (``status.advances``).
- A TIMS order with no Opportunity behind it becomes one Closed Won Opportunity on its
  customer's Account (upsert by ``TIMS_Sales_Order_ID__c``), once the customer is linked.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from connectors.envelope import SourceEvent
from topologies.mapping_file import load_model
from topologies.money import MoneyError, currency_code, line_amount, quantize, text, to_decimal, wire
from topologies.waiting_orders import Decision, conclude, hold, seen, tims_progress

__all__ = ["OrderMapping", "Links", "Decision", "load_mapping", "new_row", "row_key_of_tims_order",
           "apply_salesforce", "apply_tims", "recheck", "DEFAULT_MAPPING_DIR", "SALES_ORDER_FIELD"]

DEFAULT_MAPPING_DIR = Path(__file__).with_name("mappings")
SALES_ORDER_FIELD = "TIMS_Sales_Order_ID__c"
SEEN_LIMIT = 100
#: what we keep of an Opportunity (its events restate only changed fields)
OPPORTUNITY_FIELDS = ("Name", "AccountId", "StageName", "CloseDate", "Amount", "CurrencyIsoCode", SALES_ORDER_FIELD)
LINE_FIELDS = ("OpportunityId", "Product2Id", "Quantity", "UnitPrice", "Description")


class OrderMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: an Opportunity's currency when it has no CurrencyIsoCode (orgs without multi-currency)
    currency: str = "USD"
    won_stage: str = "Closed Won"
    opportunity_name: str = "TIMS order {sales_order_id}"
    #: most orders that may wait for one reference; the next is quarantined
    waiting_limit: int = Field(default=1000, ge=1)
    #: seconds a won Opportunity whose lines do not (yet) sum to its Amount waits for more line
    #: events before it is quarantined (its lines and Amount come on different channels)
    lines_grace_seconds: float = Field(default=60.0, ge=0)

    def model_post_init(self, _: Any) -> None:
        currency_code(self.currency)


def load_mapping(directory: Path) -> OrderMapping:
    return load_model(directory / "orders.yaml", OrderMapping)


class Links(Protocol):
    """The flow's link map: ``account:<Account Id>`` → TIMS customer, ``customer:<TIMS customer>``
    → Account Id, ``product2:<Product2 Id>`` → TIMS item."""

    def get(self, key: str) -> str | None: ...


def new_row(key: str) -> dict[str, Any]:
    return {"key": key, "opportunity": {}, "lines": {}, "order_sent": False, "opportunity_created": False,
            "tims": {}, "written": {}, "waiting": None, "held": None, "reported": None, "version": 0, "seen": []}


def row_key_of_tims_order(fields: dict[str, Any], record_id: str) -> str:
    """The Opportunity an order came from (its ``external_id``), else ``so:<id>``."""
    external = str(fields.get("external_id") or "")
    return external if external.startswith("006") else f"so:{record_id}"


def apply_salesforce(row: dict[str, Any], event: SourceEvent, mapping: OrderMapping, links: Links,
                     now_ms: int) -> Decision:
    """An Opportunity or OpportunityLineItem event for the row's Opportunity."""
    if seen(row, event, SEEN_LIMIT):
        return Decision(duplicate=True)
    stated = {name: event.fields.get(name) for name in set(event.fields) | set(event.nulled_fields)}
    if event.entity == "OpportunityLineItem":
        if event.change_type == "DELETE":
            row["lines"].pop(event.record_id, None)
        else:
            line = row["lines"].setdefault(event.record_id, {})
            line.update({k: v for k, v in stated.items() if k in LINE_FIELDS})
        echoes = 0
    else:
        row["opportunity"].update({k: v for k, v in stated.items() if k in OPPORTUNITY_FIELDS})
        echoes = sum(1 for k, v in stated.items() if k in row["written"] and row["written"][k] == v)
    decision = _evaluate(row, mapping, links, now_ms, event)
    decision.echo_fields = echoes
    return decision


def apply_tims(row: dict[str, Any], event: SourceEvent, mapping: OrderMapping, links: Links, now_ms: int) -> Decision:
    """A TIMS sales order event: taken only when it moves the order forward."""
    progress = tims_progress(row, event, SEEN_LIMIT)
    if isinstance(progress, Decision):
        return progress
    row["tims"] = {**progress, **{k: event.fields.get(k) for k in (
                       "ship_date", "tracking_number", "customer_id", "total_amount", "currency", "order_date",
                       "lines", "created_at")}}
    return _evaluate(row, mapping, links, now_ms, event)


def recheck(row: dict[str, Any], mapping: OrderMapping, links: Links, now_ms: int, final: bool = False) -> Decision:
    """A reference the order waited for is linked now; ``final``: its grace for the lines is over."""
    return _evaluate(row, mapping, links, now_ms, None, final)


def _evaluate(row: dict[str, Any], mapping: OrderMapping, links: Links, now_ms: int,
              event: SourceEvent | None, final: bool = False) -> Decision:
    decision = Decision()
    writes: list[tuple[str, str, str, str, dict[str, Any]]] = []
    row["held"] = None
    try:
        if row["key"].startswith("so:"):
            writes += _opportunity_from_tims(row, mapping, links, decision)
        else:
            writes += _order_from_opportunity(row, mapping, links, decision, final)
    except MoneyError as exc:
        hold(row, str(exc), decision)
    return conclude(row, decision, _folded(writes + _status_writes(row)), event, now_ms)


def _folded(writes: list[tuple[str, str, str, str, dict[str, Any]]]) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """One write per target record: the Opportunity made from a TIMS order carries its status too."""
    merged: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for system, sobject, key_field, key, fields in writes:
        merged.setdefault((system, sobject, key_field, key), {}).update(fields)
    return [(*target, fields) for target, fields in merged.items()]


def _lines_disagree(row: dict[str, Any], reason: str, decision: Decision, final: bool) -> None:
    """Lines may still be on their way: wait for them (``total:<key>``) until the grace is over."""
    if final:
        hold(row, reason, decision)
    else:
        row["held"] = reason
        decision.wait_for.append(f"total:{row['key']}")


def _order_from_opportunity(row: dict[str, Any], mapping: OrderMapping, links: Links, decision: Decision,
                            final: bool) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    opportunity = row["opportunity"]
    if (row["order_sent"] or opportunity.get("StageName") != mapping.won_stage
            or opportunity.get(SALES_ORDER_FIELD) or row["tims"]):
        return []
    currency = currency_code(opportunity.get("CurrencyIsoCode") or mapping.currency)
    lines = sorted(row["lines"].items())
    if not lines:
        _lines_disagree(row, "a won Opportunity without lines", decision, final)
        return []
    total = sum((_line_amount(line, currency) for _, line in lines), Decimal(0))
    amount = quantize(to_decimal(opportunity.get("Amount"), "Opportunity Amount"), currency)
    if total != amount:
        _lines_disagree(row, f"lines sum to {text(total)} {currency}, the Opportunity Amount is {text(amount)}",
                        decision, final)
        return []
    customer = links.get(f"account:{opportunity.get('AccountId')}") if opportunity.get("AccountId") else None
    if customer is None:
        decision.wait_for.append(f"account:{opportunity.get('AccountId')}")
    items = {line_id: links.get(f"product2:{line.get('Product2Id')}") for line_id, line in lines}
    decision.wait_for += sorted({f"product2:{row['lines'][i].get('Product2Id')}" for i, item in items.items()
                                 if item is None})
    if decision.wait_for:
        return []
    row["order_sent"] = True
    order_lines = [{"line_no": n, "item_id": items[line_id], "quantity": wire(to_decimal(line.get("Quantity"))),
                    "unit_price": wire(to_decimal(line.get("UnitPrice"))),
                    "description": line.get("Description")}
                   for n, (line_id, line) in enumerate(lines, start=1)]
    fields = {"customer_id": customer, "currency": currency, "order_date": opportunity.get("CloseDate"),
              "lines": order_lines}
    return [("tims", "sales_order", "external_id", row["key"], fields)]


def _line_amount(line: dict[str, Any], currency: str) -> Decimal:
    quantity = to_decimal(line.get("Quantity"), "line Quantity")
    if quantity <= 0:
        raise MoneyError(f"line Quantity {quantity} is not positive")
    return line_amount(quantity, to_decimal(line.get("UnitPrice"), "line UnitPrice"), currency)


def _opportunity_from_tims(row: dict[str, Any], mapping: OrderMapping, links: Links,
                           decision: Decision) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    order = row["tims"]
    if row["opportunity_created"] or not order:
        return []
    currency = currency_code(order.get("currency") or mapping.currency)
    total = sum((_line_amount({"Quantity": line.get("quantity"), "UnitPrice": line.get("unit_price")}, currency)
                 for line in order.get("lines") or []), Decimal(0))
    amount = quantize(to_decimal(order.get("total_amount"), "total_amount"), currency)
    if total != amount:
        hold(row, f"lines sum to {text(total)} {currency}, the order total is {text(amount)}", decision)
        return []
    account = links.get(f"customer:{order.get('customer_id')}")
    if account is None:
        decision.wait_for.append(f"customer:{order.get('customer_id')}")
        return []
    row["opportunity_created"] = True
    fields = {"Name": mapping.opportunity_name.format(**order), "AccountId": account, "StageName": mapping.won_stage,
              "CloseDate": order.get("order_date") or str(order.get("created_at") or "")[:10] or None,
              "Amount": wire(amount), "CurrencyIsoCode": currency}
    row["written"].update(fields)
    return [("salesforce", "Opportunity", SALES_ORDER_FIELD, order["sales_order_id"], fields)]


def _status_writes(row: dict[str, Any]) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """The TIMS order's id, status, ship date and tracking on the Opportunity, where they differ
    from what we last wrote there."""
    order = row["tims"]
    if not order or (row["key"].startswith("so:") and not row["opportunity_created"]):
        return []
    wanted = {SALES_ORDER_FIELD: order["sales_order_id"], "TIMS_Order_Status__c": order["status"],
              "Ship_Date__c": order.get("ship_date"), "Tracking__c": order.get("tracking_number")}
    written = row["written"]
    changes = {k: v for k, v in wanted.items() if (written[k] != v if k in written else v is not None)}
    if not changes:
        return []
    row["written"].update(changes)
    if row["key"].startswith("so:"):
        return [("salesforce", "Opportunity", SALES_ORDER_FIELD, order["sales_order_id"], changes)]
    return [("salesforce", "Opportunity", "Id", row["key"], changes)]

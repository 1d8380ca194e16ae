"""The cart record: one per buyer (normalised email), folded from shop checkouts, shop orders and
Pardot prospects. Pure: no Kafka, no Faust (docs/adr/0035).

- A checkout not completed is the buyer's open cart; it is *abandoned* when no order came
  ``abandon_after_seconds`` after its last change. Then the prospect (upserted by email, as the
  other flows do) gets the cart's value, items, recovery URL and time, and joins the nurture
  list (a membership needs the prospect's id: learnt from the Pardot prospect events, so a new
  prospect joins the list once Pardot shows it).
- An order from the buyer (or the checkout completed) after the cart: a nurtured buyer leaves the
  list and the cart fields are cleared; a buyer never nurtured is left alone. A later new cart
  starts again.
- Money is Decimal (``topologies.money``), written with the currency's minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors.envelope import SinkCommand, SourceEvent
from topologies.mapping_file import load_model
from topologies.money import currency_code, quantize, to_decimal, wire

__all__ = ["CartMapping", "Decision", "load_mapping", "new_row", "apply_checkout", "apply_order", "apply_prospect",
           "due", "DEFAULT_MAPPING_DIR"]

DEFAULT_MAPPING_DIR = Path(__file__).with_name("mappings")
SEEN_LIMIT = 50
MEMBERSHIP_KEY = "listId:prospectId"


class CartFields(BaseModel):
    """The Pardot prospect fields (API names) the cart is written to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: str = "Abandoned_Cart_Value__c"
    items: str = "Abandoned_Cart_Items__c"
    recovery_url: str = "Abandoned_Cart_URL__c"
    abandoned_at: str = "Abandoned_Cart_At__c"


class CartMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: seconds after a checkout's last change without an order before it counts as abandoned
    abandon_after_seconds: float = Field(default=3600.0, ge=0)
    #: the Pardot list of the nurture program (its id); 0: the fields only, no list
    nurture_list_id: int = Field(default=0, ge=0)
    currency: str = "USD"
    fields: CartFields = CartFields()
    #: longest items text written (Pardot text fields hold 255 characters)
    items_length: int = Field(default=255, ge=20)

    def model_post_init(self, _: Any) -> None:
        currency_code(self.currency)


def load_mapping(directory: Path) -> CartMapping:
    return load_model(directory / "abandoned_carts.yaml", CartMapping)


@dataclass
class Decision:
    commands: list[SinkCommand] = field(default_factory=list)
    duplicate: bool = False
    #: epoch ms when the cart is to be looked at again (abandoned by then?); None: no deadline
    due_at: int | None = None


def new_row(email: str) -> dict[str, Any]:
    return {"email": email, "cart": None, "state": "none", "prospect_id": None, "member": False, "written": False,
            "ordered_at": "", "version": 0, "seen": []}


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _seen(row: dict[str, Any], event: SourceEvent) -> bool:
    if event.event_id in row["seen"]:
        return True
    row["seen"] = [*row["seen"], event.event_id][-SEEN_LIMIT:]
    return False


def apply_checkout(row: dict[str, Any], event: SourceEvent, mapping: CartMapping) -> Decision:
    """A shop checkout (full state)."""
    if _seen(row, event):
        return Decision(duplicate=True)
    fields, cart = event.fields, row["cart"] or {}
    updated = str(fields.get("updated_at") or "")
    if cart.get("id") == event.record_id and updated < cart.get("updated_at", ""):
        return Decision()  # an older state of the same checkout
    if fields.get("completed_at"):
        return _ordered(row, mapping, str(fields["completed_at"]), event)
    if cart.get("id") != event.record_id and updated <= row["ordered_at"]:
        return Decision()  # a cart older than the buyer's last order
    row["cart"] = {"id": event.record_id, "updated_at": updated, "url": fields.get("recovery_url"),
                   "currency": fields.get("currency") or mapping.currency, "total": fields.get("total_price"),
                   "lines": [{"sku": line.get("sku"), "title": line.get("title"), "quantity": line.get("quantity")}
                             for line in fields.get("line_items") or []]}
    row["state"] = "open"  # a new or changed cart: abandoned (again) if no order comes in time
    return Decision(due_at=_ms(updated) + int(mapping.abandon_after_seconds * 1000))


def apply_order(row: dict[str, Any], event: SourceEvent, mapping: CartMapping) -> Decision:
    """A shop order by the buyer: the cart is recovered (or was never abandoned)."""
    if _seen(row, event):
        return Decision(duplicate=True)
    return _ordered(row, mapping, str(event.fields.get("created_at") or event.fields.get("updated_at") or ""), event)


def apply_prospect(row: dict[str, Any], event: SourceEvent, mapping: CartMapping) -> Decision:
    """A Pardot prospect with the buyer's email: its id is what a list membership needs."""
    prospect = event.fields.get("id", event.record_id)
    if event.change_type == "DELETE" or prospect in (None, "") or str(prospect) == row["prospect_id"]:
        return Decision()
    row["prospect_id"] = str(prospect)
    decision = Decision()
    if row["state"] == "nurtured" and not row["member"]:
        _join(row, mapping, decision, event)
    return decision


def due(row: dict[str, Any], mapping: CartMapping, now_ms: int) -> Decision:
    """The cart's deadline passed: abandoned unless an order came or the cart changed since."""
    cart = row["cart"]
    if row["state"] != "open" or not cart:
        return Decision()
    deadline = _ms(cart["updated_at"]) + int(mapping.abandon_after_seconds * 1000)
    if now_ms < deadline:
        return Decision(due_at=deadline)
    row["state"], row["written"] = "nurtured", True
    decision = Decision()
    currency = currency_code(cart["currency"])
    value = quantize(to_decimal(cart["total"] or 0, "cart total"), currency)
    names = mapping.fields
    _write(row, decision, None, "prospect", "email", row["email"], {
        names.value: wire(value), names.items: _items(cart["lines"], mapping.items_length),
        names.recovery_url: cart["url"], names.abandoned_at: cart["updated_at"]})
    if row["prospect_id"] is not None and not row["member"]:
        _join(row, mapping, decision, None)
    return decision


def _ordered(row: dict[str, Any], mapping: CartMapping, at: str, event: SourceEvent) -> Decision:
    row["ordered_at"] = max(row["ordered_at"], at)
    cart, decision = row["cart"], Decision()
    if cart is None or cart["updated_at"] > at:
        return decision  # no cart, or a cart begun after this order: it stays
    recovered = row["written"]
    if recovered:
        names = mapping.fields
        _write(row, decision, event, "prospect", "email", row["email"],
               {names.value: None, names.items: None, names.recovery_url: None, names.abandoned_at: None})
        if row["member"] and mapping.nurture_list_id and row["prospect_id"] is not None:
            _write(row, decision, event, "list_membership", MEMBERSHIP_KEY, _membership(row, mapping), {}, "delete")
        row["member"] = row["written"] = False
    row["state"], row["cart"] = "recovered" if recovered else "ordered", None
    return decision


def _join(row: dict[str, Any], mapping: CartMapping, decision: Decision, event: SourceEvent | None) -> None:
    if not mapping.nurture_list_id:
        return
    row["member"] = True
    _write(row, decision, event, "list_membership", MEMBERSHIP_KEY, _membership(row, mapping), {})


def _membership(row: dict[str, Any], mapping: CartMapping) -> str:
    return f"{mapping.nurture_list_id}:{row['prospect_id']}"


def _items(lines: list[dict[str, Any]], limit: int) -> str:
    text = "; ".join(f"{line.get('quantity')} × {line.get('title') or line.get('sku')}"
                     + (f" ({line['sku']})" if line.get("sku") and line.get("title") else "") for line in lines)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _write(row: dict[str, Any], decision: Decision, event: SourceEvent | None, target: str, key_field: str, key: str,
           fields: dict[str, Any], operation: str = "upsert") -> None:
    row["version"] += 1
    decision.commands.append(SinkCommand(
        system="pardot", object=target, operation=operation,  # type: ignore[arg-type]
        external_id_field=key_field, external_id=key, fields=fields, version=row["version"],
        record_key=f"cart:{row['email']}", source_commit_timestamp=event.commit_timestamp if event else None,
        source_event_id=event.event_id if event else None))

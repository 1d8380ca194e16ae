"""The product record: one per TIMS item, folded from TIMS item and Salesforce Product2 events.

Pure: no Kafka, no Faust. A row (a JSON dict, kept in the ``products`` table) holds per mapped
field the winning value (value, source system, source commit time), what each target is known
to hold (``known``: the base of every outbound difference, and how our echoes are recognised),
the Product2 id once Salesforce has created the product, and the ids of its last events.

Rules (docs/adr/0021), as the customer sync's (ADR 0009, 0014): the field's owner (mapping)
wins; an edit elsewhere is written back over and audited as a conflict. A value equal to what
the system is known to hold is no edit (a restatement, or our own write coming back). Outbound
writes are what the golden values and a target's known values differ by, under a version the
record bumps for each change, so the sinks' version guard holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.envelope import SinkCommand, SourceEvent
from topologies.mapping_file import load_model
from topologies.money import MoneyError, currency_code, quantize, text, to_decimal, wire

__all__ = ["FieldRule", "ProductMapping", "load_mapping", "new_row", "apply_event", "Outcome", "Unusable",
           "SALESFORCE_KEY", "DEFAULT_MAPPING_DIR"]

DEFAULT_MAPPING_DIR = Path(__file__).with_name("mappings")
#: Product2's and PricebookEntry's external id: the TIMS item id
SALESFORCE_KEY = "TIMS_Item_Number__c"
SEEN_LIMIT = 50
Kind = Literal["text", "money", "bool"]
System = Literal["tims", "salesforce"]


class Unusable(ValueError):
    """A value that cannot be taken (an amount that is not a number …): the event is quarantined."""


class FieldRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    tims: str = Field(min_length=1)
    salesforce: str = Field(min_length=1)
    owner: System
    kind: Kind = "text"

    def field_in(self, system: str) -> str:
        return self.tims if system == "tims" else self.salesforce


class ProductMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: str = "USD"
    standard_pricebook_id: str = ""
    fields: tuple[FieldRule, ...] = Field(min_length=1)

    def model_post_init(self, _: Any) -> None:
        currency_code(self.currency)
        names = [rule.name for rule in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("a field is mapped twice")


def load_mapping(directory: Path) -> ProductMapping:
    return load_model(directory / "products.yaml", ProductMapping)


def new_row(key: str) -> dict[str, Any]:
    item = None if key.startswith("product2:") else key
    return {"item_id": item, "product2_id": key.removeprefix("product2:") if item is None else None,
            "version": 0, "fields": {}, "known": {"tims": {}, "salesforce": {}, "pricebook": {}},
            "seen": [], "tims_external_id": None}


@dataclass
class Outcome:
    commands: list[SinkCommand] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    echo_fields: int = 0
    duplicate: bool = False
    #: a Product2 id this event linked to the item (for the product map)
    linked_product2: str | None = None


def _clean(rule: FieldRule, raw: Any, currency: str) -> Any:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if rule.kind == "bool":
        if not isinstance(raw, bool):
            raise Unusable(f"{rule.name}: {raw!r} is not true or false")
        return raw
    if rule.kind == "money":
        try:
            amount = quantize(to_decimal(raw, rule.name), currency)
        except MoneyError as exc:
            raise Unusable(str(exc)) from None
        if amount < 0:
            raise Unusable(f"{rule.name}: {amount} is negative")
        return text(amount)
    return str(raw).strip()


def _incoming(event: SourceEvent, mapping: ProductMapping) -> dict[str, Any]:
    """The mapped fields this event states, cleaned (a partial update states only its changes)."""
    stated = set(event.fields) | set(event.nulled_fields)
    return {rule.name: _clean(rule, event.fields.get(rule.field_in(event.source)), mapping.currency)
            for rule in mapping.fields if rule.field_in(event.source) in stated}


def apply_event(row: dict[str, Any], event: SourceEvent, mapping: ProductMapping, ours: bool) -> Outcome:
    """Fold one TIMS item or Product2 event into ``row``; ``ours`` when its origin names us."""
    outcome = Outcome()
    if event.event_id in row["seen"]:
        outcome.duplicate = True
        return outcome
    row["seen"] = [*row["seen"], event.event_id][-SEEN_LIMIT:]
    incoming = _incoming(event, mapping)  # raises Unusable before the row is touched
    system = event.source
    if system == "salesforce" and event.change_type != "DELETE" and row["product2_id"] is None:
        row["product2_id"] = outcome.linked_product2 = event.record_id
    if system == "tims" and "external_id" in event.fields:
        row["tims_external_id"] = event.fields["external_id"]
    rules = {rule.name: rule for rule in mapping.fields}
    known = row["known"][system]
    for name, value in incoming.items():
        if known.get(name, _MISSING) == value:
            outcome.echo_fields += ours
            continue
        known[name] = value
        _decide(row, rules[name], system, value, event.commit_timestamp, outcome)
    _outbound(row, mapping, event, outcome)
    return outcome


_MISSING = object()


def _decide(row: dict[str, Any], rule: FieldRule, system: str, value: Any, at: int, outcome: Outcome) -> None:
    """Take the edit into the golden value, unless the field's owner holds it."""
    current = row["fields"].get(rule.name)
    if current is None or rule.owner == system or current["src"] != rule.owner:
        row["fields"][rule.name] = {"v": value, "src": system, "ts": at}
        return
    if current["v"] != value:
        outcome.conflicts.append({"item_id": row["item_id"], "field": rule.name, "rule": "owner", "owner": rule.owner,
                                  "winner": {"system": rule.owner, "value": current["v"]},
                                  "loser": {"system": system, "value": value, "commit_timestamp": at}})


def _differences(row: dict[str, Any], mapping: ProductMapping, target: str) -> dict[str, Any]:
    known = row["known"][target]
    return {rule.name: row["fields"][rule.name]["v"] for rule in mapping.fields
            if rule.name in row["fields"] and known.get(rule.name, _MISSING) != row["fields"][rule.name]["v"]}


def _outbound(row: dict[str, Any], mapping: ProductMapping, event: SourceEvent, outcome: Outcome) -> None:
    """Commands for what each target lacks, all under one new version of the record."""
    rules = {rule.name: rule for rule in mapping.fields}
    writes: list[tuple[str, str, str, str, dict[str, Any]]] = []
    if row["item_id"] is not None:
        for target, sobject, key_field, key in (("salesforce", "Product2", SALESFORCE_KEY, row["item_id"]),
                                                ("tims", "item", "item_id", row["item_id"])):
            changes = _differences(row, mapping, target)
            row["known"][target].update(changes)
            fields = {rules[name].field_in(target): _out(rules[name], value) for name, value in changes.items()}
            if target == "tims" and row["product2_id"] and row["tims_external_id"] != row["product2_id"]:
                fields["external_id"] = row["tims_external_id"] = row["product2_id"]
            if fields:
                writes.append((target, sobject, key_field, key, fields))
        entry = _pricebook_entry(row, mapping)
        if entry:
            writes.append(("salesforce", "PricebookEntry", SALESFORCE_KEY, row["item_id"], entry))
    if writes:
        row["version"] += 1
    for system, sobject, key_field, key, fields in writes:
        outcome.commands.append(SinkCommand(
            system=system, object=sobject, external_id_field=key_field, external_id=key, fields=fields,
            version=row["version"], record_key=row["item_id"], source_commit_timestamp=event.commit_timestamp,
            source_event_id=event.event_id))


def _out(rule: FieldRule, value: Any) -> Any:
    if rule.kind == "money" and value is not None:
        return wire(to_decimal(value))
    return value


def _pricebook_entry(row: dict[str, Any], mapping: ProductMapping) -> dict[str, Any]:
    """The standard price book's entry for the product: created once Product2 exists and the item
    has a price; afterwards only its price and active flag follow the item."""
    price = (row["fields"].get("unit_price") or {}).get("v")
    if not mapping.standard_pricebook_id or row["product2_id"] is None or price is None:
        return {}
    active = bool((row["fields"].get("active") or {}).get("v", True))
    known = row["known"]["pricebook"]
    fields: dict[str, Any] = {}
    if not known:
        fields.update(Pricebook2Id=mapping.standard_pricebook_id, Product2Id=row["product2_id"])
    if known.get("unit_price") != price:
        fields["UnitPrice"] = wire(to_decimal(price))
    if known.get("active") != active:
        fields["IsActive"] = active
    known.update(unit_price=price, active=active)
    return fields

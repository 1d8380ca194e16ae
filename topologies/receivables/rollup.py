"""Accounts receivable per TIMS customer: invoices and payments folded into a roll-up, and the
writes that carry it to Salesforce and Pardot. Pure: no Kafka, no Faust (docs/adr/0032).

A row (a JSON dict in the ``receivables`` table) is keyed by the TIMS customer id. It holds each
invoice and payment of the customer by its id with the TIMS record ``version`` last taken, the
customer record's credit fields, the ids of the records the roll-up is written to (the linked
Account, Contact and Pardot prospect), and what we last wrote to each.

- **Never counted twice.** An invoice or payment event whose version is not newer than the one
  taken for that record changes nothing (redelivered, replayed, late). A newer version replaces
  the record: a corrected invoice replaces its earlier amount. A delete leaves a tombstone with
  its version, so a late event from before the delete cannot bring the record back.
- **The figures** (all Decimal, rounded half up to the currency's minor unit):
  ``lifetime_revenue`` = Σ totals of the invoices that are not void; ``open_balance`` =
  lifetime revenue − Σ payments (negative: the customer is in credit). For what is overdue,
  each invoice's open amount is its total less the payments applied to it; payments applied to
  no live invoice, and what overpays an invoice, are credit applied to the oldest-due invoices
  first. An invoice is overdue once its due date (``due_date``, else the invoice date plus the
  customer's payment terms) is before today (UTC); ``overdue_amount`` sums the open amounts of
  those, ``days_past_due`` is the age of the oldest. ``credit_hold``: the customer is
  ``on_hold`` in TIMS, or (``credit_hold_over_limit``) its open balance exceeds its credit limit.
- **The last purchase** (for marketing): the latest sales order that is neither a draft nor
  cancelled, by order date then id: its date, and its items' names (the item catalogue's, read
  from the TIMS item events), most valuable line first.
- **One currency.** The roll-up is kept in the mapping's currency; an invoice or payment in
  another is not summed (the event is quarantined with the reason; the row is unchanged).
- **Quiet once agreed.** A target gets the fields whose value differs from what we last wrote
  there, nothing else; a customer with no invoice, no payment and no hold gets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.envelope import SinkCommand, SourceEvent
from topologies.mapping_file import load_model
from quality.anomalies import AnomalyDetector, CustomerChange, MoneyEvent
from topologies.money import MoneyError, currency_code, quantize, text, to_decimal, wire

__all__ = ["ReceivablesMapping", "Decision", "Unusable", "VALUES", "TARGETS", "load_mapping", "new_row", "fold",
           "figures", "evaluate", "observe", "link", "preview", "judge", "release", "money_events", "RULES", "BUCKETS",
           "DEFAULT_MAPPING_DIR", "ENTITIES"]

DEFAULT_MAPPING_DIR = Path(__file__).with_name("mappings")
#: the TIMS entities folded here
ENTITIES = ("invoice", "payment", "customer", "sales_order")
#: the roll-up's values a mapping can send to a target field
VALUES = ("open_balance", "overdue_amount", "days_past_due", "last_invoice_date", "last_invoice_amount",
          "last_payment_date", "last_payment_amount", "lifetime_revenue", "credit_hold", "last_order_date",
          "last_purchased_products")
#: where the row keeps each TIMS entity's records, by id
BUCKETS = {"invoice": "invoices", "payment": "payments", "sales_order": "orders"}
#: sales orders that are no purchase (yet, or any more)
NOT_PURCHASED = frozenset({"draft", "cancelled"})
#: the anomaly rules a mapping may hold (quality.anomalies)
RULES = ("amount_outlier", "duplicate_payment", "non_positive_total", "credit_limit_jump", "payment_terms_change")
#: the longest ``last_purchased_products`` text (a Pardot text field)
PRODUCTS_TEXT_LIMIT = 255
_AMOUNTS = frozenset({"open_balance", "overdue_amount", "last_invoice_amount", "last_payment_amount",
                      "lifetime_revenue"})
#: where a roll-up can go: ``<system>.<object>`` → the field its records are written by
TARGETS = {"salesforce.Account": "Id", "salesforce.Contact": "Id", "pardot.prospect": "id"}
#: days a payment term gives (the invoice date plus these is its due date when it names none)
TERM_DAYS = {"NET10": 10, "NET15": 15, "NET30": 30, "NET45": 45, "NET60": 60, "COD": 0, "PREPAID": 0,
             "DUE_ON_RECEIPT": 0}
_CUSTOMER_FIELDS = ("status", "credit_limit", "payment_terms")


class ReceivablesMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the roll-up's currency (ISO 4217); invoices and payments in another are quarantined
    currency: str = "USD"
    #: credit hold also when the open balance exceeds the customer's credit limit
    credit_hold_over_limit: bool = True
    #: seconds between looks for customers whose figures change with the date (an invoice falls due)
    review_interval_seconds: float = Field(default=3600.0, gt=0)
    #: per target (``salesforce.Account``, ``salesforce.Contact``, ``pardot.prospect``): its field → a roll-up value
    targets: dict[str, dict[str, str]] = Field(default_factory=dict)
    #: the anomaly rules (quality.anomalies) watch new invoices, payments and credit changes
    watch_anomalies: bool = True
    #: the rules whose flagged change is held out of the roll-up until an operator releases it
    #: (``stream-app anomalies release``): amount_outlier, duplicate_payment, non_positive_total,
    #: credit_limit_jump, payment_terms_change
    hold: tuple[str, ...] = ()

    @field_validator("hold")
    @classmethod
    def _rules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for rule in value:
            if rule not in RULES:
                raise ValueError(f"hold: {rule!r} is not one of {', '.join(RULES)}")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return currency_code(value)

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for target, fields in value.items():
            if target not in TARGETS:
                raise ValueError(f"targets: {target} is not one of {', '.join(TARGETS)}")
            for name, source in fields.items():
                if source not in VALUES:
                    raise ValueError(f"targets.{target}.{name}: {source!r} is not one of {', '.join(VALUES)}")
        return value


def load_mapping(directory: Path) -> ReceivablesMapping:
    return load_model(directory / "receivables.yaml", ReceivablesMapping)


class Unusable(ValueError):
    """An event the roll-up cannot take (no version, an amount that is not a number, another currency)."""


@dataclass
class Decision:
    commands: list[SinkCommand] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    #: what the anomaly rules flagged (for ``audit.anomalies``)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    echo_fields: int = 0


def new_row(customer: str) -> dict[str, Any]:
    return {"customer": customer, "version": 0, "record": {}, "invoices": {}, "payments": {}, "orders": {},
            "targets": {}, "written": {}, "waiting_since": None, "review_on": None}


def _version(event: SourceEvent) -> int:
    version = event.fields.get("version")
    if type(version) is not int or version < 1:
        raise Unusable(f"{event.entity} {event.record_id}: version {version!r} is not a positive integer")
    return version


def _amount(value: Any, what: str, currency: str) -> str:
    try:
        return text(quantize(to_decimal(value, what), currency))
    except MoneyError as exc:
        raise Unusable(str(exc)) from None


def _date(value: Any, what: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError:
        raise Unusable(f"{what}: {value!r} is not a date") from None


def fold(row: dict[str, Any], event: SourceEvent, mapping: ReceivablesMapping) -> bool:
    """Fold one TIMS invoice, payment or customer event into ``row``; False when it is not newer
    than what the row holds for that record. Raises :class:`Unusable` (the row unchanged)."""
    version, fields = _version(event), event.fields
    if event.entity == "customer":
        if version <= row["record"].get("v", 0):
            return False
        values = {} if event.change_type == "DELETE" else {n: fields.get(n) for n in _CUSTOMER_FIELDS}
        if values.get("credit_limit") is not None:
            values["credit_limit"] = _amount(values["credit_limit"], "credit_limit", mapping.currency)
        row["record"] = {"v": version, **values}
        return True
    bucket = BUCKETS[event.entity]
    row.setdefault(bucket, {})
    held = row[bucket].get(event.record_id)
    if held is not None and version <= held["v"]:
        return False
    if event.change_type == "DELETE":
        row[bucket][event.record_id] = {"v": version, "gone": True}
        return True
    if bucket == "orders":
        row[bucket][event.record_id] = {"v": version, "date": _date(fields.get("order_date"), "order_date"),
                                        "status": fields.get("status"), "items": _items_by_value(fields.get("lines"))}
        return True
    currency = currency_code(fields.get("currency") or mapping.currency) if fields.get("currency") else mapping.currency
    if currency != mapping.currency:
        raise Unusable(f"{event.entity} {event.record_id} is in {currency}; the roll-up is kept in {mapping.currency} "
                       "(set `currency` in receivables.yaml, or convert in TIMS)")
    if bucket == "invoices":
        row[bucket][event.record_id] = {
            "v": version, "total": _amount(fields.get("total_amount"), "total_amount", currency),
            "date": _date(fields.get("invoice_date"), "invoice_date"), "due": _date(fields.get("due_date"), "due_date"),
            "void": fields.get("status") == "void"}
    else:
        row[bucket][event.record_id] = {
            "v": version, "amount": _amount(fields.get("amount"), "amount", currency),
            "date": _date(fields.get("payment_date"), "payment_date"), "invoice": fields.get("invoice_id") or None}
    return True


def _items_by_value(lines: Any) -> list[str]:
    """An order's item ids, the most valuable line first (each once)."""
    if not isinstance(lines, list):
        return []
    valued = []
    for position, line in enumerate(lines):
        if isinstance(line, dict) and line.get("item_id"):
            try:
                value = to_decimal(line.get("quantity"), "quantity") * to_decimal(line.get("unit_price"), "unit_price")
            except MoneyError:
                value = Decimal(0)
            valued.append((-value, position, str(line["item_id"])))
    items: list[str] = []
    for _, _, item in sorted(valued):
        if item not in items:
            items.append(item)
    return items


def _products_text(items: list[str], names: Callable[[str], str | None]) -> str:
    text_ = ", ".join(names(item) or item for item in items)
    return text_ if len(text_) <= PRODUCTS_TEXT_LIMIT else text_[: PRODUCTS_TEXT_LIMIT - 1] + "…"


def _at(day: str | None, fallback_ms: int) -> datetime:
    if day:
        return datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(fallback_ms / 1000, tz=timezone.utc)


def money_events(row: dict[str, Any], now_ms: int = 0) -> list[MoneyEvent]:
    """The customer's invoices and payments as the anomaly rules read them (held ones included:
    a second copy of a held duplicate is a duplicate too)."""
    out = []
    for bucket, kind, amount in (("invoices", "invoice", "total"), ("payments", "payment", "amount")):
        for record_id, record in row[bucket].items():
            if not record.get("gone") and not record.get("void"):
                out.append(MoneyEvent(record_id, kind, row["customer"], Decimal(record[amount]),
                                      _at(record.get("date"), now_ms)))
    return out


def judge(row: dict[str, Any], event: SourceEvent, before: dict[str, Any] | None, detector: AnomalyDetector,
          mapping: ReceivablesMapping, now_ms: int, decision: Decision) -> None:
    """Run the anomaly rules over a change just folded into ``row`` (``before``: the record as it
    was, None for a new one); a flag of a rule the mapping holds keeps the change out of the
    roll-up until released (:func:`release`)."""
    if not mapping.watch_anomalies or event.change_type == "DELETE":
        return
    if event.entity == "customer":
        new, old = row["record"], before or {}
        flags = [flag for name in ("credit_limit", "payment_terms") if old and old.get(name) != new.get(name)
                 for flag in detector.change(CustomerChange(f"{event.record_id}:v{new['v']}", row["customer"], name,
                                                            old.get(name), new.get(name), _at(None, now_ms)))]
        subject = "record"
    else:
        bucket = BUCKETS.get(event.entity)
        if bucket not in ("invoices", "payments") or before is not None:  # only a new invoice or payment is judged, once
            return
        mine = money_events(row, now_ms)
        this = next((e for e in mine if e.id == event.record_id), None)
        if this is None:
            return
        flags = detector.judge(this, [e for e in mine if e.id != this.id])
        subject = f"{bucket}:{event.record_id}"
    held = next((flag.rule for flag in flags if flag.rule in mapping.hold), None)
    if held and subject == "record":
        row["record_held"], row["record"] = {**row["record"], "held": held}, {**(before or {}), "v": row["record"]["v"]}
    elif held:
        bucket, record_id = subject.split(":", 1)
        row[bucket][record_id]["held"] = held
    for flag in flags:
        decision.anomalies.append({"customer_id": row["customer"], "rule": flag.rule, "score": round(flag.score, 3),
                                   "subject": subject, "event_id": event.event_id, "evidence": flag.evidence,
                                   "held": flag.rule == held})


def release(row: dict[str, Any], subject: str) -> bool:
    """An operator released a held change (``record`` or ``invoices:<id>``/``payments:<id>``);
    False when nothing was held there."""
    if subject == "record":
        held = row.pop("record_held", None)
        if held is None:
            return False
        held.pop("held", None)
        if held.get("v", 0) >= row["record"].get("v", 0):
            row["record"] = held
        return True
    bucket, _, record_id = subject.partition(":")
    record = row.get(bucket, {}).get(record_id) if bucket in ("invoices", "payments") else None
    if not record or not record.get("held"):
        return False
    del record["held"]
    return True


def _due(invoice: dict[str, Any], terms: Any) -> date | None:
    if invoice.get("due"):
        return date.fromisoformat(invoice["due"])
    if invoice.get("date") and terms in TERM_DAYS:
        return date.fromisoformat(invoice["date"]) + timedelta(days=TERM_DAYS[terms])
    return None


def figures(row: dict[str, Any], mapping: ReceivablesMapping, today: date,
            names: Callable[[str], str | None] = lambda _: None) -> tuple[dict[str, Any], str | None]:
    """The roll-up's values (wire form: numbers, ISO dates, bool), and the next date they may
    change by the calendar alone (None: not before another event). ``names``: an item's name."""
    currency = mapping.currency
    invoices = {i: v for i, v in row["invoices"].items() if not v.get("gone") and not v.get("held") and not v["void"]}
    payments = {i: v for i, v in row["payments"].items() if not v.get("gone") and not v.get("held")}
    revenue = sum((Decimal(v["total"]) for v in invoices.values()), Decimal(0))
    paid = sum((Decimal(v["amount"]) for v in payments.values()), Decimal(0))
    open_left = {i: Decimal(v["total"]) for i, v in invoices.items()}
    credit = Decimal(0)
    for payment in payments.values():
        if payment["invoice"] in open_left:
            open_left[payment["invoice"]] -= Decimal(payment["amount"])
        else:
            credit += Decimal(payment["amount"])
    for invoice_id, left in open_left.items():
        if left < 0:
            credit, open_left[invoice_id] = credit - left, Decimal(0)
    terms = row["record"].get("payment_terms")
    dues = {i: _due(v, terms) for i, v in invoices.items()}
    for invoice_id in sorted(open_left, key=lambda i: (dues[i] or date.max, i)):
        used = min(credit, open_left[invoice_id])
        open_left[invoice_id] -= used
        credit -= used
    overdue = [(dues[i], left) for i, left in open_left.items() if left > 0 and dues[i] is not None and dues[i] < today]
    upcoming = [dues[i] for i, left in open_left.items() if left > 0 and dues[i] is not None and dues[i] >= today]
    # the latest by date, then by id (TIMS ids rise with time)
    last_invoice = max(invoices.items(), key=lambda kv: (kv[1]["date"] or "", kv[0]), default=(None, None))[1]
    last_payment = max(payments.items(), key=lambda kv: (kv[1]["date"] or "", kv[0]), default=(None, None))[1]
    balance = revenue - paid
    limit = row["record"].get("credit_limit")
    hold = row["record"].get("status") == "on_hold" or (
        mapping.credit_hold_over_limit and limit is not None and balance > Decimal(limit))
    values: dict[str, Any] = {
        "open_balance": quantize(balance, currency),
        "overdue_amount": quantize(sum((left for _, left in overdue), Decimal(0)), currency),
        "days_past_due": max(((today - due).days for due, _ in overdue), default=0),
        "last_invoice_date": last_invoice["date"] if last_invoice else None,
        "last_invoice_amount": Decimal(last_invoice["total"]) if last_invoice else None,
        "last_payment_date": last_payment["date"] if last_payment else None,
        "last_payment_amount": Decimal(last_payment["amount"]) if last_payment else None,
        "lifetime_revenue": quantize(revenue, currency),
        "credit_hold": bool(hold),
    }
    purchases = {i: v for i, v in row.get("orders", {}).items() if not v.get("gone") and v["status"] not in NOT_PURCHASED}
    last_order = max(purchases.items(), key=lambda kv: (kv[1]["date"] or "", kv[0]), default=(None, None))[1]
    values["last_order_date"] = last_order["date"] if last_order else None
    values["last_purchased_products"] = _products_text(last_order["items"], names) if last_order else None
    wire_values = {name: wire(v) if name in _AMOUNTS and v is not None else v for name, v in values.items()}
    # overdue figures grow every day; an invoice falls due the day after its due date
    turns = ([today + timedelta(days=1)] if overdue else []) + [due + timedelta(days=1) for due in upcoming]
    return wire_values, min(turns).isoformat() if turns else None


def _active(row: dict[str, Any]) -> bool:
    """Whether the customer has anything receivable to show (else nothing is written)."""
    return bool(row["invoices"] or row["payments"] or row.get("orders") or row["record"].get("status") == "on_hold")


def link(row: dict[str, Any], target: str, record_id: str) -> bool:
    """The customer's ``target`` record is ``record_id`` now; False when it already was. A new
    record gets every field again."""
    if row["targets"].get(target) == record_id:
        return False
    row["targets"][target] = record_id
    row["written"][target] = {}
    return True


def observe(row: dict[str, Any], target: str, record_id: str, fields: dict[str, Any], ours: bool | None,
            mapping: ReceivablesMapping, now_ms: int, decision: Decision) -> None:
    """A target record showed our fields: ours (an echo) or an edit made there, which TIMS's
    figures win back (audited; the field is written again)."""
    if row["targets"].get(target) != record_id:
        return
    owned = mapping.targets.get(target, {})
    written = row["written"].setdefault(target, {})
    for name, value in fields.items():
        if name not in owned or name not in written:
            continue
        if ours or _same(written[name], value):
            decision.echo_fields += 1
            continue
        decision.conflicts.append({
            "customer_id": row["customer"], "target": target, "record_id": record_id, "field": name, "rule": "owner",
            "owner": "tims", "winner": {"system": "tims", "value": written[name]},
            "loser": {"system": target.split(".")[0], "value": value, "commit_timestamp": now_ms}})
        del written[name]


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, (int, float)) and not isinstance(ours, bool) and isinstance(theirs, (int, float)):
        return Decimal(repr(ours)) == Decimal(repr(theirs))
    return ours == theirs


def evaluate(row: dict[str, Any], mapping: ReceivablesMapping, today: date, now_ms: int,
             event: SourceEvent | None = None, decision: Decision | None = None,
             names: Callable[[str], str | None] = lambda _: None) -> Decision:
    """The writes that bring each linked target to the roll-up; notes whether the customer waits
    for its Account and when the figures next change by the calendar."""
    decision = decision or Decision()
    if not _active(row):
        row["waiting_since"] = row["review_on"] = None
        return decision
    values, row["review_on"] = figures(row, mapping, today, names)
    waits = "salesforce.Account" in mapping.targets and "salesforce.Account" not in row["targets"]
    row["waiting_since"] = (row["waiting_since"] or now_ms) if waits else None
    changes: list[tuple[str, dict[str, Any]]] = []
    for target, fields in mapping.targets.items():
        if target not in row["targets"]:
            continue
        written = row["written"].setdefault(target, {})
        wanted = {name: values[source] for name, source in fields.items()}
        differ = {name: v for name, v in wanted.items() if name not in written or not _same(written[name], v)}
        if differ:
            written.update(differ)
            changes.append((target, differ))
    if changes:
        row["version"] += 1
    for target, fields in changes:
        system, sobject = target.split(".")
        decision.commands.append(SinkCommand(
            system=system, object=sobject, external_id_field=TARGETS[target], external_id=row["targets"][target],
            fields=fields, version=row["version"], record_key=f"customer:{row['customer']}",
            source_commit_timestamp=event.commit_timestamp if event else None,
            source_event_id=event.event_id if event else None))
    return decision


def preview(mapping: ReceivablesMapping, record_file: Path, today: date | None = None) -> str:
    """``stream-app mappings preview receivables EVENTS.json``: the roll-up of a customer's TIMS
    events (a JSON list; each a source event, or ``{"entity": "invoice", "fields": {...}}``) and
    the fields each target would get."""
    import json

    try:
        records = json.loads(record_file.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{record_file}: not a JSON list of TIMS events ({exc})") from None
    records = records if isinstance(records, list) else [records]
    row = new_row("preview")
    for n, record in enumerate(records, start=1):
        if not isinstance(record, dict) or record.get("entity") not in ENTITIES:
            raise ValueError(f"{record_file}: event {n} is not a TIMS {', '.join(ENTITIES)} event")
        fields = record.get("fields") or {}
        id_field = {"invoice": "invoice_id", "payment": "payment_id", "customer": "customer_id",
                    "sales_order": "sales_order_id"}[record["entity"]]
        event = SourceEvent.model_validate({
            "event_id": f"preview-{n}", "source": "tims", "entity": record["entity"],
            "record_id": str(record.get("record_id") or fields.get(id_field) or f"{record['entity']}-{n}"),
            "change_type": record.get("change_type", "UPDATE"), "fields": {"version": 1, **fields},
            "commit_timestamp": 0})
        try:
            fold(row, event, mapping)
        except Unusable as exc:
            raise ValueError(f"{record_file}: event {n}: {exc}") from None
    day = today or date.today()
    for target in mapping.targets:
        link(row, target, f"<{target} record>")
    values, review_on = figures(row, mapping, day)
    writes = {f"{c.system}.{c.object}": c.fields for c in evaluate(row, mapping, day, 0).commands}
    return json.dumps({"today": day.isoformat(), "roll_up": values, "next_review": review_on, "writes": writes},
                      indent=2)

"""The simulated TIMS database: records, the change feed, and a Python API for "ERP users".

Every write, through the HTTP API (``modified_by`` = the API client's name, ``connect`` for us)
or through this module's API (``modified_by="tims-ui"`` by default: someone working in TIMS),
is validated against the contract, gets a new ``version`` and ``updated_at`` and appends one
:class:`Change` to the feed. A write that changes no value is a no-op, so an echo of our own
write costs nothing and shows up nowhere.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import calendar
import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping

from sandbox.tims.contract import SYSTEM_FIELDS, Contract, FieldError

__all__ = [
    "Change",
    "ChangePage",
    "RecordInvalid",
    "RecordNotFound",
    "TimsError",
    "TimsStore",
    "VersionConflict",
    "WriteResult",
    "UI_USER",
    "format_ts",
    "parse_rfc3339",
    "parse_ts",
]

#: ``modified_by`` of writes made inside TIMS (the Python API stands for its users)
UI_USER = "tims-ui"


class TimsError(Exception):
    """Base of the store's refusals; the server renders each in the contract's error shape."""


class RecordInvalid(TimsError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


class RecordNotFound(TimsError):
    def __init__(self, resource: str, key: str) -> None:
        super().__init__(f"no {resource} record {key}")
        self.resource = resource
        self.key = key


class VersionConflict(TimsError):
    def __init__(self, current: int, expected: int) -> None:
        super().__init__(f"record is at version {current}, not {expected}")
        self.current = current
        self.expected = expected


@dataclass(frozen=True)
class WriteResult:
    record: dict[str, Any]
    created: bool
    changed: bool


@dataclass(frozen=True)
class Change:
    """One committed write, as the change feed and the webhook show it."""

    seq: int
    entity: str
    resource: str
    id: str
    external_id: str | None
    op: str  # "upsert" | "delete"
    version: int
    updated_at: datetime
    modified_by: str
    record: dict[str, Any] = field(repr=False)

    @property
    def change_id(self) -> str:
        return f"{self.seq:012d}"

    @property
    def key(self) -> tuple[datetime, int]:
        return (self.updated_at, self.seq)

    def as_dict(self) -> dict[str, Any]:
        return {
            "change_id": self.change_id,
            "entity": self.entity,
            "resource": self.resource,
            "id": self.id,
            "external_id": self.external_id,
            "op": self.op,
            "version": self.version,
            "updated_at": format_ts(self.updated_at),
            "modified_by": self.modified_by,
            "record": _copy(self.record),
        }


@dataclass(frozen=True)
class ChangePage:
    changes: list[Change]
    next_cursor: str
    has_more: bool


Listener = Callable[[Change], None]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class TimsStore:
    """In-memory TIMS. Not thread-safe: one asyncio loop owns it (the server's)."""

    def __init__(self, contract: Contract | None = None, clock: Callable[[], float] = time.time) -> None:
        self.contract = contract or Contract.load()
        self._clock = clock
        self._listeners: list[Listener] = []
        self.reset()

    # -- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every record and change (listeners stay)."""
        names = list(self.contract.resources)
        self._data: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in names}
        self._by_external: dict[str, dict[str, str]] = {r: {} for r in names}
        self._next_number: dict[str, int] = {r: 1 for r in names}
        self._changes: list[Change] = []
        self._change_keys: list[tuple[datetime, int]] = []
        self._seq = 0

    def snapshot(self) -> dict[str, Any]:
        """Everything, JSON-ready (served at GET /__admin/state)."""
        return {
            "counts": {r: len(rows) for r, rows in self._data.items()},
            "records": {r: [_copy(v) for v in rows.values()] for r, rows in self._data.items()},
            "changes": len(self._changes),
            "last_change_id": self._changes[-1].change_id if self._changes else None,
        }

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(change)`` after every committed change (the webhook sender uses it)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- reads ---------------------------------------------------------------------------

    def get(self, resource: str, record_id: str) -> dict[str, Any]:
        rows = self._rows(resource)
        if record_id not in rows:
            raise RecordNotFound(resource, record_id)
        return _copy(rows[record_id])

    def get_by_external_id(self, resource: str, external_id: str) -> dict[str, Any]:
        record_id = self._by_external[self._check_resource(resource)].get(external_id)
        if record_id is None:
            raise RecordNotFound(resource, f"external_id={external_id}")
        return self.get(resource, record_id)

    def all(self, resource: str) -> list[dict[str, Any]]:
        return [_copy(self._rows(resource)[i]) for i in sorted(self._rows(resource), key=_id_order)]

    def page(self, resource: str, limit: int = 100, after: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Records in id order after ``after``; the flag says whether more follow."""
        ids = sorted((i for i in self._rows(resource) if after is None or _id_order(i) > _id_order(after)),
                     key=_id_order)
        return [self.get(resource, i) for i in ids[:limit]], len(ids) > limit

    def find(self, resource: str, **criteria: Any) -> list[dict[str, Any]]:
        return [r for r in self.all(resource) if all(r.get(k) == v for k, v in criteria.items())]

    # -- writes (HTTP API and Python API) ------------------------------------------------

    def create(self, resource: str, data: Mapping[str, Any], *, modified_by: str = UI_USER,
               at: datetime | float | None = None, trusted: bool = True) -> dict[str, Any]:
        """A new record; TIMS assigns its id. ``trusted`` (TIMS's own users) may also set
        TIMS-maintained fields such as a customer's total_revenue."""
        return self._write(resource, data, None, "create", modified_by, self._ts(at), trusted).record

    def update(self, resource: str, record_id: str, changes: Mapping[str, Any], *,
               modified_by: str = UI_USER, at: datetime | float | None = None,
               if_version: int | None = None, trusted: bool = True) -> WriteResult:
        """Merge ``changes`` into the record (None clears a field)."""
        existing = self.get(resource, record_id)
        return self._write(resource, changes, existing, "merge", modified_by, self._ts(at), trusted, if_version)

    def replace(self, resource: str, record_id: str, data: Mapping[str, Any], *,
                modified_by: str = UI_USER, at: datetime | float | None = None,
                if_version: int | None = None, trusted: bool = True) -> WriteResult:
        """Replace every writable field; those not given go back to their defaults."""
        existing = self.get(resource, record_id)
        return self._write(resource, data, existing, "replace", modified_by, self._ts(at), trusted, if_version)

    def upsert(self, resource: str, data: Mapping[str, Any], *, modified_by: str = UI_USER,
               at: datetime | float | None = None, trusted: bool = True) -> WriteResult:
        """Update the record with this external_id (or id), else create one."""
        return self._upsert(resource, data, modified_by, self._ts(at), trusted)

    def delete(self, resource: str, record_id: str, *, modified_by: str = UI_USER,
               at: datetime | float | None = None, if_version: int | None = None) -> dict[str, Any]:
        existing = self._existing(resource, record_id, if_version)
        ts = self._ts(at)
        info = self.contract.resources[resource]
        del self._data[resource][record_id]
        if existing.get("external_id"):
            self._by_external[resource].pop(existing["external_id"], None)
        gone = {**existing, "version": existing["version"] + 1, "updated_at": format_ts(ts),
                "modified_by": modified_by}
        self._record_change(resource, info.id_field, gone, "delete", ts)
        if resource == "payments" and existing.get("invoice_id"):
            self._refresh_invoice(existing["invoice_id"], modified_by, ts)
        return gone

    def batch_upsert(self, resource: str, records: Iterable[Mapping[str, Any]], *,
                     modified_by: str, trusted: bool = False) -> list[dict[str, Any]]:
        """Upsert each record by external_id, independently, in order; one result per record
        (the BatchUpsertResult schema). All writes share one updated_at."""
        self._check_resource(resource)
        ts = self._ts(None)
        results: list[dict[str, Any]] = []
        for index, data in enumerate(records):
            ext = data.get("external_id") if isinstance(data, Mapping) else None
            result: dict[str, Any] = {"index": index, "external_id": ext if isinstance(ext, str) else None}
            try:
                if not isinstance(data, Mapping):
                    raise RecordInvalid([FieldError("validation_error", "record must be an object",
                                                    f"records[{index}]")])
                if not isinstance(ext, str) or not ext:
                    raise RecordInvalid([FieldError("validation_error", "external_id is required",
                                                    "external_id")])
                outcome = self._upsert(resource, data, modified_by, ts, trusted, by_id=False)
            except RecordInvalid as exc:
                result.update(success=False, error=exc.errors[0].as_dict())
            else:
                info = self.contract.resources[resource]
                result.update(success=True, id=outcome.record[info.id_field], created=outcome.created,
                              changed=outcome.changed, version=outcome.record["version"])
            results.append(result)
        return results

    # -- ERP-user shortcuts ---------------------------------------------------------------

    def upsert_customer(self, external_id: str | None = None, *, modified_by: str = UI_USER,
                        at: datetime | float | None = None, **fields: Any) -> dict[str, Any]:
        """Create or update a customer as a TIMS user would (by external_id when given)."""
        data = dict(fields)
        if external_id is not None:
            data["external_id"] = external_id
        return self.upsert("customers", data, modified_by=modified_by, at=at).record

    def update_customer(self, customer_id: str, *, modified_by: str = UI_USER,
                        at: datetime | float | None = None, **fields: Any) -> dict[str, Any]:
        return self.update("customers", customer_id, fields, modified_by=modified_by, at=at).record

    def customer(self, customer_id: str) -> dict[str, Any]:
        return self.get("customers", customer_id)

    def customer_by_external_id(self, external_id: str) -> dict[str, Any]:
        return self.get_by_external_id("customers", external_id)

    # -- change feed -----------------------------------------------------------------------

    @property
    def changes(self) -> list[Change]:
        return list(self._changes)

    def changes_page(self, cursor: str | None = None, since: datetime | None = None, limit: int = 100,
                     entities: Iterable[str] | None = None) -> ChangePage:
        """Changes after ``cursor`` (or from ``since``) in (updated_at, change_id) order.
        Raises ValueError for a cursor this store did not issue."""
        wanted = set(entities) if entities else None
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        if cursor:
            start_key = decode_cursor(cursor)
            start = bisect.bisect_right(self._change_keys, start_key)
        elif since is not None:
            start_key = (since, 0)
            start = bisect.bisect_left(self._change_keys, start_key)
        else:
            start_key = (_EPOCH, 0)
            start = 0
        # an empty page hands back the position it started from: (since, 0) sorts before any
        # change stamped ``since``, so a later write with that very timestamp is not skipped
        picked: list[Change] = []
        last_key = start_key
        i = start
        while i < len(self._changes) and len(picked) < limit:
            change = self._changes[i]
            last_key = change.key
            if wanted is None or change.entity in wanted:
                picked.append(change)
            i += 1
        has_more = any(wanted is None or c.entity in wanted for c in self._changes[i:])
        return ChangePage(picked, encode_cursor(last_key), has_more)

    # -- internals -------------------------------------------------------------------------

    def _check_resource(self, resource: str) -> str:
        if resource not in self._data:
            raise KeyError(f"unknown TIMS resource {resource!r}; known: {sorted(self._data)}")
        return resource

    def _rows(self, resource: str) -> dict[str, dict[str, Any]]:
        return self._data[self._check_resource(resource)]

    def _existing(self, resource: str, record_id: str, if_version: int | None) -> dict[str, Any]:
        existing = self.get(resource, record_id)
        _check_version(existing, if_version)
        return existing

    def _ts(self, at: datetime | float | None) -> datetime:
        if at is None:
            at = self._clock()
        if isinstance(at, (int, float)):
            at = datetime.fromtimestamp(at, tz=timezone.utc)
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        at = at.astimezone(timezone.utc)
        return at.replace(microsecond=at.microsecond // 1000 * 1000)

    def _upsert(self, resource: str, data: Mapping[str, Any], modified_by: str, ts: datetime,
                trusted: bool, by_id: bool = True) -> WriteResult:
        self._check_resource(resource)
        info = self.contract.resources[resource]
        existing_id: str | None = None
        ext = data.get("external_id")
        if isinstance(ext, str) and ext:
            existing_id = self._by_external[resource].get(ext)
        if existing_id is None and by_id and isinstance(data.get(info.id_field), str):
            existing_id = data[info.id_field] if data[info.id_field] in self._data[resource] else None
        if existing_id is None and resource == "customers" and isinstance(ext, str) and ext:
            existing_id = self._unlinked_customer_with_email(data.get("email"))
        if existing_id is None:
            return self._write(resource, data, None, "create", modified_by, ts, trusted)
        return self._write(resource, data, self.get(resource, existing_id), "merge", modified_by, ts, trusted)

    def _unlinked_customer_with_email(self, email: Any) -> str | None:
        """The contract's adoption rule: an upsert by an unknown external_id takes over the one
        customer with the same email that has no external_id yet, rather than creating a twin."""
        if not isinstance(email, str) or not email.strip():
            return None
        wanted = email.strip().lower()
        matches = [cid for cid, rec in self._data["customers"].items()
                   if not rec.get("external_id") and str(rec.get("email") or "").strip().lower() == wanted]
        return matches[0] if len(matches) == 1 else None

    def _write(self, resource: str, data: Mapping[str, Any], existing: dict[str, Any] | None, mode: str,
               modified_by: str, ts: datetime, trusted: bool, if_version: int | None = None) -> WriteResult:
        """Validate and commit one write. Refusals in order: the shape of what was sent (422),
        the If-Match version (412), references and unique values (422)."""
        self._check_resource(resource)
        contract = self.contract
        info = contract.resources[resource]
        if not isinstance(data, Mapping):
            raise RecordInvalid([FieldError("validation_error", "record must be an object", "(record)")])
        read_only = contract.read_only_fields(resource)
        erp_fields = {f for f in read_only if f not in SYSTEM_FIELDS and f != info.id_field} if trusted else set()
        incoming = contract.strip_read_only(contract.record_schema(resource), dict(data), keep=erp_fields)
        if mode == "merge" and existing is not None:
            candidate = {k: v for k, v in existing.items() if k not in read_only}
        else:
            candidate = contract.defaults(resource)
        candidate.update({k: v for k, v in incoming.items() if k not in erp_fields})
        self._check_shape(resource, candidate, {k: incoming[k] for k in erp_fields & incoming.keys()})
        if existing is not None:
            _check_version(existing, if_version)
        errors = self._reference_errors(resource, candidate, existing)
        if errors:
            raise RecordInvalid(errors)

        record_id = existing[info.id_field] if existing else None
        new = {info.id_field: record_id, **candidate}
        for name in read_only - set(SYSTEM_FIELDS) - {info.id_field}:
            if name in incoming:
                new[name] = incoming[name]
            elif existing is not None and name in existing:
                new[name] = existing[name]
        self._derive_within_range(resource, new)
        if existing is not None:
            before = {k: v for k, v in existing.items() if k not in SYSTEM_FIELDS}
            if before == new:
                return WriteResult(_copy(existing), created=False, changed=False)
        if record_id is None:
            record_id = f"{info.id_prefix}{self._next_number[resource]:06d}"
            self._next_number[resource] += 1
            new[info.id_field] = record_id
        stamp = format_ts(ts)
        new.update(
            modified_by=modified_by,
            created_at=existing["created_at"] if existing else stamp,
            updated_at=stamp,
            version=existing["version"] + 1 if existing else 1,
        )
        new = self._ordered(resource, new)
        self._store(resource, info.id_field, new, existing)
        self._record_change(resource, info.id_field, new, "upsert", ts)
        if resource == "payments":
            for invoice_id in {new.get("invoice_id"), (existing or {}).get("invoice_id")} - {None}:
                self._refresh_invoice(invoice_id, modified_by, ts)
        if resource == "items" and existing is not None and existing.get("sku") != new.get("sku"):
            for level_id in [k for k, v in self._data["stock_levels"].items() if v.get("item_id") == record_id]:
                self._refresh_derived("stock_levels", "stock_level_id", level_id, modified_by, ts)
        return WriteResult(_copy(new), created=existing is None, changed=True)

    def _check_shape(self, resource: str, candidate: dict[str, Any], erp_values: dict[str, Any]) -> None:
        """The record against its schema, and TIMS-maintained values a TIMS user sent against
        theirs; references and unique values are looked up only in a well-formed record."""
        contract = self.contract
        errors = contract.validate(contract.record_schema(resource), candidate)
        for name, value in erp_values.items():
            errors += contract.validate(contract.properties(resource)[name], value, name, skip_read_only=False)
        if errors:
            raise RecordInvalid(errors)

    def _ordered(self, resource: str, record: dict[str, Any]) -> dict[str, Any]:
        """Fields in the schema's order, so records read the same way the contract does."""
        order = list(self.contract.properties(resource))
        return {**{k: record[k] for k in order if k in record}, **record}

    def _reference_errors(self, resource: str, candidate: dict[str, Any],
                          existing: dict[str, Any] | None) -> list[FieldError]:
        errors: list[FieldError] = []
        info = self.contract.resources[resource]
        own_id = existing[info.id_field] if existing else None
        for path, target, ref in self.contract.references(resource, candidate):
            if ref not in self._data.get(target, {}):
                errors.append(FieldError("unknown_reference", f"{path} {ref} does not exist in {target}", path))
        ext = candidate.get("external_id")
        if ext is not None and self._by_external[resource].get(ext, own_id) != own_id:
            errors.append(FieldError("duplicate_value",
                                     f"external_id {ext} already belongs to {self._by_external[resource][ext]}",
                                     "external_id"))
        together = self.contract.unique_together(resource)
        if together and all(candidate.get(name) is not None for name in together):
            wanted = [candidate[name] for name in together]
            for other_id, other in self._data[resource].items():
                if other_id != own_id and [other.get(name) for name in together] == wanted:
                    errors.append(FieldError("duplicate_value", f"{' and '.join(together)} already belong to {other_id}",
                                             together[-1]))
        for name in self.contract.unique_fields(resource):
            value = candidate.get(name)
            if value is None:
                continue
            for other_id, other in self._data[resource].items():
                if other_id != own_id and other.get(name) == value:
                    errors.append(FieldError("duplicate_value", f"{name} {value} already belongs to {other_id}",
                                             name))
        return errors

    def _derive_within_range(self, resource: str, record: dict[str, Any]) -> None:
        """``_derive``, refusing a record whose computed amounts leave the float range (a huge
        quantity times a huge price): stored, they would be answered as invalid JSON."""
        try:
            self._derive(resource, record)
        except OverflowError:
            finite = False
        else:
            finite = all(math.isfinite(v) for v in _numbers(record))
        if not finite:
            raise RecordInvalid([FieldError("validation_error", "computed amounts are out of range", "(record)")])

    def _derive(self, resource: str, record: dict[str, Any]) -> None:
        """Fields TIMS computes: order line amounts and totals, invoice balances, revenue."""
        if resource == "sales_orders":
            total = 0.0
            for position, line in enumerate(record.get("lines") or [], start=1):
                line.setdefault("line_no", position)
                line.setdefault("description", None)
                line["amount"] = round(line["quantity"] * line["unit_price"], 2)
                total += line["amount"]
            record["total_amount"] = round(total, 2)
        elif resource == "invoices":
            paid = sum(p["amount"] for p in self._data["payments"].values()
                       if p.get("invoice_id") == record.get("invoice_id") and record.get("invoice_id"))
            record["balance_due"] = round(record["total_amount"] - paid, 2)
            if record.get("status") != "void":
                record["status"] = "paid" if record["balance_due"] <= 0 else "open"
        elif resource == "customers":
            record.setdefault("total_revenue", 0.0)
        elif resource == "stock_levels":
            record["available"] = record["on_hand"] - record["allocated"]
            record["sku"] = (self._data["items"].get(record["item_id"]) or {}).get("sku", "")

    def _refresh_invoice(self, invoice_id: str, modified_by: str, ts: datetime) -> None:
        self._refresh_derived("invoices", "invoice_id", invoice_id, modified_by, ts)

    def _refresh_derived(self, resource: str, id_field: str, record_id: str, modified_by: str, ts: datetime) -> None:
        """Recompute a record's derived fields after a record they depend on changed; a change
        when they moved (an invoice's balance after a payment, a stock level's SKU)."""
        existing = self._data[resource].get(record_id)
        if existing is None:
            return
        updated = {k: _copy(v) for k, v in existing.items() if k not in SYSTEM_FIELDS}
        self._derive(resource, updated)
        if updated == {k: v for k, v in existing.items() if k not in SYSTEM_FIELDS}:
            return
        updated.update(modified_by=modified_by, created_at=existing["created_at"], updated_at=format_ts(ts),
                       version=existing["version"] + 1)
        self._store(resource, id_field, updated, existing)
        self._record_change(resource, id_field, updated, "upsert", ts)

    def _store(self, resource: str, id_field: str, new: dict[str, Any], existing: dict[str, Any] | None) -> None:
        record_id = new[id_field]
        old_ext = (existing or {}).get("external_id")
        if old_ext and old_ext != new.get("external_id"):
            self._by_external[resource].pop(old_ext, None)
        if new.get("external_id"):
            self._by_external[resource][new["external_id"]] = record_id
        self._data[resource][record_id] = _copy(new)

    def _record_change(self, resource: str, id_field: str, record: dict[str, Any], op: str, ts: datetime) -> None:
        info = self.contract.resources[resource]
        self._seq += 1
        change = Change(
            seq=self._seq, entity=info.entity, resource=resource, id=record[id_field],
            external_id=record.get("external_id"), op=op, version=record["version"], updated_at=ts,
            modified_by=record["modified_by"], record=_copy(record),
        )
        position = bisect.bisect_right(self._change_keys, change.key)
        self._change_keys.insert(position, change.key)
        self._changes.insert(position, change)
        for listener in list(self._listeners):
            listener(change)


def _check_version(existing: Mapping[str, Any], if_version: int | None) -> None:
    if if_version is not None and existing["version"] != if_version:
        raise VersionConflict(existing["version"], if_version)


def _id_order(record_id: str) -> tuple[int, str]:
    """Ids sort by length first, so C1000000 follows C999999."""
    return (len(record_id), record_id)


def format_ts(ts: datetime) -> str:
    """UTC, millisecond precision, 'Z' suffix: sorts lexically in time order."""
    utc = ts.astimezone(timezone.utc)  # %Y is not zero-padded before year 1000 on every libc
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_ts(value: str) -> datetime:
    """An ISO 8601 instant; naive values are taken as UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "+"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def encode_cursor(key: tuple[datetime, int]) -> str:
    raw = json.dumps({"t": format_ts(key[0]), "s": key[1]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        return parse_ts(payload["t"]), int(payload["s"])
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise ValueError(f"invalid cursor: {cursor!r}") from exc


_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
                      re.ASCII)
_FIRST_INSTANT = datetime.min.replace(tzinfo=timezone.utc)
_LAST_INSTANT = datetime.max.replace(tzinfo=timezone.utc)


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 date-time (the contract's ``format: date-time``), in UTC; ValueError otherwise.
    ``datetime.fromisoformat`` takes far more than RFC 3339 and less (year 0, a leap second), so
    the grammar is checked here; instants outside Python's range are clamped to its ends."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    sign, off_h, off_m = match.group(8), match.group(9), match.group(10)
    if not (1 <= month <= 12 and 1 <= day <= _days_in(year, month) and hour <= 23 and minute <= 59
            and second <= 60 and (sign is None or (int(off_h) <= 23 and int(off_m) <= 59))):
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    fraction = match.group(7) or ".0"
    micros = int((fraction[1:] + "000000")[:6])
    offset = timedelta(hours=int(off_h), minutes=int(off_m)) * (-1 if sign == "-" else 1) if sign else timedelta()
    if year == 0:
        return _FIRST_INSTANT
    local = datetime(year, month, day, hour, minute, min(second, 59), micros, tzinfo=timezone.utc)
    try:
        return local - offset
    except OverflowError:
        return _FIRST_INSTANT if offset > timedelta() else _LAST_INSTANT


def _days_in(year: int, month: int) -> int:
    """Days in the month; year 0 (valid in RFC 3339, not in ``datetime``) is a leap year."""
    return calendar.monthrange(year or 2000, month)[1]


def _numbers(value: Any) -> Iterable[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value

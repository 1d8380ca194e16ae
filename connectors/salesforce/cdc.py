"""Salesforce change events → :class:`~connectors.envelope.SourceEvent`: pure functions.

A Pub/Sub event is schemaless Avro; its schema (by schema id) gives the field order that the
header bitmaps index into. Decoding yields one :class:`DecodedChange`: header checked, bitmaps
read to names, compound fields (Name, addresses) flattened to the REST names the rest of the
system uses (``MailingAddress.City`` → ``MailingCity``), epoch dates turned into REST's text
form so that a CDC event and a REST snapshot of the same record look alike. A change that names
several records becomes one SourceEvent per record id, each with a stable event id
(``sf:<transactionKey>:<sequenceNumber>:<recordId>``), so a replay produces the same ids.

Anything that cannot be trusted raises :class:`MalformedEvent` with a reason; the source sends
the raw event to quarantine and goes on.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable, Mapping

from fastavro import parse_schema, schemaless_reader

from connectors.envelope import SourceEvent
from connectors.salesforce.bitmaps import BitmapError, decode_bitmap

__all__ = [
    "MalformedEvent",
    "ChangeSchema",
    "DecodedChange",
    "RECORD_CHANGES",
    "GAP_CHANGES",
    "OVERFLOW",
    "channel_for",
    "decode_change",
    "change_events",
    "snapshot_event",
    "gap_delete_event",
    "event_id",
    "snapshot_event_id",
    "format_datetime",
    "parse_datetime_ms",
    "soql_datetime",
]

RECORD_CHANGES = frozenset({"CREATE", "UPDATE", "DELETE", "UNDELETE"})
GAP_CHANGES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"})
OVERFLOW = "GAP_OVERFLOW"
_HEADER = "ChangeEventHeader"
_REQUIRED_HEADER = ("entityName", "changeType", "transactionKey", "commitTimestamp")
_EPOCH = dt.date(1970, 1, 1)


class MalformedEvent(ValueError):
    """An event that cannot be decoded or trusted; ``reason`` goes to quarantine with it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def channel_for(entity: str) -> str:
    """``Lead`` → ``/data/LeadChangeEvent``; ``Foo__c`` → ``/data/Foo__ChangeEvent``."""
    if entity.endswith("__c"):
        return f"/data/{entity[:-3]}__ChangeEvent"
    return f"/data/{entity}ChangeEvent"


def format_datetime(epoch_ms: int) -> str:
    """Epoch ms → REST's ``2024-01-31T12:00:00.000+0000``."""
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}+0000"


def parse_datetime_ms(text: str) -> int:
    """REST datetime text (``…+0000``, ``…Z``, ``…+00:00``) → epoch ms."""
    value = text.strip().replace("Z", "+00:00")
    if len(value) >= 5 and value[-5] in "+-" and value[-3] != ":":
        value = f"{value[:-2]}:{value[-2:]}"
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp() * 1000)


def soql_datetime(epoch_ms: int) -> str:
    """A SOQL datetime literal (UTC, no quotes)."""
    moment = dt.datetime.fromtimestamp(max(epoch_ms, 0) / 1000, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _date_text(days: int) -> str:
    return (_EPOCH + dt.timedelta(days=days)).isoformat()


@dataclass(frozen=True)
class _Field:
    name: str
    #: flat REST names of a compound's parts, by part name; None for a plain field
    parts: dict[str, str] | None
    convert: Callable[[Any], Any] | None


def _nested_record(avro_type: Any, named: Mapping[str, Any]) -> Mapping[str, Any] | None:
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    for branch in branches:
        if isinstance(branch, Mapping) and branch.get("type") == "record":
            return branch
        if isinstance(branch, str) and branch in named:
            return named[branch]
    return None


def _flat_part(parent: str, record_name: str, part: str) -> str:
    """REST name of a compound part: a person's name parts keep their own name
    (Name.FirstName → FirstName); address parts take the field's prefix
    (MailingAddress.City → MailingCity, Lead's Address.City → City)."""
    if parent == "Name" or record_name.endswith("PersonName"):
        return part
    if parent.endswith("Address"):
        return parent[: -len("Address")] + part
    return parent + part


def _converter(doc: str | None) -> Callable[[Any], Any] | None:
    kind = (doc or "").rpartition(":")[2].lower()
    if kind == "datetime":
        return lambda v: format_datetime(int(v)) if isinstance(v, int) else v
    if kind == "date":
        return lambda v: _date_text(v) if isinstance(v, int) else v
    return None


@dataclass(frozen=True)
class ChangeSchema:
    """One change-event schema (by schema id): the Avro reader plus the flattening plan."""

    schema_id: str
    schema: Mapping[str, Any]
    parsed: Any = field(repr=False)
    fields: tuple[_Field, ...] = field(repr=False)

    @classmethod
    def from_json(cls, schema_id: str, text: str) -> "ChangeSchema":
        try:
            schema = json.loads(text)
            parsed = parse_schema(schema)
        except Exception as exc:
            raise MalformedEvent(f"unusable schema {schema_id}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(schema, Mapping) or schema.get("type") != "record":
            raise MalformedEvent(f"unusable schema {schema_id}: not a record schema")
        top = list(schema.get("fields") or [])
        if not top or top[0].get("name") != _HEADER:
            raise MalformedEvent(f"unusable schema {schema_id}: the first field is not {_HEADER}")
        named = _named_records(schema)
        fields: list[_Field] = []
        for spec in top[1:]:
            name = str(spec["name"])
            nested = _nested_record(spec["type"], named)
            if nested is None:
                fields.append(_Field(name, None, _converter(spec.get("doc"))))
                continue
            record_name = str(nested.get("name", ""))
            parts = {str(p["name"]): _flat_part(name, record_name, str(p["name"])) for p in nested.get("fields", [])}
            fields.append(_Field(name, parts, None))
        return cls(schema_id, schema, parsed, tuple(fields))

    @property
    def entity(self) -> str | None:
        """The entity the schema is for, from its record name (``ContactChangeEvent``)."""
        name = str(self.schema.get("name", ""))
        if name.endswith("__ChangeEvent"):
            return name[: -len("__ChangeEvent")] + "__c"
        if name.endswith("ChangeEvent"):
            return name[: -len("ChangeEvent")] or None
        return None

    def flat_field_names(self) -> list[str]:
        """Every field as REST names it, in schema order (the SELECT list of a refetch)."""
        names: list[str] = []
        for f in self.fields:
            names.extend(f.parts.values() if f.parts else [f.name])
        return names

    def flatten(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Decoded Avro record → ``{flat name: value}`` for every field (header excluded)."""
        out: dict[str, Any] = {}
        for f in self.fields:
            value = record.get(f.name)
            if f.parts is None:
                out[f.name] = f.convert(value) if f.convert and value is not None else value
                continue
            nested = value if isinstance(value, Mapping) else {}
            for part, flat in f.parts.items():
                out[flat] = nested.get(part)
        return out

    def flat_names(self, names: Iterable[str]) -> list[str]:
        """Decoded bitmap names (``Email``, ``MailingAddress.City``, a whole ``MailingAddress``)
        → flat names. A compound named alone stands for all of its parts."""
        by_name = {f.name: f for f in self.fields}
        listed = list(names)
        with_parts = {n.partition(".")[0] for n in listed if "." in n}
        out: list[str] = []
        for name in listed:
            parent, dot, part = name.partition(".")
            spec = by_name.get(parent)
            if spec is None or spec.parts is None:
                out.append(name)
            elif dot:
                out.append(spec.parts.get(part, part))
            elif parent not in with_parts:
                out.extend(spec.parts.values())
        return list(dict.fromkeys(out))


def _named_records(schema: Any) -> dict[str, Any]:
    """Named record types by plain and full name, for fields that reference them by name."""
    found: dict[str, Any] = {}

    def walk(node: Any, space: str | None) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, space)
        elif isinstance(node, Mapping):
            if node.get("type") == "record":
                name = str(node.get("name", ""))
                inner = node.get("namespace", space)
                full = name if "." in name else f"{inner}.{name}" if inner else name
                found.setdefault(name, node)
                found.setdefault(full, node)
                for child in node.get("fields", []):
                    walk(child.get("type"), full.rpartition(".")[0] or None)
            elif isinstance(node.get("type"), (Mapping, list)):
                walk(node["type"], space)
            elif node.get("type") in ("array", "map"):
                walk(node.get("items", node.get("values")), space)

    walk(schema, schema.get("namespace") if isinstance(schema, Mapping) else None)
    return found


@dataclass(frozen=True)
class DecodedChange:
    """One change event, checked and flattened, before it is split per record."""

    entity: str
    change_type: str
    record_ids: tuple[str, ...]
    transaction_key: str
    sequence_number: int
    commit_timestamp: int
    commit_user: str | None
    change_origin: str | None
    #: flat name → value, for every field of the schema
    values: dict[str, Any]
    changed_fields: tuple[str, ...]
    nulled_fields: tuple[str, ...]
    #: large text fields sent as a diff, not a value: their values must be read over REST
    diff_fields: tuple[str, ...]
    replay_id: bytes

    @property
    def is_gap(self) -> bool:
        return self.change_type in GAP_CHANGES

    @property
    def is_overflow(self) -> bool:
        return self.change_type == OVERFLOW

    @property
    def is_wildcard(self) -> bool:
        """Record ids like ``001*`` stand for every record of the entity (after some schema changes)."""
        return any(rid.endswith("*") for rid in self.record_ids)


def decode_change(
    payload: bytes,
    schema: ChangeSchema,
    replay_id: bytes,
    known_entities: Collection[str] | None = None,
) -> DecodedChange:
    """Decode and check one event; raise :class:`MalformedEvent` saying what is wrong."""
    buffer = io.BytesIO(payload)
    try:
        record = schemaless_reader(buffer, schema.parsed)
    except Exception as exc:
        raise MalformedEvent(f"bad Avro payload for schema {schema.schema_id}: {type(exc).__name__}: {exc}") from exc
    if buffer.tell() != len(payload):
        raise MalformedEvent(
            f"bad Avro payload for schema {schema.schema_id}: {len(payload) - buffer.tell()} bytes left after the record")
    if not isinstance(record, Mapping) or not isinstance(record.get(_HEADER), Mapping):
        raise MalformedEvent("no ChangeEventHeader in the event")
    header = record[_HEADER]
    missing = [key for key in _REQUIRED_HEADER if not header.get(key)]
    change_type = str(header.get("changeType") or "")
    record_ids = tuple(str(r) for r in header.get("recordIds") or ())
    if not record_ids and change_type != OVERFLOW:
        missing.append("recordIds")
    if missing:
        raise MalformedEvent(f"missing header fields: {', '.join(missing)}")
    if change_type not in RECORD_CHANGES | GAP_CHANGES | {OVERFLOW}:
        raise MalformedEvent(f"unknown changeType {change_type!r}")
    entity = str(header["entityName"])
    if known_entities is not None and entity not in known_entities:
        raise MalformedEvent(f"unknown entity {entity!r} (this channel carries {', '.join(sorted(known_entities))})")
    if schema.entity is not None and schema.entity != entity:
        raise MalformedEvent(f"unknown entity {entity!r}: the event's schema is for {schema.entity}")
    try:
        changed, nulled, diff = (
            tuple(schema.flat_names(decode_bitmap(schema.schema, header.get(key) or [])))
            for key in ("changedFields", "nulledFields", "diffFields")
        )
    except BitmapError as exc:
        raise MalformedEvent(f"bad field bitmap: {exc}") from exc
    return DecodedChange(
        entity=entity,
        change_type=change_type,
        record_ids=record_ids,
        transaction_key=str(header["transactionKey"]),
        sequence_number=int(header.get("sequenceNumber") or 0),
        commit_timestamp=int(header["commitTimestamp"]),
        commit_user=str(header.get("commitUser") or "") or None,
        change_origin=str(header.get("changeOrigin") or "") or None,
        values=schema.flatten(record),
        changed_fields=changed,
        nulled_fields=nulled,
        diff_fields=diff,
        replay_id=replay_id,
    )


def event_id(change: DecodedChange, record_id: str) -> str:
    return f"sf:{change.transaction_key}:{change.sequence_number}:{record_id}"


def snapshot_event_id(entity: str, record_id: str, last_modified_ms: int) -> str:
    """Same record in the same state → same id, however often it is read."""
    return f"sf:snapshot:{entity}:{record_id}:{last_modified_ms}"


def _position(channel: str, replay_id: bytes | None) -> dict[str, Any]:
    position: dict[str, Any] = {"channel": channel}
    if replay_id:
        position["replay_id"] = replay_id.hex()
    return position


def change_events(change: DecodedChange, channel: str) -> list[SourceEvent]:
    """A record change (CREATE, UPDATE, DELETE, UNDELETE) → one SourceEvent per record id.

    CREATE and UNDELETE carry every field (full state). UPDATE carries the changed fields (with
    no changedFields bitmap, the fields that have a value) and every nulled field as None, even
    one changedFields leaves out: a blanked field has no value to find it by. Fields sent as a
    diff are listed as changed but left out of ``fields`` until read over REST."""
    if change.change_type not in RECORD_CHANGES:
        raise ValueError(f"{change.change_type} is not a record change; refetch or resync instead")
    full_state = change.change_type in ("CREATE", "UNDELETE")
    if change.change_type == "DELETE":
        fields: dict[str, Any] = {}
    elif full_state:
        fields = dict(change.values)
    else:
        changed_names = change.changed_fields or tuple(k for k, v in change.values.items() if v is not None)
        names = dict.fromkeys(changed_names + change.nulled_fields)
        fields = {name: None if name in change.nulled_fields else change.values.get(name) for name in names}
    for name in change.diff_fields:
        fields.pop(name, None)
    changed = list(dict.fromkeys(change.changed_fields + change.nulled_fields))
    return [
        SourceEvent(
            event_id=event_id(change, record_id),
            source="salesforce",
            entity=change.entity,
            record_id=record_id,
            change_type=change.change_type,  # type: ignore[arg-type]
            fields=fields,
            full_state=full_state,
            changed_fields=changed,
            nulled_fields=list(change.nulled_fields),
            commit_timestamp=change.commit_timestamp,
            change_origin=change.change_origin,
            commit_user=change.commit_user,
            position=_position(channel, change.replay_id),
        )
        for record_id in change.record_ids
    ]


def snapshot_event(
    entity: str,
    row: Mapping[str, Any],
    position: Mapping[str, Any],
    fallback_timestamp: int,
) -> SourceEvent:
    """A record read over REST → its full state (SNAPSHOT), or DELETE when the row is deleted
    (``IsDeleted`` from queryAll). The commit time is the row's LastModifiedDate."""
    record_id = str(row["Id"])
    modified = row.get("LastModifiedDate")
    commit = parse_datetime_ms(modified) if isinstance(modified, str) and modified else fallback_timestamp
    deleted = bool(row.get("IsDeleted"))
    fields = {k: v for k, v in row.items() if k not in ("Id", "IsDeleted", "attributes")}
    return SourceEvent(
        event_id=snapshot_event_id(entity, record_id, commit),
        source="salesforce",
        entity=entity,
        record_id=record_id,
        change_type="DELETE" if deleted else "SNAPSHOT",
        fields={} if deleted else fields,
        full_state=not deleted,
        commit_timestamp=commit,
        commit_user=str(row.get("LastModifiedById") or "") or None,
        position=dict(position),
    )


def gap_delete_event(change: DecodedChange, record_id: str, channel: str) -> SourceEvent:
    """A gap event's record that REST no longer returns: it was deleted."""
    return SourceEvent(
        event_id=event_id(change, record_id),
        source="salesforce",
        entity=change.entity,
        record_id=record_id,
        change_type="DELETE",
        commit_timestamp=change.commit_timestamp,
        change_origin=change.change_origin,
        commit_user=change.commit_user,
        position=_position(channel, change.replay_id),
    )

"""Avro schemas of Salesforce change events, built from a plain field list.

The Pub/Sub API hands out change events as schemaless Avro; clients decode them with the schema
from GetSchema and read the header bitmaps by field *position* in that schema. So the shape must
match Salesforce's: the ``ChangeEventHeader`` record first (position 0), then one nullable field
per record field in a fixed order, and compound fields (a person's Name, addresses) as nested
records, which is what gives bitmaps their ``P-0x…`` child entries.

A field list is ``[(name, kind), …]`` so that nothing here depends on the simulated org's
describe; :func:`specs_from_describe` adapts describe output when the org has it. Kinds:
``string``, ``boolean``, ``int``, ``long``, ``double``, ``datetime`` (Avro long, epoch ms),
``date`` (Avro int, days since the epoch), and the compounds ``name`` and ``address``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "FieldSpec",
    "NAMESPACE",
    "CHANGE_TYPES",
    "COMPOUND_CHILDREN",
    "header_schema",
    "change_event_schema",
    "schema_json",
    "schema_id",
    "flat_field_paths",
    "build_record",
    "coerce_value",
    "avro_kind",
    "specs_from_describe",
]

FieldSpec = tuple[str, str]  # (field API name, kind)

NAMESPACE = "com.sforce.eventbus"

#: ChangeEventHeader.changeType symbols, in Salesforce's order.
CHANGE_TYPES = (
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
)

#: children of each compound kind, in schema order
COMPOUND_CHILDREN: dict[str, tuple[str, ...]] = {
    "name": ("Salutation", "FirstName", "LastName"),
    "address": ("Street", "City", "State", "PostalCode", "Country"),
}
#: Avro record names of the compound kinds (Salesforce's own)
_COMPOUND_RECORD = {"name": "Switchable_PersonName", "address": "Address"}

_PRIMITIVE = {
    "string": "string",
    "boolean": "boolean",
    "int": "int",
    "long": "long",
    "double": "double",
    "datetime": "long",
    "date": "int",
}
_DOC = {"datetime": "Data:DateTime", "date": "Data:Date"}


def _string_array() -> dict[str, Any]:
    return {"type": "array", "items": "string"}


def header_schema() -> dict[str, Any]:
    """The ChangeEventHeader record, fields in the order Salesforce documents."""
    return {
        "type": "record",
        "name": "ChangeEventHeader",
        "namespace": NAMESPACE,
        "fields": [
            {"name": "entityName", "type": "string"},
            {"name": "recordIds", "type": _string_array()},
            {
                "name": "changeType",
                "type": {"type": "enum", "name": "ChangeType", "namespace": NAMESPACE, "symbols": list(CHANGE_TYPES)},
            },
            {"name": "changeOrigin", "type": "string"},
            {"name": "transactionKey", "type": "string"},
            {"name": "sequenceNumber", "type": "int"},
            {"name": "commitTimestamp", "type": "long"},
            {"name": "commitNumber", "type": "long"},
            {"name": "commitUser", "type": "string"},
            {"name": "nulledFields", "type": _string_array()},
            {"name": "diffFields", "type": _string_array()},
            {"name": "changedFields", "type": _string_array()},
        ],
    }


def _nullable(avro_type: Any) -> list[Any]:
    return ["null", avro_type]


def change_event_schema(entity: str, fields: Sequence[FieldSpec]) -> dict[str, Any]:
    """The ``<Entity>ChangeEvent`` record schema (a dict ready for ``json.dumps``).

    Named compound records are defined at first use and referenced by full name after that,
    as Avro requires (an Account has both BillingAddress and ShippingAddress)."""
    seen_names: set[str] = set()
    seen_types: set[str] = set()
    out: list[dict[str, Any]] = [
        {"name": "ChangeEventHeader", "type": header_schema(), "doc": "Data:ChangeEventHeader"}
    ]
    for name, kind in fields:
        if name in seen_names or name == "ChangeEventHeader":
            raise ValueError(f"{entity}: field {name!r} listed twice")
        seen_names.add(name)
        if kind in COMPOUND_CHILDREN:
            record_name = _COMPOUND_RECORD[kind]
            if record_name in seen_types:
                avro_type: Any = f"{NAMESPACE}.{record_name}"
            else:
                seen_types.add(record_name)
                avro_type = {
                    "type": "record",
                    "name": record_name,
                    "namespace": NAMESPACE,
                    "fields": [
                        {"name": child, "type": _nullable("string"), "default": None}
                        for child in COMPOUND_CHILDREN[kind]
                    ],
                }
            out.append({"name": name, "type": _nullable(avro_type), "default": None, "doc": f"Data:{kind}"})
        elif kind in _PRIMITIVE:
            field: dict[str, Any] = {"name": name, "type": _nullable(_PRIMITIVE[kind]), "default": None}
            if kind in _DOC:
                field["doc"] = _DOC[kind]
            out.append(field)
        else:
            raise ValueError(f"{entity}.{name}: unknown kind {kind!r}")
    return {"type": "record", "name": f"{_event_name(entity)}", "namespace": NAMESPACE, "fields": out}


def _event_name(entity: str) -> str:
    return f"{entity[:-3]}__ChangeEvent" if entity.endswith("__c") else f"{entity}ChangeEvent"


def schema_json(schema: Mapping[str, Any]) -> str:
    """Canonical JSON text of a schema (sorted keys, no spaces), so the id below is stable."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def schema_id(schema: Mapping[str, Any]) -> str:
    """A stable fingerprint of the schema, the way Salesforce ids schemas by their hash."""
    return hashlib.sha256(schema_json(schema).encode()).hexdigest()[:22]


def _compound_prefix(name: str, kind: str) -> str:
    if kind == "name":
        return ""
    return name[: -len("Address")] if name.endswith("Address") else name


def flat_field_paths(fields: Sequence[FieldSpec]) -> dict[str, tuple[str, str | None]]:
    """Map REST-style flat names to schema paths: ``Email`` → (Email, None),
    ``MailingStreet`` → (MailingAddress, Street), ``FirstName`` → (Name, FirstName).

    A compound's own name also maps to itself (``MailingAddress`` → (MailingAddress, None))."""
    paths: dict[str, tuple[str, str | None]] = {}
    for name, kind in fields:
        paths[name] = (name, None)
        if kind in COMPOUND_CHILDREN:
            prefix = _compound_prefix(name, kind)
            for child in COMPOUND_CHILDREN[kind]:
                paths.setdefault(prefix + child, (name, child))
    return paths


def coerce_value(kind: str, value: Any) -> Any:
    """Turn a REST-ish value (ISO strings, numbers, bools) into what the Avro field holds."""
    if value is None:
        return None
    if kind == "datetime":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, _dt.datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
            return int(moment.timestamp() * 1000)
        text = str(value).replace("Z", "+00:00")
        if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":  # 2024-01-01T00:00:00.000+0000
            text = text[:-2] + ":" + text[-2:]
        return coerce_value(kind, _dt.datetime.fromisoformat(text))
    if kind == "date":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, _dt.datetime):
            value = value.date()
        if not isinstance(value, _dt.date):
            value = _dt.date.fromisoformat(str(value)[:10])
        return (value - _dt.date(1970, 1, 1)).days
    if kind == "boolean":
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return bool(value)
    if kind in ("int", "long"):
        return int(value)
    if kind == "double":
        return float(value)
    return value if isinstance(value, str) else str(value)


def build_record(
    fields: Sequence[FieldSpec],
    values: Mapping[str, Any],
    include: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Top-level Avro field values (header excluded) from flat REST-style ``values``.

    Only flat names in ``include`` (default: all keys of ``values``) are carried; everything
    else is null, as Salesforce sends unchanged fields on UPDATE. Unknown names are ignored.
    A compound becomes a nested record when at least one of its carried children has a value."""
    kinds = dict(fields)
    paths = flat_field_paths(fields)
    wanted = set(values) if include is None else set(include)
    record: dict[str, Any] = {name: None for name, _ in fields}
    nested: dict[str, dict[str, Any]] = {}
    for flat in wanted:
        if flat not in paths or flat not in values:
            continue
        top, child = paths[flat]
        kind = kinds[top]
        if child is None:
            if kind in COMPOUND_CHILDREN:  # a whole compound given as a dict
                given = values[flat]
                if isinstance(given, Mapping):
                    for key in COMPOUND_CHILDREN[kind]:
                        if given.get(key) is not None:
                            nested.setdefault(top, {})[key] = coerce_value("string", given[key])
                continue
            record[top] = coerce_value(kind, values[flat])
        elif values[flat] is not None:
            nested.setdefault(top, {})[child] = coerce_value("string", values[flat])
    for top, children in nested.items():
        record[top] = {child: children.get(child) for child in COMPOUND_CHILDREN[kinds[top]]}
    return record


_SF_TYPE_KIND = {
    "boolean": "boolean",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "int": "int",
    "long": "long",
    "date": "date",
    "datetime": "datetime",
    "address": "address",
}


def avro_kind(salesforce_type: str) -> str:
    """The kind for a describe field type (``email``, ``picklist``, ``reference``… are strings)."""
    return _SF_TYPE_KIND.get(salesforce_type.lower(), "string")


def _attr(row: Any, key: str, default: Any = None) -> Any:
    return row.get(key, default) if isinstance(row, Mapping) else getattr(row, key, default)


def specs_from_describe(entity: str, describe: Iterable[Any]) -> list[FieldSpec]:
    """A field list from describe rows (objects or dicts with ``name`` and ``type``).

    ``Id``, ``IsDeleted`` and ``SystemModstamp`` are left out (change events carry none of
    them). Name and address parts (FirstName, MailingStreet…) fold into their compound, which
    takes the place of its first part: by ``compound_field_name`` when describe gives it (as
    the simulated org's FieldDef does), else by the parts' names."""
    rows = [
        (str(_attr(row, "name")), str(_attr(row, "type", "string")), _attr(row, "compound_field_name"),
         bool(_attr(row, "compound", False)))
        for row in describe
    ]
    rows = [row for row in rows if row[0] not in ("Id", "IsDeleted", "SystemModstamp")]
    names = {name for name, *_ in rows}
    person = entity in ("Lead", "Contact") and bool(names & set(COMPOUND_CHILDREN["name"]))
    address_prefixes = {
        name[: -len(child)] for name, *_ in rows for child in ("Street", "PostalCode") if name.endswith(child)
    }
    specs: list[FieldSpec] = []
    emitted: set[str] = set()

    def emit(name: str, kind: str) -> None:
        if name not in emitted:
            emitted.add(name)
            specs.append((name, kind))

    def compound_kind(name: str) -> str:
        return "name" if name == "Name" else "address"

    for name, sf_type, part_of, is_compound in rows:
        if part_of:
            emit(part_of, compound_kind(part_of))
        elif is_compound or sf_type.lower() == "address":
            emit(name, compound_kind(name))
        elif person and (name == "Name" or name in COMPOUND_CHILDREN["name"]):
            emit("Name", "name")
        else:
            prefix = next(
                (p for p in address_prefixes
                 if name == p + "Address" or any(name == p + child for child in COMPOUND_CHILDREN["address"])),
                None,
            )
            emit(prefix + "Address" if prefix is not None else name,
                 "address" if prefix is not None else avro_kind(sf_type))
    return specs

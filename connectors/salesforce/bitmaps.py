"""Salesforce change-event field bitmaps: field names ⇄ ``['0x…', 'P-0x…']``.

Over the Pub/Sub API, ``changedFields``, ``nulledFields`` and ``diffFields`` carry bitmaps, not
names, to save space. The first entry ``0x…`` is a hex number over the schema's top-level
fields: bit i, counted from the least significant bit, is the field at position i (position 0
is ChangeEventHeader). An entry ``P-0x…`` is the same over the fields of the compound (nested
record) field at top-level position P, e.g. the parts of an address. Names use dots for nested
fields: ``MailingAddress.Street``. Both directions work on the schema as JSON (a dict, or its
text), including named types that are referenced by name after their first definition.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["encode_bitmap", "decode_bitmap", "bits_to_hex", "hex_to_bits", "BitmapError"]


class BitmapError(ValueError):
    """A name not in the schema, or a bitmap entry that does not fit it."""


def bits_to_hex(positions: Iterable[int]) -> str:
    """``{0, 2}`` → ``'0x05'``: upper-case hex, whole bytes, as Salesforce writes them."""
    value = 0
    for position in positions:
        if position < 0:
            raise BitmapError(f"negative bit position {position}")
        value |= 1 << position
    digits = f"{value:X}"
    if len(digits) % 2:
        digits = "0" + digits
    return "0x" + digits


def hex_to_bits(text: str) -> list[int]:
    """``'0x05'`` → ``[0, 2]``."""
    if not text.lower().startswith("0x"):
        raise BitmapError(f"bitmap {text!r} does not start with 0x")
    try:
        value = int(text[2:], 16)
    except ValueError as exc:
        raise BitmapError(f"bitmap {text!r} is not hex") from exc
    return [i for i in range(value.bit_length()) if value >> i & 1]


def _as_schema(schema: Mapping[str, Any] | str) -> Mapping[str, Any]:
    return json.loads(schema) if isinstance(schema, str) else schema


def _full_name(node: Mapping[str, Any], namespace: str | None) -> str:
    name = str(node["name"])
    if "." in name:
        return name
    space = node.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def _top_fields(schema: Mapping[str, Any] | str) -> list[tuple[str, list[str] | None]]:
    """Top-level fields in order, each with its nested record's field names (or None)."""
    root = _as_schema(schema)
    namespace = root.get("namespace")
    records: dict[str, list[str]] = {}

    def register(node: Any, space: str | None) -> None:
        # walk every named record so that later by-name references can be resolved
        if isinstance(node, list):
            for branch in node:
                register(branch, space)
        elif isinstance(node, Mapping):
            kind = node.get("type")
            if kind == "record":
                full = _full_name(node, space)
                records.setdefault(full, [str(f["name"]) for f in node.get("fields", [])])
                inner_space = full.rpartition(".")[0] or None
                for field in node.get("fields", []):
                    register(field["type"], inner_space)
            elif kind in ("array", "map"):
                register(node.get("items", node.get("values")), space)
            elif isinstance(kind, (Mapping, list)):
                register(kind, space)

    def nested(node: Any) -> list[str] | None:
        # the record's field names behind a field type (through a nullable union)
        if isinstance(node, list):
            for branch in node:
                found = nested(branch)
                if found is not None:
                    return found
            return None
        if isinstance(node, Mapping):
            if node.get("type") == "record":
                return [str(f["name"]) for f in node.get("fields", [])]
            if isinstance(node.get("type"), (Mapping, list, str)) and node.get("type") not in _PRIMITIVES:
                return nested(node["type"])
            return None
        if isinstance(node, str) and node not in _PRIMITIVES:
            return records.get(node) or records.get(f"{namespace}.{node}")
        return None

    fields = list(root.get("fields", []))
    for field in fields:
        register(field["type"], namespace)
    out: list[tuple[str, list[str] | None]] = []
    for index, field in enumerate(fields):
        # the header is a record too, but never a compound field of the entity
        out.append((str(field["name"]), None if index == 0 else nested(field["type"])))
    return out


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def encode_bitmap(schema: Mapping[str, Any] | str, names: Iterable[str]) -> list[str]:
    """Field names (``Email``, ``MailingAddress.City``, or a whole compound ``MailingAddress``)
    → bitmap entries. No names → ``[]``; only nested names → only ``P-0x…`` entries."""
    fields = _top_fields(schema)
    position = {name: i for i, (name, _) in enumerate(fields)}
    top: set[int] = set()
    children: dict[int, set[int]] = {}
    for name in names:
        parent, dot, child = name.partition(".")
        if parent not in position:
            raise BitmapError(f"field {parent!r} is not in the schema")
        index = position[parent]
        if not dot:
            top.add(index)
            continue
        sub = fields[index][1]
        if sub is None or child not in sub:
            raise BitmapError(f"{name!r}: {parent} has no nested field {child!r}")
        children.setdefault(index, set()).add(sub.index(child))
    entries = [bits_to_hex(top)] if top else []
    entries += [f"{index}-{bits_to_hex(bits)}" for index, bits in sorted(children.items())]
    return entries


def decode_bitmap(schema: Mapping[str, Any] | str, bitmap: Sequence[str]) -> list[str]:
    """Bitmap entries → field names, top-level fields first in schema order, then the nested
    ones as ``Parent.Child``. Entries that are already names (CometD style) pass through."""
    fields = _top_fields(schema)
    names: list[str] = []
    for entry in bitmap:
        if entry.lower().startswith("0x"):
            for bit in hex_to_bits(entry):
                if bit >= len(fields):
                    raise BitmapError(f"bit {bit} of {entry!r} is past the schema's {len(fields)} fields")
                names.append(fields[bit][0])
            continue
        head, dash, tail = entry.partition("-")
        if dash and head.isdigit() and tail.lower().startswith("0x"):
            index = int(head)
            if index >= len(fields) or fields[index][1] is None:
                raise BitmapError(f"{entry!r}: position {index} is not a compound field")
            parent, sub = fields[index][0], fields[index][1] or []
            for bit in hex_to_bits(tail):
                if bit >= len(sub):
                    raise BitmapError(f"bit {bit} of {entry!r} is past {parent}'s {len(sub)} fields")
                names.append(f"{parent}.{sub[bit]}")
            continue
        names.append(entry)
    return names

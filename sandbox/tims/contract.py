"""The TIMS contract (docs/tims-openapi.yaml), loaded once and used to validate records.

The simulator validates every write against the OpenAPI document itself rather than against a
second, hand-kept copy of the rules, so the connector is tested against the contract we publish.
Only the JSON-Schema subset the document uses is interpreted: ``$ref``, ``allOf``, ``type``,
``nullable``, ``enum``, ``format`` (email, date, date-time), ``pattern``, ``minLength``,
``maxLength``, ``minimum``/``exclusiveMinimum`` (3.0 boolean form), ``maximum``, ``minItems``,
``maxItems``, ``items``, ``properties``, ``required``, ``additionalProperties: false`` and
``readOnly``; plus our extensions ``x-tims-ref`` (the value is an id of that resource),
``x-tims-unique`` (no two records of the resource share the value) and, on a schema,
``x-tims-unique-together`` (no two records share that combination of values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

__all__ = [
    "DEFAULT_CONTRACT_PATH",
    "Contract",
    "FieldError",
    "ResourceInfo",
    "SYSTEM_FIELDS",
]

DEFAULT_CONTRACT_PATH = Path(__file__).resolve().parents[2] / "docs" / "tims-openapi.yaml"

#: fields every record carries, written only by TIMS itself
SYSTEM_FIELDS = ("modified_by", "created_at", "updated_at", "version")

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@dataclass(frozen=True)
class FieldError:
    """One reason a record was refused; ``code`` is validation_error, unknown_reference or
    duplicate_value (see the FieldError schema)."""

    code: str
    message: str
    field: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "field": self.field}


@dataclass(frozen=True)
class ResourceInfo:
    """One entry of ``x-tims-resources``: how a resource is named and identified."""

    name: str  # "customers": the URL segment
    entity: str  # "customer": the change-feed entity
    id_field: str  # "customer_id"
    id_prefix: str  # "C"
    schema_name: str  # "Customer"


class Contract:
    """The parsed OpenAPI document plus record validation by its component schemas."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.doc: dict[str, Any] = yaml.safe_load(text)
        self.resources: dict[str, ResourceInfo] = {
            name: ResourceInfo(name, meta["entity"], meta["id_field"], meta["id_prefix"], meta["schema"])
            for name, meta in self.doc["x-tims-resources"].items()
        }
        self._props: dict[str, dict[str, dict[str, Any]]] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Contract":
        return cls(Path(path or DEFAULT_CONTRACT_PATH).read_text(encoding="utf-8"))

    # -- schema access -------------------------------------------------------------------

    def schema(self, name: str) -> dict[str, Any]:
        return self.doc["components"]["schemas"][name]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Follow ``$ref`` and flatten ``allOf`` into one schema (properties and required merged)."""
        if "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/components/schemas/"):
                raise ValueError(f"unsupported $ref {ref}")
            merged = dict(self.resolve(self.schema(ref.rsplit("/", 1)[1])))
            for key, value in schema.items():
                if key != "$ref":
                    merged[key] = value
            return merged
        if "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            props: dict[str, Any] = dict(merged.get("properties", {}))
            required: list[str] = list(merged.get("required", []))
            for part in schema["allOf"]:
                sub = self.resolve(part)
                props.update(sub.get("properties", {}))
                required += [r for r in sub.get("required", []) if r not in required]
                for key, value in sub.items():
                    if key not in ("properties", "required", "nullable"):
                        merged.setdefault(key, value)
            if props:
                merged["properties"] = props
            if required:
                merged["required"] = required
            return merged
        return schema

    def record_schema(self, resource: str) -> dict[str, Any]:
        return self.resolve({"$ref": f"#/components/schemas/{self.resources[resource].schema_name}"})

    def properties(self, resource: str) -> dict[str, dict[str, Any]]:
        """The resource's top-level fields, each schema resolved (cached: the document is fixed)."""
        if resource not in self._props:
            schema = self.record_schema(resource)
            self._props[resource] = {k: self.resolve(v) for k, v in schema.get("properties", {}).items()}
        return self._props[resource]

    def read_only_fields(self, resource: str) -> set[str]:
        return {k for k, v in self.properties(resource).items() if v.get("readOnly")}

    def writable_fields(self, resource: str) -> list[str]:
        return [k for k, v in self.properties(resource).items() if not v.get("readOnly")]

    def defaults(self, resource: str) -> dict[str, Any]:
        """Values a new record starts with: the schema default, else None for nullable fields."""
        out: dict[str, Any] = {}
        for key, prop in self.properties(resource).items():
            if prop.get("readOnly"):
                continue
            if "default" in prop:
                out[key] = _copy(prop["default"])
            elif prop.get("nullable"):
                out[key] = None
        return out

    # -- writes --------------------------------------------------------------------------

    def strip_read_only(self, schema: dict[str, Any], value: Any, keep: set[str] | None = None) -> Any:
        """``value`` without the readOnly fields the schema declares, at any depth. Top-level
        names in ``keep`` stay (TIMS's own users may set e.g. total_revenue)."""
        schema = self.resolve(schema)
        if isinstance(value, dict) and "properties" in schema:
            out = {}
            for key, item in value.items():
                prop = schema["properties"].get(key)
                if prop is None:
                    out[key] = item
                    continue
                prop = self.resolve(prop)
                if prop.get("readOnly") and not (keep and key in keep):
                    continue
                out[key] = self.strip_read_only(prop, item)
            return out
        if isinstance(value, list) and "items" in schema:
            return [self.strip_read_only(schema["items"], item) for item in value]
        return value

    def validate(self, schema: dict[str, Any], value: Any, path: str = "",
                 skip_read_only: bool = True) -> list[FieldError]:
        """Every way ``value`` breaks ``schema`` (readOnly properties are not checked)."""
        errors: list[FieldError] = []
        self._check(schema, value, path, errors, skip_read_only)
        return errors

    def references(self, resource: str, record: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
        """(field path, target resource, id) for every ``x-tims-ref`` value in ``record``."""
        yield from self._refs(self.record_schema(resource), record, "")

    def unique_fields(self, resource: str) -> list[str]:
        return [k for k, v in self.properties(resource).items() if v.get("x-tims-unique")]

    def unique_together(self, resource: str) -> tuple[str, ...]:
        """The fields whose combination no two records of ``resource`` may share (none: ())."""
        return tuple(self.record_schema(resource).get("x-tims-unique-together", ()))

    # -- internals -----------------------------------------------------------------------

    def _refs(self, schema: dict[str, Any], value: Any, path: str) -> Iterator[tuple[str, str, str]]:
        schema = self.resolve(schema)
        if value is None:
            return
        if "x-tims-ref" in schema and isinstance(value, str):
            yield path, schema["x-tims-ref"], value
        if isinstance(value, dict):
            for key, prop in schema.get("properties", {}).items():
                if key in value:
                    yield from self._refs(prop, value[key], _join(path, key))
        elif isinstance(value, list) and "items" in schema:
            for i, item in enumerate(value):
                yield from self._refs(schema["items"], item, f"{path}[{i}]")

    def _check(self, schema: dict[str, Any], value: Any, path: str, errors: list[FieldError],
               skip_read_only: bool) -> None:
        schema = self.resolve(schema)
        field = path or "(record)"
        if value is None:
            if not schema.get("nullable"):
                errors.append(_err(field, "must not be null"))
            return
        kind = schema.get("type") or ("object" if "properties" in schema else None)
        check = _TYPE_CHECKS.get(kind or "")
        if check and not check(value):
            errors.append(_err(field, f"must be {_ARTICLE.get(kind or '', kind)}"))
            return
        if "enum" in schema and value not in schema["enum"]:
            errors.append(_err(field, f"must be one of {', '.join(map(str, schema['enum']))}"))
        if isinstance(value, str):
            self._check_string(schema, value, field, errors)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_number(schema, value, field, errors)
        elif isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                errors.append(_err(field, f"must hold at least {schema['minItems']} items"))
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                errors.append(_err(field, f"must hold at most {schema['maxItems']} items"))
            if "items" in schema:
                for i, item in enumerate(value):
                    self._check(schema["items"], item, f"{path}[{i}]", errors, skip_read_only)
        elif isinstance(value, dict):
            props = schema.get("properties", {})
            for name in schema.get("required", []):
                prop = props.get(name)
                if prop is not None and skip_read_only and self.resolve(prop).get("readOnly"):
                    continue
                if name not in value:
                    errors.append(_err(_join(path, name), "is required"))
            for key, item in value.items():
                prop = props.get(key)
                if prop is None:
                    if schema.get("additionalProperties") is False:
                        errors.append(_err(_join(path, key), "is not a field of this record"))
                    continue
                if skip_read_only and self.resolve(prop).get("readOnly"):
                    continue
                self._check(prop, item, _join(path, key), errors, skip_read_only)

    @staticmethod
    def _check_string(schema: dict[str, Any], value: str, field: str, errors: list[FieldError]) -> None:
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(_err(field, f"must be at least {schema['minLength']} characters"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(_err(field, f"must be at most {schema['maxLength']} characters"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(_err(field, f"does not match {schema['pattern']}"))
        fmt = schema.get("format")
        if fmt == "email" and not _EMAIL.match(value):
            errors.append(_err(field, "is not a valid email address"))
        elif fmt == "date" and not _parses(date.fromisoformat, value, length=10):
            errors.append(_err(field, "is not a date (YYYY-MM-DD)"))
        elif fmt == "date-time" and not _parses(_parse_datetime, value):
            errors.append(_err(field, "is not an ISO 8601 date-time"))


def _check_number(schema: dict[str, Any], value: float, field: str, errors: list[FieldError]) -> None:
    if "minimum" in schema:
        low = schema["minimum"]
        if schema.get("exclusiveMinimum") is True and value <= low:
            errors.append(_err(field, f"must be greater than {low}"))
        elif value < low:
            errors.append(_err(field, f"must be at least {low}"))
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(_err(field, f"must be at most {schema['maximum']}"))


def _parse_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _parses(parse: Callable[[str], Any], value: str, length: int | None = None) -> bool:
    if length is not None and len(value) != length:
        return False
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_ARTICLE = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
            "array": "an array", "object": "an object"}


def _err(field: str, message: str) -> FieldError:
    return FieldError("validation_error", f"{field} {message}", field)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value

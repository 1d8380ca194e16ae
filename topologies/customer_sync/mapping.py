"""Declarative mappings, one YAML file per flow, loaded and validated once at start-up.

A flow file has ``inbound`` (a source entity's fields → canonical customer fields) and
``outbound`` (canonical fields → a target object's fields, with the key to write by and an
optional ``create_when`` condition for records that do not exist there yet). Files of several
flows combine; a field defined twice is an error. Every error names the file, the line and the
field. Rules:

- inbound ``<canonical>: {from: <source field or a.b path>, clean: <kind>, split: first|rest, default: v}``
- outbound ``fields: <target field or a.b path>: {from: <canonical> | concat: [..], sep: " " | link: <name> | value: v, default: v}``
- outbound ``key: [{field: <target key field>, link: <name>}, ...]``: the first whose link is known
- conditions ``{all: [...]}``, ``{any: [...]}``, ``{link: <name>}``, ``{field: <canonical>, <op>: v}``
  with ops eq, ne, gt, gte, lt, lte, in, present, gte_grade
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from topologies.customer_sync.cleansing import CLEANSERS, GRADES, clean, grade_rank

__all__ = [
    "CANONICAL_FIELDS", "LINKS", "MappingError", "Rule", "Outbound", "Mappings", "load_mappings",
    "DEFAULT_MAPPING_DIR", "get_path",
]

DEFAULT_MAPPING_DIR = Path(__file__).resolve().parent / "mappings"
CANONICAL_FIELDS = frozenset({
    "email", "first_name", "last_name", "phone", "company", "street", "city", "state",
    "postal_code", "country", "payment_terms", "credit_limit", "total_revenue", "score", "grade",
})
LINKS = frozenset({"salesforce_lead", "salesforce_contact", "salesforce_account", "pardot_prospect", "tims_customer",
                   "shop_customer"})
SYSTEMS = frozenset({"salesforce", "pardot", "tims", "shop"})
_OPS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "present", "gte_grade"}


class MappingError(ValueError):
    def __init__(self, file: str, line: int, where: str, message: str) -> None:
        super().__init__(f"{file}:{line}: {where}: {message}")
        self.file, self.line, self.where = file, line, where


class _Node(dict):
    """A mapping that remembers the line of each key (1-based)."""

    lines: dict[str, int]
    line: int


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _Node:  # type: ignore[override]
        mapping = _Node(super().construct_mapping(node, deep=True))
        mapping.lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
        mapping.line = node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    lambda loader, node: loader.construct_mapping(node),  # type: ignore[arg-type]
)


def get_path(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _set_path(record: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        record = record.setdefault(part, {})
    record[last] = value


@dataclass(frozen=True)
class Rule:
    target: str
    source: str | None = None
    concat: tuple[str, ...] = ()
    sep: str = " "
    link: str | None = None
    value: Any = None
    has_value: bool = False
    clean: str | None = None
    split: str | None = None
    default: Any = None
    origin: str = ""


@dataclass
class Outbound:
    target: str  # "system.Object"
    keys: list[tuple[str, str]] = field(default_factory=list)  # (target key field, link name)
    fields: dict[str, Rule] = field(default_factory=dict)
    create_when: Any = None
    origin: str = ""
    #: the flow files that define part of this target
    files: set[str] = field(default_factory=set)

    @property
    def system(self) -> str:
        return self.target.split(".", 1)[0]

    @property
    def object(self) -> str:
        return self.target.split(".", 1)[1]


@dataclass
class Mappings:
    inbound: dict[str, dict[str, Rule]] = field(default_factory=dict)
    outbound: dict[str, Outbound] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    # -- applying ----------------------------------------------------------------------------
    def to_canonical(self, source: str, record: Mapping[str, Any], present: Iterable[str] | None = None) -> dict[str, Any]:
        """Canonical fields from a source record; ``present`` limits to the fields the event
        carries (an UPDATE names only what changed). Raises Uncleanable."""
        rules = self.inbound.get(source, {})
        carried = None if present is None else set(present)
        out: dict[str, Any] = {}
        for canonical, rule in rules.items():
            assert rule.source is not None
            top = rule.source.split(".", 1)[0]
            if carried is not None and rule.source not in carried and top not in carried:
                continue
            value = get_path(record, rule.source)
            if rule.split and isinstance(value, str):
                first, _, rest = value.strip().partition(" ")
                value = first if rule.split == "first" else rest
            if rule.clean:
                value = clean(rule.clean, value)
            if value is None and rule.default is not None:
                value = rule.default
            out[canonical] = value
        return out

    def to_target(self, target: str, golden: Mapping[str, Any], links: Mapping[str, str]) -> dict[str, Any]:
        """A target object's fields (dotted paths kept flat) from canonical values and links."""
        spec = self.outbound[target]
        out: dict[str, Any] = {}
        for name, rule in spec.fields.items():
            if rule.has_value:
                value = rule.value
            elif rule.link:
                value = links.get(rule.link)
            elif rule.concat:
                parts = [str(golden[f]) for f in rule.concat if golden.get(f) not in (None, "")]
                value = rule.sep.join(parts) if parts else None
            else:
                value = golden.get(rule.source or "")
            if value is None and rule.default is not None:
                value = rule.default
            out[name] = value
        return out

    def key_for(self, target: str, links: Mapping[str, str]) -> tuple[str, str, bool] | None:
        """(key field, key value, exists) to write by: the first key whose link is known;
        ``exists`` is False when only a later key (a creation path) is available."""
        spec = self.outbound[target]
        for index, (key_field, link) in enumerate(spec.keys):
            value = links.get(link)
            if value:
                return key_field, value, index == 0
        return None

    def may_create(self, target: str, golden: Mapping[str, Any], links: Mapping[str, str]) -> bool:
        spec = self.outbound[target]
        return spec.create_when is None or evaluate(spec.create_when, golden, links)


def evaluate(condition: Any, golden: Mapping[str, Any], links: Mapping[str, str]) -> bool:
    if "all" in condition:
        return all(evaluate(c, golden, links) for c in condition["all"])
    if "any" in condition:
        return any(evaluate(c, golden, links) for c in condition["any"])
    if "link" in condition:
        return bool(links.get(condition["link"]))
    value = golden.get(condition["field"])
    for op, expected in condition.items():
        if op == "field":
            continue
        if op == "present":
            if (value not in (None, "")) != bool(expected):
                return False
            continue
        if value is None:
            return False
        ok = {
            "eq": lambda: value == expected, "ne": lambda: value != expected,
            "gt": lambda: value > expected, "gte": lambda: value >= expected,
            "lt": lambda: value < expected, "lte": lambda: value <= expected,
            "in": lambda: value in expected,
            "gte_grade": lambda: value in GRADES and grade_rank(value) >= grade_rank(expected),
        }[op]()
        if not ok:
            return False
    return True


# -- loading -----------------------------------------------------------------------------------
def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint on one line, without its picture of the text."""
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    return " ".join(part for part in (context, problem) if part) or str(exc).splitlines()[0]


class _Reader:
    def __init__(self, file: Path) -> None:
        self.name = file.name
        try:
            self.doc = yaml.load(file.read_text(), Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise MappingError(self.name, (mark.line + 1) if mark else 1, "(file)", f"not valid YAML: {_yaml_problem(exc)}") from None
        if not isinstance(self.doc, _Node):
            raise MappingError(self.name, 1, "(file)", "expected a mapping with flow, inbound, outbound")

    def fail(self, node: Any, key: str, where: str, message: str) -> MappingError:
        line = node.lines.get(key, node.line) if isinstance(node, _Node) else 1
        return MappingError(self.name, line, where, message)


def _check_keys(reader: _Reader, node: Any, allowed: set[str], where: str) -> None:
    if not isinstance(node, _Node):
        raise MappingError(reader.name, 1, where, "expected a mapping")
    for key in node:
        if key not in allowed:
            raise reader.fail(node, key, f"{where}.{key}", f"unknown key; expected one of {sorted(allowed)}")


def _condition(reader: _Reader, node: Any, where: str) -> Any:
    if not isinstance(node, _Node) or not node:
        raise MappingError(reader.name, getattr(node, "line", 1), where, "a condition is a non-empty mapping")
    if "all" in node or "any" in node:
        op = "all" if "all" in node else "any"
        if not isinstance(node[op], list) or not node[op]:
            raise reader.fail(node, op, f"{where}.{op}", "expects a non-empty list of conditions")
        return {op: [_condition(reader, c, f"{where}.{op}[{i}]") for i, c in enumerate(node[op])]}
    if "link" in node:
        if node["link"] not in LINKS:
            raise reader.fail(node, "link", f"{where}.link", f"unknown link {node['link']!r}; known: {sorted(LINKS)}")
        return dict(node)
    if node.get("field") not in CANONICAL_FIELDS:
        raise reader.fail(node, "field", f"{where}.field", f"unknown canonical field {node.get('field')!r}")
    ops = set(node) - {"field"}
    if not ops or ops - _OPS:
        raise reader.fail(node, "field", where, f"operators must be among {sorted(_OPS)}, got {sorted(ops)}")
    if "gte_grade" in node and node["gte_grade"] not in GRADES:
        raise reader.fail(node, "gte_grade", f"{where}.gte_grade", f"{node['gte_grade']!r} is not a grade")
    return dict(node)


def _inbound_rule(reader: _Reader, node: Any, canonical: str, where: str) -> Rule:
    _check_keys(reader, node, {"from", "clean", "split", "default"}, where)
    if canonical not in CANONICAL_FIELDS:
        raise MappingError(reader.name, node.line, where, f"unknown canonical field; known: {sorted(CANONICAL_FIELDS)}")
    if not isinstance(node.get("from"), str):
        raise reader.fail(node, "from", where, "needs 'from: <source field>'")
    if node.get("clean") is not None and node["clean"] not in CLEANSERS:
        raise reader.fail(node, "clean", f"{where}.clean", f"unknown cleanser; known: {sorted(CLEANSERS)}")
    if node.get("split") not in (None, "first", "rest"):
        raise reader.fail(node, "split", f"{where}.split", "must be first or rest")
    return Rule(canonical, source=node["from"], clean=node.get("clean"), split=node.get("split"),
                default=node.get("default"), origin=f"{reader.name}:{node.line}")


def _outbound_rule(reader: _Reader, node: Any, name: str, where: str) -> Rule:
    _check_keys(reader, node, {"from", "concat", "sep", "link", "value", "default"}, where)
    kinds = [k for k in ("from", "concat", "link", "value") if k in node]
    if len(kinds) != 1:
        raise MappingError(reader.name, node.line, where, "needs exactly one of from, concat, link, value")
    if "from" in node and node["from"] not in CANONICAL_FIELDS:
        raise reader.fail(node, "from", f"{where}.from", f"unknown canonical field {node['from']!r}")
    if "concat" in node:
        bad = [f for f in node["concat"] or [] if f not in CANONICAL_FIELDS]
        if not node["concat"] or bad:
            raise reader.fail(node, "concat", f"{where}.concat", f"needs canonical fields; unknown: {bad}")
    if "link" in node and node["link"] not in LINKS:
        raise reader.fail(node, "link", f"{where}.link", f"unknown link {node['link']!r}; known: {sorted(LINKS)}")
    return Rule(name, source=node.get("from"), concat=tuple(node.get("concat") or ()), sep=node.get("sep", " "),
                link=node.get("link"), value=node.get("value"), has_value="value" in node,
                default=node.get("default"), origin=f"{reader.name}:{node.line}")


def _target_name(reader: _Reader, section: _Node, name: str, where: str) -> None:
    system, dot, entity = str(name).partition(".")
    if not dot or system not in SYSTEMS or not entity:
        raise reader.fail(section, name, where, f"must be <system>.<entity> with system one of {', '.join(sorted(SYSTEMS))}")


def _load_file(file: Path, into: Mappings) -> None:
    reader = _Reader(file)
    doc = reader.doc
    _check_keys(reader, doc, {"flow", "description", "inbound", "outbound"}, "(top)")
    if not isinstance(doc.get("flow"), str) or doc["flow"] != file.stem:
        raise reader.fail(doc, "flow", "flow", f"must name the flow and match the file name ({file.stem!r})")
    for source, rules in (doc.get("inbound") or {}).items():
        where = f"inbound.{source}"
        _target_name(reader, doc["inbound"], source, where)
        _check_keys(reader, rules, set(CANONICAL_FIELDS), where)
        existing = into.inbound.setdefault(source, {})
        for canonical, node in rules.items():
            if canonical in existing:
                raise reader.fail(rules, canonical, f"{where}.{canonical}", f"already mapped in {existing[canonical].origin}")
            existing[canonical] = _inbound_rule(reader, node, canonical, f"{where}.{canonical}")
    for target, spec in (doc.get("outbound") or {}).items():
        where = f"outbound.{target}"
        _target_name(reader, doc["outbound"], target, where)
        _check_keys(reader, spec, {"key", "fields", "create_when"}, where)
        out = into.outbound.setdefault(target, Outbound(target, origin=f"{reader.name}:{spec.line}"))
        out.files.add(reader.name)
        if "key" in spec:
            if out.keys:
                raise reader.fail(spec, "key", f"{where}.key", f"already defined in {out.origin}")
            if not isinstance(spec["key"], list) or not spec["key"]:
                raise reader.fail(spec, "key", f"{where}.key", "a non-empty list of {field, link}")
            for i, key in enumerate(spec["key"]):
                _check_keys(reader, key, {"field", "link"}, f"{where}.key[{i}]")
                if key.get("link") not in LINKS or not isinstance(key.get("field"), str):
                    raise reader.fail(key, "link", f"{where}.key[{i}]", f"needs field and a known link {sorted(LINKS)}")
                out.keys.append((key["field"], key["link"]))
        if "create_when" in spec:
            if out.create_when is not None:
                raise reader.fail(spec, "create_when", f"{where}.create_when", "defined twice")
            out.create_when = _condition(reader, spec["create_when"], f"{where}.create_when")
        for name, node in (spec.get("fields") or {}).items():
            if name in out.fields:
                raise reader.fail(spec["fields"], name, f"{where}.fields.{name}", f"already mapped in {out.fields[name].origin}")
            out.fields[name] = _outbound_rule(reader, node, name, f"{where}.fields.{name}")
    into.files.append(file.name)


def load_mappings(directory: Path | None = None) -> Mappings:
    """Load and validate every ``*.yaml`` flow file of ``directory``."""
    folder = directory or DEFAULT_MAPPING_DIR
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise MappingError(str(folder), 1, "(folder)", "no *.yaml mapping files")
    mappings = Mappings()
    for file in files:
        _load_file(file, mappings)
    for target, spec in mappings.outbound.items():
        if not spec.keys:
            raise MappingError(spec.origin.split(":")[0], int(spec.origin.split(":")[1]), f"outbound.{target}.key",
                               "no file defines the key to write by")
    return mappings

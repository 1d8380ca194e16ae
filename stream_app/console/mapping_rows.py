"""Editing a mapping file row by row in the console (docs/adr/0037, addendum): each field rule
is a row (source field → transform → target field, owner, condition); a changed, added or
deleted row is written back into the YAML text, and the text then goes through the same check,
diff and save as a text edit.

The text is changed by splicing: a changed row's own lines are replaced by the rule written as
a one-line flow mapping, a deleted row's lines are removed, an added row is inserted after the
last row of its section with the same indentation. Every other byte (comments, order,
alignment, quoting) stays as it was, so the diff shows only the rows touched. Positions come
from PyYAML's composer (the node marks); nothing is re-serialised.

Two shapes of file have rows: ``inbound``/``outbound`` sections of field rules keyed by name
(the customer sync) and a ``fields:`` list of entries with a ``name`` (the products flow).
Files of settings only (orders, lists, ...) have no rows and are edited as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stream_app.console.mapping_edit import Problem, digest

__all__ = ["Row", "Section", "RowsRefused", "read", "rows_of", "apply_form", "table", "ROW_ACTIONS", "is_row_action"]

#: keys of a rule that say where its value comes from (the rest say how it is transformed)
_SOURCE_KEYS = ("from", "link", "concat", "value", "const")
#: keys of a listed entry that are neither a system's field nor its transform
_LISTED_APART = ("name", "owner", "kind")
#: the columns an operator edits
COLUMNS = ("source", "transform", "target", "owner")
#: form actions that change rows; ``delete:<row>`` too
ROW_ACTIONS = ("rows", "add")


def is_row_action(action: str) -> bool:
    return action in ROW_ACTIONS or action.startswith("delete:")


@dataclass(frozen=True)
class Row:
    index: int
    #: the path of its section (``inbound.salesforce.Contact``, ``outbound.tims.customer.fields``, ``fields``)
    section: str
    #: the path validation errors name for this row (``inbound.salesforce.Contact.email``, ``fields.3``)
    where: str
    source: str
    transform: str
    target: str
    owner: str
    #: False where owners are the flow's setting rather than the rule's (the customer sync)
    owner_editable: bool
    #: the section's condition (``create_when``), edited in the text
    condition: str
    #: first and last line of the row in the text (1-based)
    line: int
    end_line: int
    #: the rule as loaded
    rule: Any
    listed: bool
    #: where the row's text starts (its key, or its list entry) and ends
    key_start: int
    end: int

    def values(self) -> dict[str, str]:
        return {"source": self.source, "transform": self.transform, "target": self.target, "owner": self.owner}


@dataclass(frozen=True)
class Section:
    path: str
    listed: bool
    #: where a new row is inserted (after the section's last row) and the text that starts its line
    insert_at: int
    prefix: str


@dataclass
class RowsRefused(ValueError):
    """Row input that cannot be written as YAML: ``errors`` by row index (``None``: the new row
    or the form as a whole); ``values`` are what the operator typed, shown again."""

    errors: dict[int | None, list[str]] = field(default_factory=dict)
    values: dict[int | None, dict[str, str]] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(message for messages in self.errors.values() for message in messages)


# -- reading ---------------------------------------------------------------------------------------

def _flow(value: Any) -> str:
    """``value`` as one line of YAML flow style."""
    return str(yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1_000_000,
                              allow_unicode=True)).removesuffix("\n...\n").strip()


def _fragment(pairs: Mapping[str, Any]) -> str:
    """``{a: 1, b: x}`` without the braces: what a transform or source cell shows."""
    return _flow(dict(pairs))[1:-1] if pairs else ""


def _get(node: Node, key: str) -> Node | None:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key:
                return v
    return None


def _load(node: Node) -> Any:
    try:
        return yaml.safe_load(yaml.serialize(node))
    except yaml.YAMLError as exc:
        raise ValueError(f"the rows cannot be drawn: line {node.start_mark.line + 1} holds what a mapping cannot "
                         f"({getattr(exc, 'problem', None) or exc})") from None


def _end(text: str, node: Node) -> int:
    """Where the node's own text ends (a block node's mark reaches into the next line)."""
    end = node.end_mark.index
    while end > node.start_mark.index and text[end - 1] in " \t\r\n":
        end -= 1
    return end


def _section_cells(rule: Any) -> tuple[str, str, str]:
    if not isinstance(rule, dict):
        return str(rule), "", ""
    sources = {k: v for k, v in rule.items() if k in _SOURCE_KEYS}
    source = str(sources["from"]) if list(sources) == ["from"] and isinstance(sources["from"], str) else _fragment(sources)
    transform = _fragment({k: v for k, v in rule.items() if k not in _SOURCE_KEYS and k != "owner"})
    return source, transform, str(rule.get("owner", "") or "")


def _listed_cells(rule: dict[str, Any]) -> tuple[str, str, str]:
    source = _fragment({k: v for k, v in rule.items() if k not in _LISTED_APART})
    transform = _fragment({k: v for k, v in rule.items() if k == "kind"})
    return source, transform, str(rule.get("owner", "") or "")


def _compose(text: str) -> Node | None:
    try:
        return yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"the rows cannot be drawn: the text is not valid YAML ({exc})") from None


def _containers(root: Node) -> Iterator[tuple[str, Node, str]]:
    """(section path, the node holding its rules, its condition) of each section with rules."""
    for direction in ("inbound", "outbound"):
        objects = _get(root, direction)
        if not isinstance(objects, MappingNode):
            continue
        for obj_key, spec in objects.value:
            if not isinstance(spec, MappingNode):
                continue
            fields = _get(spec, "fields")
            condition = _get(spec, "create_when")
            shown = _fragment(_load(condition)) if isinstance(condition, MappingNode) else ""
            if isinstance(fields, MappingNode):
                yield f"{direction}.{obj_key.value}.fields", fields, shown
            elif fields is None and direction == "inbound":
                yield f"{direction}.{obj_key.value}", spec, shown
    listed = _get(root, "fields")
    if isinstance(listed, SequenceNode):
        yield "fields", listed, ""


def read(text: str) -> tuple[list[Row], list[Section]]:
    """The rows of a mapping text and the sections a row can be added to (those that have rows);
    ValueError when the text is not YAML."""
    root = _compose(text)
    rows: list[Row] = []
    sections: list[Section] = []
    if root is None:
        return rows, sections
    for path, container, condition in _containers(root):
        last: tuple[int, str] | None = None
        if isinstance(container, SequenceNode):
            for i, item in enumerate(container.value):
                rule = _load(item)
                if not isinstance(item, MappingNode) or not isinstance(rule, dict):
                    continue
                source, transform, owner = _listed_cells(rule)
                end = _end(text, item)
                rows.append(Row(len(rows), path, f"{path}.{i}", source, transform, str(rule.get("name", "")),
                                owner, True, condition, item.start_mark.line + 1, text.count("\n", 0, end) + 1,
                                rule, True, item.start_mark.index, end))
                line_start = text.rfind("\n", 0, item.start_mark.index) + 1
                last = (_line(text, end, end)[1], text[line_start:item.start_mark.index])
        else:
            for key, value in container.value:
                if not isinstance(key, ScalarNode) or key.value in ("key", "create_when", "fields"):
                    continue
                rule = _load(value)
                source, transform, owner = _section_cells(rule)
                end = _end(text, value)
                rows.append(Row(len(rows), path, f"{path}.{key.value}", source, transform, str(key.value), owner,
                                isinstance(rule, dict) and "owner" in rule, condition, key.start_mark.line + 1,
                                text.count("\n", 0, end) + 1, rule, False, key.start_mark.index, end))
                last = (_line(text, end, end)[1], " " * key.start_mark.column)
        if last is not None:
            sections.append(Section(path, isinstance(container, SequenceNode), *last))
    return rows, sections


def rows_of(text: str) -> list[Row]:
    """The rows of a mapping text; ValueError when the text is not YAML."""
    return read(text)[0]


def table(file: str, text: str, problems: list[Problem], refused: RowsRefused | None,
          owners: Mapping[str, str]) -> dict[str, Any]:
    """What the edit page's rows table shows: each row with what the operator typed (when
    refused) and the problems that concern it (by its lines or its path), named by file, line
    and field; ``owners``: the flow's owners by field, shown where a rule carries none."""
    try:
        rows, sections = read(text)
    except ValueError as exc:
        return {"rows": [], "sections": [], "rows_problem": str(exc), "rows_of": ""}
    refused = refused or RowsRefused()
    shown = []
    for row in rows:
        mine = [p for p in problems if (p.line and row.line <= p.line <= row.end_line)
                or p.where == row.where or p.where.startswith(f"{row.where}.")]
        mine += [Problem(file, row.line, row.where, said) for said in refused.errors.get(row.index, [])]
        shown.append({"row": row, "values": refused.values.get(row.index) or row.values(), "problems": mine,
                      "owner_shown": row.owner or owners.get(row.target) or owners.get(row.source, "")})
    return {"rows": shown, "sections": sections, "rows_problem": None, "rows_of": digest(text),
            "new_row": refused.values.get(None) or {}, "new_row_problems": refused.errors.get(None, [])}


# -- writing ---------------------------------------------------------------------------------------

def _pairs(cell: str, what: str) -> dict[str, Any]:
    """A ``key: value, key: value`` cell as a mapping; ValueError says what is wrong."""
    if not cell.strip():
        return {}
    try:
        parsed = yaml.safe_load("{" + cell + "}")
    except yaml.YAMLError:
        parsed = None
    if not isinstance(parsed, dict) or any(not isinstance(k, str) or v is None for k, v in parsed.items()):
        raise ValueError(f"{what} must be written as key: value, key: value (YAML flow style), got {cell!r}")
    return parsed


def _rule(values: Mapping[str, str], listed: bool, owned: bool) -> tuple[str, dict[str, Any]]:
    """(the row's key, its rule) from the cells; ValueError naming the cell at fault. ``owned``:
    the rule carries its owner (else owners are the flow's setting and the cell must stay empty)."""
    target, source, owner = values["target"].strip(), values["source"].strip(), values["owner"].strip()
    if not target:
        raise ValueError("the target field is empty")
    if not source:
        raise ValueError("the source field is empty")
    if owner and not owned:
        raise ValueError("owners of this file's fields are the flow's setting, not the row's: leave owner empty")
    transform = _pairs(values["transform"], "the transform")
    if listed:
        sources = _pairs(source, "the source (system: field, system: field)")
        return target, {"name": target, **sources, **({"owner": owner} if owner else {}), **transform}
    sources = _pairs(source, "the source") if ":" in source else {"from": source}
    return target, {**sources, **transform, **({"owner": owner} if owner else {})}


def _line(text: str, row_start: int, row_end: int) -> tuple[int, int]:
    """The whole lines a row takes: from its first line's start to past its last line's break
    (the text's end when it has none)."""
    start = text.rfind("\n", 0, row_start) + 1
    end = text.find("\n", row_end)
    return start, len(text) if end < 0 else end + 1


def _written(key: str, rule: dict[str, Any], listed: bool) -> str:
    return _flow(rule) if listed else f"{_flow(key)}: {_flow(rule)}"


def _submitted(form: Mapping[str, Any], prefix: str) -> dict[str, str]:
    return {column: str(form.get(f"{prefix}.{column}", "")).replace("\r\n", "\n").strip() for column in COLUMNS}


def _changes(text: str, rows: list[Row], form: Mapping[str, Any], refused: RowsRefused) -> list[tuple[int, int, str]]:
    edits = []
    for row in rows:
        typed = _submitted(form, f"r{row.index}")
        if f"r{row.index}.target" not in form or typed == row.values():
            continue
        if not row.owner_editable:
            typed["owner"] = row.owner
        try:
            key, rule = _rule(typed, row.listed, row.owner_editable)
        except ValueError as exc:
            refused.errors.setdefault(row.index, []).append(str(exc))
            refused.values[row.index] = typed
            continue
        if key == row.target and rule == row.rule:
            continue  # the same rule written another way: the text stays as it was
        edits.append((row.key_start, row.end, _written(key, rule, row.listed)))
    return edits


def _added(text: str, sections: list[Section], form: Mapping[str, Any],
           refused: RowsRefused) -> list[tuple[int, int, str]]:
    typed = _submitted(form, "new")
    chosen = str(form.get("new.section", ""))
    section = next((s for s in sections if s.path == chosen), None)
    try:
        if section is None:
            raise ValueError(f"choose the section to add the row to (got {chosen!r})")
        key, rule = _rule(typed, section.listed, section.listed)
    except ValueError as exc:
        refused.errors.setdefault(None, []).append(f"the new row: {exc}")
        refused.values[None] = {**typed, "section": chosen}
        return []
    line = section.prefix + _written(key, rule, section.listed) + "\n"
    at_end_without_break = section.insert_at == len(text) and not text.endswith("\n")
    return [(section.insert_at, section.insert_at, "\n" + line if at_end_without_break else line)]


def apply_form(text: str, form: Mapping[str, Any], action: str) -> str:
    """``text`` with the rows the form changed written back (and the row ``delete:<i>`` removed,
    the new row added when ``action`` says so). RowsRefused when a cell cannot be written; the
    text is then unchanged."""
    rows, sections = read(text)
    refused = RowsRefused()
    edits = _changes(text, rows, form, refused)
    if action.startswith("delete:"):
        index = action.removeprefix("delete:")
        row = rows[int(index)] if index.isdigit() and int(index) < len(rows) else None
        if row is None:
            refused.errors.setdefault(None, []).append(f"no row {index!r} to delete")
        else:
            edits = [edit for edit in edits if edit[0] != row.key_start] + [(*_line(text, row.key_start, row.end), "")]
    elif action == "add":
        edits += _added(text, sections, form, refused)
    if refused.errors:
        raise refused
    for start, end, replacement in sorted(edits, key=lambda edit: edit[0], reverse=True):
        text = text[:start] + replacement + text[end:]
    return text

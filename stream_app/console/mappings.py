"""The mappings page (docs/adr/0031): each flow's mapping files as tables, with what
``stream-app mappings check`` says of them and a preview of a pasted record. Editing is
``mapping_edit`` (docs/adr/0037)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import yaml

from quality.suggest import CatalogueError, suggest
from stream_app.flows import mapping_tools

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["MappingFile", "mapping_files", "files_signature", "preview", "preview_in", "tool_for", "parse_record"]

#: the keys of a field rule that name where its value comes from; the rest say how it is transformed
_SOURCES = ("from", "link", "concat", "value", "const")
#: the customer's canonical fields, as the suggestions catalogue names them
CANONICAL = "canonical.customer"
#: keys of a rule that are neither its source nor its transform
_APART = ("owner",)


@dataclass(frozen=True)
class MappingFile:
    flow: str
    name: str
    path: Path
    check: str
    ok: bool
    rows: list[dict[str, str]]
    text: str
    #: (object, "score source → target") pairs ``stream-app mappings suggest`` proposes and the file lacks
    suggestions: list[tuple[str, str]] = dataclass_field(default_factory=list)


def _describe(rule: Any) -> tuple[str, str]:
    """(where the value comes from, how it is transformed) of one field rule."""
    if not isinstance(rule, dict):
        return str(rule), ""
    source = "; ".join(f"{key}: {rule[key]}" if key != "from" else str(rule[key]) for key in _SOURCES if key in rule)
    rest = ", ".join(f"{key}: {value}" for key, value in rule.items() if key not in _SOURCES + _APART)
    return source, rest


def _row(direction: str, source: str, transform: str, target: str, owner: Any = "", condition: str = "") -> dict[str, str]:
    return {"direction": direction, "source": source, "transform": transform, "target": target,
            "owner": str(owner or ""), "condition": condition}


def _listed_rows(document: dict[str, Any]) -> list[dict[str, str]]:
    """Rows of a ``fields:`` list of ``{name, <system>: field, ..., owner}`` (the products flow)."""
    rows = []
    for entry in document.get("fields") or []:
        if not isinstance(entry, dict) or "name" not in entry:
            continue
        systems = [f"{key}.{value}" for key, value in entry.items() if key not in ("name", "owner", "kind")]
        owner = entry.get("owner", "")
        source = next((s for s in systems if s.startswith(f"{owner}.")), systems[0] if systems else "")
        targets = ", ".join(s for s in systems if s != source)
        transform = ", ".join([f"as {entry['name']}", *([f"kind: {entry['kind']}"] if "kind" in entry else [])])
        rows.append(_row("both", source, transform, targets, owner))
    return rows


def _sections(document: Any) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(direction, object, its section, its field rules) of the ``inbound`` and ``outbound`` sections."""
    if not isinstance(document, dict):
        return
    for direction in ("inbound", "outbound"):
        for obj, spec in (document.get(direction) or {}).items():
            if isinstance(spec, dict):
                fields = spec.get("fields") if isinstance(spec.get("fields"), dict) else spec
                yield direction, str(obj), spec, {k: v for k, v in fields.items() if k not in ("key", "create_when")}


def _rows(document: Any, owners: dict[str, str]) -> list[dict[str, str]]:
    """One row per field rule (source field → transform → target field); other settings are in the YAML."""
    rows: list[dict[str, str]] = []
    for direction, target, spec, fields in _sections(document):
        condition = str(spec.get("create_when", "")) if direction == "outbound" else ""
        for name, rule in fields.items():
            source, transform = _describe(rule)
            owner = rule.get("owner", "") if isinstance(rule, dict) else ""
            if direction == "inbound":
                rows.append(_row(direction, f"{target}.{source}", transform, f"canonical.{name}",
                                 owner or owners.get(str(name), "")))
            else:
                rows.append(_row(direction, source, transform, f"{target}.{name}",
                                 owner or owners.get(source, ""), condition))
    return rows or (_listed_rows(document) if isinstance(document, dict) else [])


def _suggestions(document: Any) -> list[tuple[str, str]]:
    """What ``stream-app mappings suggest`` proposes for the file's objects (through the
    customer's canonical fields) that the file does not map yet."""
    found: list[tuple[str, str]] = []
    for direction, obj, _spec, fields in _sections(document):
        source, target = (obj, CANONICAL) if direction == "inbound" else (CANONICAL, obj)
        try:
            pairs = suggest(source, target)
        except CatalogueError:  # an object the catalogue does not know: nothing to propose
            continue
        found += [(obj, f"{pair.score:.2f}  {pair.source} → {pair.target}") for pair in pairs
                  if pair.target not in fields]
    return found


def files_signature(settings: "Settings") -> tuple[tuple[str, int, int], ...]:
    """What the mapping files are now (path, modification time, size): the page is drawn again
    only when it changes (checking and suggesting take a good part of 300 ms)."""
    return tuple((str(path), stat.st_mtime_ns, stat.st_size)
                 for _, _, directory in mapping_tools(settings)
                 for path in sorted(Path(directory).glob("*.yaml")) for stat in (path.stat(),))


def mapping_files(settings: "Settings") -> list[MappingFile]:
    files = []
    for flow, tool, directory in mapping_tools(settings):
        owners = tool.owners() if callable(getattr(tool, "owners", None)) else {}
        try:
            verdict, ok = tool.check(directory), True
        except ValueError as exc:
            verdict, ok = str(exc), False
        try:
            names = tool.names(directory)
        except ValueError:
            names = sorted(path.stem for path in Path(directory).glob("*.yaml"))
        for name in names:
            path = Path(directory) / f"{name}.yaml"
            text = path.read_text() if path.is_file() else ""
            try:
                document = yaml.safe_load(text) if text else None
            except yaml.YAMLError:
                document = None
            files.append(MappingFile(flow, name, path, verdict, ok, _rows(document, owners), text, _suggestions(document)))
    return files


def tool_for(settings: "Settings", flow: str, name: str) -> tuple[Any, Path]:
    """(the flow's mapping tool, the folder its files are read from); ValueError for unknown names."""
    for flow_name, tool, directory in mapping_tools(settings):
        if flow_name == flow:
            try:
                names = tool.names(directory)
            except ValueError:  # a wrong file: still editable by its name
                names = sorted(path.stem for path in Path(directory).glob("*.yaml"))
            if name in names:
                return tool, Path(directory)
    raise ValueError(f"no mapping {name!r} in flow {flow!r}")


def parse_record(record_text: str) -> dict[str, Any]:
    try:
        record = json.loads(record_text)
    except ValueError as exc:
        raise ValueError(f"the record is not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError('the record must be a JSON object: {"source": ..., "entity": ..., "fields": {...}}')
    return record


def preview_in(tool: Any, directory: Path, name: str, record: dict[str, Any]) -> str:
    """What ``record`` maps to through the files of ``directory`` (the tool's own preview)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "record.json"
        path.write_text(json.dumps(record))
        try:
            return str(tool.preview(directory, name, str(path)))
        except ValueError as exc:
            raise ValueError(str(exc).replace(str(path), "the record")) from None


def preview(settings: "Settings", flow: str, name: str, record_text: str) -> str:
    """What one pasted record maps to (``stream-app mappings preview``); ValueError says what is
    wrong with the record or the names."""
    tool, directory = tool_for(settings, flow, name)
    return preview_in(tool, directory, name, parse_record(record_text))

"""The mappings page (read-only in this slice, docs/adr/0031): each flow's mapping files as tables,
with what ``stream-app mappings check`` says of them. Editing, diff and preview come later."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from stream_app.flows import mapping_tools

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["MappingFile", "mapping_files", "preview"]

#: the keys of a field rule that name where its value comes from; the rest say how it is transformed
_SOURCES = ("from", "link", "concat", "value", "const")


@dataclass(frozen=True)
class MappingFile:
    flow: str
    name: str
    path: Path
    check: str
    ok: bool
    rows: list[dict[str, str]]
    text: str


def _describe(rule: Any) -> tuple[str, str]:
    """(where the value comes from, how it is transformed) of one field rule."""
    if not isinstance(rule, dict):
        return str(rule), ""
    source = "; ".join(f"{key}: {rule[key]}" if key != "from" else str(rule[key]) for key in _SOURCES if key in rule)
    rest = ", ".join(f"{key}: {value}" for key, value in rule.items() if key not in _SOURCES)
    return source, rest


def _rows(document: Any) -> list[dict[str, str]]:
    """One row per field rule of the ``inbound`` and ``outbound`` sections (others are in the YAML)."""
    rows: list[dict[str, str]] = []
    if not isinstance(document, dict):
        return rows
    for direction in ("inbound", "outbound"):
        for target, spec in (document.get(direction) or {}).items():
            if not isinstance(spec, dict):
                continue
            fields = spec.get("fields") if isinstance(spec.get("fields"), dict) else spec
            condition = str(spec.get("create_when", "")) if direction == "outbound" else ""
            for name, rule in fields.items():
                if name in ("key", "create_when"):
                    continue
                source, transform = _describe(rule)
                rows.append({"direction": direction, "object": str(target), "field": str(name), "source": source,
                             "transform": transform, "condition": condition})
    return rows


def mapping_files(settings: "Settings") -> list[MappingFile]:
    files = []
    for flow, tool, directory in mapping_tools(settings):
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
            files.append(MappingFile(flow, name, path, verdict, ok, _rows(document), text))
    return files


def preview(settings: "Settings", flow: str, name: str, record_text: str) -> str:
    """What one pasted record maps to (``stream-app mappings preview``); ValueError says what is
    wrong with the record or the names."""
    tools = {(flow_name, mapping): (tool, directory) for flow_name, tool, directory in mapping_tools(settings)
             for mapping in tool.names(directory)}
    if (flow, name) not in tools:
        raise ValueError(f"no mapping {name!r} in flow {flow!r}")
    try:
        record = json.loads(record_text)
    except ValueError as exc:
        raise ValueError(f"the record is not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError('the record must be a JSON object: {"source": ..., "entity": ..., "fields": {...}}')
    tool, directory = tools[(flow, name)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "record.json"
        path.write_text(json.dumps(record))
        try:
            return str(tool.preview(directory, name, str(path)))
        except ValueError as exc:
            raise ValueError(str(exc).replace(str(path), "the record")) from None

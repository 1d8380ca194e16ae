"""Editing one mapping file in the console (docs/adr/0037): check the edited text as
``stream-app mappings check`` would, preview it, show the diff, and save it where the workers
read the site's mappings.

Every check runs on a copy of the flow's mapping folder with the edited file in it, so files
that must agree with each other (the customer sync's flow files) are judged together, and
nothing the workers read changes before the save.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import yaml

from stream_app.console.mappings import preview_in, tool_for
from stream_app.console.tail import newest_records
from stream_app.flows import enabled_flows
from stream_app.settings import env_name

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["Problem", "Verdict", "check_text", "preview_text", "diff", "plan_save", "write", "PlannedSave", "digest",
           "SaveRefused", "site_folder", "latest_event"]


class SaveRefused(ValueError):
    """The save was not done; the message says why."""


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    where: str
    message: str


@dataclass(frozen=True)
class Verdict:
    ok: bool
    #: what the check said (its summary when ok, the whole error otherwise)
    text: str
    problems: list[Problem] = field(default_factory=list)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def _candidate(directory: Path, name: str, text: str) -> Iterator[Path]:
    """A temporary copy of ``directory`` with ``<name>.yaml`` replaced by ``text``."""
    with tempfile.TemporaryDirectory(prefix="connect-mapping-") as folder:
        copy = Path(folder) / directory.name
        shutil.copytree(directory, copy)
        (copy / f"{name}.yaml").write_text(text)
        yield copy


def _line_of(text: str, where: str) -> int | None:
    """The line of the node ``where`` names (``inbound.salesforce.Lead.email``, ``fields.3.owner``),
    for errors that carry no line (pydantic-validated files): the path is followed through the
    YAML's nodes as far as it goes (a key the file lacks: its parent's line)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return _line_by_key(text, where)
    parts = [p for p in re.split(r"[.\[\]]", where) if p]
    line = None
    while node is not None and parts:
        part, found = parts.pop(0), None
        if isinstance(node, yaml.MappingNode):
            # object names hold dots (``salesforce.Lead``): try the longest key first
            for size in range(len(parts) + 1, 0, -1):
                name = ".".join([part, *parts[:size - 1]])
                found = next(((k, v) for k, v in node.value if getattr(k, "value", None) == name), None)
                if found:
                    del parts[:size - 1]
                    break
            key, node = found if found else (None, None)
            line = key.start_mark.line + 1 if key is not None else line
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            node = None
    return line if line is not None else _line_by_key(text, where)


def _line_by_key(text: str, where: str) -> int | None:
    """The line of the last key ``where`` names, found by its text (a file that is not YAML)."""
    for part in reversed([p for p in re.split(r"[.\[\]]", where) if p and not p.isdigit()]):
        found = re.search(rf"^[ \t]*-?[ \t]*['\"]?{re.escape(part)}['\"]?[ \t]*:", text, re.MULTILINE)
        if found:
            return text.count("\n", 0, found.start()) + 1
    return None


def _problems(exc: ValueError, copy: Path, file: str, text: str) -> list[Problem]:
    line = getattr(exc, "line", None)
    if line is not None:  # the customer sync's MappingError names file, line and field itself
        return [Problem(getattr(exc, "file", file), int(line), str(getattr(exc, "where", "")),
                        str(exc).split(": ", 2)[-1])]
    message = str(exc).replace(f"{copy}/", "")
    if message.startswith(f"{file}: "):
        message = message[len(file) + 2:]
    problems = []
    for part in message.split("; "):
        where, sep, said = part.partition(": ")
        if not sep or " " in where:
            where, said = "(file)", part
        problems.append(Problem(file, _line_of(text, where), where, said))
    return problems


def check_text(settings: "Settings", flow: str, name: str, text: str) -> Verdict:
    """What ``stream-app mappings check`` says of the flow's files with ``text`` as ``name``."""
    tool, directory = tool_for(settings, flow, name)
    with _candidate(directory, name, text) as copy:
        try:
            said = tool.check(copy)
        except ValueError as exc:
            problems = _problems(exc, copy, f"{name}.yaml", text)
            return Verdict(False, str(exc).replace(str(copy), str(directory)), problems)
    return Verdict(True, str(said).replace(str(copy), str(directory)))


def preview_text(settings: "Settings", flow: str, name: str, text: str, record: dict[str, Any]) -> str:
    """``stream-app mappings preview`` of ``record`` through the edited text; ValueError when
    the text or the record is wrong."""
    tool, directory = tool_for(settings, flow, name)
    with _candidate(directory, name, text) as copy:
        return preview_in(tool, copy, name, record)


def diff(old: str, new: str, name: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"{name}.yaml (now)", tofile=f"{name}.yaml (edited)"))


def site_folder(settings: "Settings", flow: str) -> Path:
    """Where a save goes: ``<CONNECT_MAPPINGS_DIR>/<flow>``, the folder the workers read when it
    exists (the shipped files belong to the installed package and are never written)."""
    if settings.mappings_dir is None:
        raise SaveRefused(f"saving needs {env_name('mappings_dir')}: the site's mapping folder, shared with the "
                          "workers; the shipped files are part of the installed package")
    return Path(settings.mappings_dir) / flow


@dataclass(frozen=True)
class PlannedSave:
    path: Path
    #: the folder to start from the shipped files first (the site's first edit of this flow)
    seed_from: Path | None
    diff: str


def plan_save(settings: "Settings", flow: str, name: str, text: str, based_on: str) -> PlannedSave:
    """Where ``text`` goes and the diff it makes; SaveRefused when the text fails the check or
    the file changed since ``based_on`` (its digest when the operator opened it)."""
    tool, directory = tool_for(settings, flow, name)
    current_path = directory / f"{name}.yaml"
    current = current_path.read_text() if current_path.is_file() else ""
    if digest(current) != based_on:
        raise SaveRefused(f"{current_path} changed since you opened it; open it again and redo the edit")
    verdict = check_text(settings, flow, name, text)
    if not verdict.ok:
        raise SaveRefused(verdict.text)
    folder = site_folder(settings, flow)
    return PlannedSave(folder / f"{name}.yaml", None if folder.is_dir() else directory, diff(current, text, name))


def write(plan: PlannedSave, text: str) -> None:
    folder = plan.path.parent
    if plan.seed_from is not None:  # the site's folder starts as a copy of the shipped files
        shutil.copytree(plan.seed_from, folder)
    temporary = folder / f".{plan.path.name}.saving"
    temporary.write_text(text)
    os.replace(temporary, plan.path)  # a worker reading it sees the old file or the new, never half


async def latest_event(settings: "Settings", flow: str) -> tuple[str, dict[str, Any]] | None:
    """(topic, value) of the newest message on the flow's source topics, or None when they are
    empty; read without a consumer group (nobody's offsets move)."""
    topics = [settings.topic(name) for f in enabled_flows(settings) if f.name == flow for name in f.source_topics]
    found = await newest_records(settings.kafka_bootstrap_servers, topics)
    if not found:
        return None
    record = max(found.values(), key=lambda r: r.timestamp)
    try:
        value = json.loads(record.value)
    except ValueError:
        raise ValueError(f"the newest event on {record.topic} is not JSON") from None
    return (record.topic, value) if isinstance(value, dict) else None

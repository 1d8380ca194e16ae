"""``stream-app mappings suggest``: field pairs between two objects and a draft mapping file
(quality/suggest, docs/adr/0030)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from quality.suggest import CatalogueError, fields_of, suggest
from quality.suggest.draft import draft

__all__ = ["run_suggest", "read_samples"]


def read_samples(path: Path) -> dict[str, list[dict[str, Any]]]:
    """{"SYSTEM.OBJECT": [record, ...]}; CatalogueError (a ValueError) when the file is not that."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise CatalogueError(f"--samples {path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise CatalogueError(f"--samples {path}: not JSON ({exc})") from None
    if not isinstance(document, dict) or not all(
            isinstance(v, list) and all(isinstance(r, dict) for r in v) for v in document.values()):
        raise CatalogueError(f"--samples {path}: expected {{\"SYSTEM.OBJECT\": [records...]}}")
    return document


def run_suggest(source: str | None, target: str | None, samples_path: Path | None, out: Path | None) -> str:
    """The proposed pairs as text lines (and the draft written to ``out``)."""
    if not source or not target:
        raise click.UsageError("suggest needs --source SYSTEM.OBJECT and --target SYSTEM.OBJECT")
    fields_of(source), fields_of(target)  # unknown objects fail here, before any work
    samples = read_samples(samples_path) if samples_path else None
    pairs = suggest(source, target, samples=samples)
    lines = [f"{p.score:.2f}  {p.source} -> {p.target}" for p in pairs]
    lines.append(f"{len(pairs)} pairs proposed from {source} to {target}")
    if out is not None:
        text = draft(source, target, out.stem, samples=samples)
        try:
            out.write_text(text)
        except OSError as exc:
            raise CatalogueError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
        lines.append(f"draft written to {out}: review it, then move it into a flow's mappings folder")
    return "\n".join(lines)

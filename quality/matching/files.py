"""Two CSV files and a fields.yaml into people, and pairs back into a CSV file.

fields.yaml names the id column and maps roles to columns, either once for both files or per
file::

    id: customer_id            # or:  left: {id: customer_id, first_name: first, ...}
    first_name: first                 right: {id: Id, first_name: FirstName, ...}
    postcode: zip

Every mistake (a missing file, an unknown role, a column the file lacks, YAML that does not
parse) is a MatchingError naming the file and what is wrong.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from quality.matching.errors import MatchingError
from quality.matching.linker import ScoredPair
from quality.matching.records import ROLES, Person, person_from

__all__ = ["Columns", "read_fields", "read_people", "write_pairs", "PAIR_COLUMNS"]

PAIR_COLUMNS = ("left_id", "right_id", "score", "decision")


@dataclass(frozen=True)
class Columns:
    """role → column of one file (``id`` always among them)."""

    roles: Mapping[str, str]


def _columns(node: Any, where: str) -> Columns:
    if not isinstance(node, dict) or not node:
        raise MatchingError(f"{where}: expected a mapping of roles to column names")
    unknown = sorted(str(role) for role in node if role not in ROLES)
    if unknown:
        raise MatchingError(f"{where}: unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}")
    if "id" not in node:
        raise MatchingError(f"{where}: no 'id' role (the column that identifies a record)")
    bad = [role for role, column in node.items() if not isinstance(column, str) or not column.strip()]
    if bad:
        raise MatchingError(f"{where}: role {bad[0]!r} needs a column name")
    return Columns({role: column.strip() for role, column in node.items()})


def read_fields(path: Path) -> tuple[Columns, Columns]:
    """The left and right files' columns from fields.yaml."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise MatchingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise MatchingError(f"{path}:{line} not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if isinstance(document, dict) and ("left" in document or "right" in document):
        extra = sorted(set(document) - {"left", "right"})
        if extra or "left" not in document or "right" not in document:
            raise MatchingError(f"{path}: with per-file columns, give exactly 'left' and 'right' (found {sorted(document)})")
        return _columns(document["left"], f"{path}: left"), _columns(document["right"], f"{path}: right")
    both = _columns(document, str(path))
    return both, both


def read_people(path: Path, columns: Columns, truth: str | None = None) -> tuple[list[Person], dict[str, str]]:
    """The people of one CSV file and, with ``truth``, each record id's truth value."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            wanted = list(columns.roles.items()) + ([("--truth", truth)] if truth else [])
            for role, column in wanted:
                if column not in header:
                    raise MatchingError(f"{path}: no column {column!r} (for {role}); columns: {', '.join(header[:20])}")
            people: list[Person] = []
            labels: dict[str, str] = {}
            seen: set[str] = set()
            for row in reader:
                record_id = (row.get(columns.roles["id"]) or "").strip()
                if not record_id:
                    raise MatchingError(f"{path}: line {reader.line_num}: empty id ({columns.roles['id']})")
                if record_id in seen:
                    raise MatchingError(f"{path}: line {reader.line_num}: id {record_id!r} appears twice")
                seen.add(record_id)
                people.append(person_from(record_id, {role: row.get(column) for role, column in columns.roles.items()}))
                if truth:
                    labels[record_id] = (row.get(truth) or "").strip()
    except OSError as exc:
        raise MatchingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise MatchingError(f"{path}: not a UTF-8 CSV file ({exc})") from None
    return people, labels


def write_pairs(path: Path, pairs: Iterable[ScoredPair]) -> int:
    """pairs.csv (left_id, right_id, score, decision); returns the number of rows."""
    count = 0
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(PAIR_COLUMNS)
            for pair in pairs:
                writer.writerow((pair.left_id, pair.right_id, f"{pair.score:.6f}", pair.decision))
                count += 1
    except OSError as exc:
        raise MatchingError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return count

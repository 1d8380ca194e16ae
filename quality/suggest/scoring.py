"""Scoring a source field against a target field, and the pairs proposed for two objects.

The name says most: the Dice overlap of the two names' concepts (names.py), or, for names the
synonyms table does not know, a fuzzy ratio of their words (rapidfuzz), whichever is higher.
Types agree or not (a number never fills a date). Sample values, when given, compare as sets
(overlap) and as shapes (an email, a phone, a number, a date, a code). Each target field takes
the source field that scores best, if that reaches the minimum; one source field may fill
several target fields (a TIMS ``name`` feeds first and last name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from rapidfuzz.fuzz import token_sort_ratio

from quality.suggest.catalogue import fields_of
from quality.suggest.names import concepts, system_fields, words

__all__ = ["Suggestion", "name_score", "type_score", "value_score", "suggest", "MIN_SCORE"]

MIN_SCORE = 0.6
_SHAPES = (("email", re.compile(r"^[^@\s]+@[^@\s]+\.\w+$")), ("phone", re.compile(r"^\+?[\d\s().-]{7,}$")),
           ("number", re.compile(r"^-?\d+(\.\d+)?$")), ("date", re.compile(r"^\d{4}-\d{2}-\d{2}")),
           ("code", re.compile(r"^[A-Z0-9_-]{2,12}$")))


@dataclass(frozen=True)
class Suggestion:
    source: str
    target: str
    score: float
    name: float
    type: float
    values: float | None


def name_score(source: str, target: str) -> float:
    a, b = concepts(source), concepts(target)
    overlap = 2 * len(set(a) & set(b)) / (len(set(a)) + len(set(b)))
    fuzzy = token_sort_ratio(" ".join(words(source)), " ".join(words(target))) / 100
    return max(overlap, 0.8 * fuzzy)


def type_score(source_kind: str, target_kind: str) -> float:
    if source_kind == target_kind:
        return 1.0
    return 0.5 if "string" in (source_kind, target_kind) else 0.0


def _shape(value: Any) -> str:
    text = str(value).strip()
    return next((name for name, pattern in _SHAPES if pattern.match(text)), "text")


def value_score(source_values: Sequence[Any], target_values: Sequence[Any]) -> float | None:
    """Overlap of the values (case-folded) or, failing that, of their shapes; None without samples."""
    a = {str(v).strip().lower() for v in source_values if v not in (None, "")}
    b = {str(v).strip().lower() for v in target_values if v not in (None, "")}
    if not a or not b:
        return None
    overlap = len(a & b) / min(len(a), len(b))
    shapes_a = {_shape(v) for v in source_values if v not in (None, "")}
    shapes_b = {_shape(v) for v in target_values if v not in (None, "")}
    shape = len(shapes_a & shapes_b) / len(shapes_a | shapes_b)
    return max(overlap, 0.7 * shape)


def _column(records: Iterable[Mapping[str, Any]], field: str) -> list[Any]:
    out = []
    for record in records:
        value: Any = record
        for part in field.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        out.append(value)
    return out


def score(source: str, source_kind: str, target: str, target_kind: str,
          samples: tuple[list[Any], list[Any]] | None = None) -> Suggestion:
    name, kind = name_score(source, target), type_score(source_kind, target_kind)
    values = value_score(*samples) if samples else None
    total = 0.8 * name + 0.2 * kind if values is None else 0.6 * name + 0.15 * kind + 0.25 * values
    if kind == 0.0:
        total = min(total, MIN_SCORE - 0.01)  # never a number into a date, whatever the name says
    return Suggestion(source, target, round(total, 4), round(name, 4), kind, None if values is None else round(values, 4))


def suggest(source: str, target: str, samples: Mapping[str, list[Mapping[str, Any]]] | None = None,
            min_score: float = MIN_SCORE) -> list[Suggestion]:
    """For each target field (not an id or audit field), the best source field if it scores at
    least ``min_score``; best first."""
    source_fields, target_fields = fields_of(source), fields_of(target)
    skipped = system_fields()
    chosen: list[Suggestion] = []
    for target_field, target_kind in target_fields.items():
        if target_field in skipped:
            continue
        best: Suggestion | None = None
        for source_field, source_kind in source_fields.items():
            if source_field in skipped:
                continue
            pair = None
            if samples and source in samples and target in samples:
                pair = (_column(samples[source], source_field), _column(samples[target], target_field))
            found = score(source_field, source_kind, target_field, target_kind, pair)
            if best is None or found.score > best.score:
                best = found
        if best is not None and best.score >= min_score:
            chosen.append(best)
    return sorted(chosen, key=lambda s: (-s.score, s.target))

"""Scoring candidate pairs and deciding: link, review or new."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Literal, Sequence

from quality.matching.blocking import candidate_pairs
from quality.matching.comparisons import compare
from quality.matching.model import Model
from quality.matching.records import Person

__all__ = ["Decision", "ScoredPair", "score_pair", "link", "one_to_one"]

Decision = Literal["link", "review", "new"]


@dataclass(frozen=True)
class ScoredPair:
    left_id: str
    right_id: str
    score: float  # the match probability
    decision: Decision


def score_pair(model: Model, left: Person, right: Person) -> ScoredPair:
    vector = compare(left, right)
    probability = model.probability(vector)
    return ScoredPair(left.id, right.id, probability, model.decision(probability, vector))  # type: ignore[arg-type]


def link(model: Model, left: Sequence[Person], right: Sequence[Person],
         progress: Callable[[int], None] | None = None) -> Iterator[ScoredPair]:
    """The candidate pairs that score at least the review threshold. ``progress`` is told each
    time one more left record has been compared with its candidates."""
    current = -1
    for i, j in candidate_pairs(left, right):
        if progress is not None and i != current:
            progress(i - current)
            current = i
        pair = score_pair(model, left[i], right[j])
        if pair.decision != "new":
            yield pair
    if progress is not None and len(left) - 1 > current:
        progress(len(left) - 1 - current)


def one_to_one(pairs: Iterable[ScoredPair]) -> list[ScoredPair]:
    """Each record linked to one record of the other side at most: links taken best score first;
    a link whose record is already taken becomes review. For two files that are each free of
    duplicates (a TIMS customer list, a Salesforce org after its own duplicate rules)."""
    ordered = sorted(pairs, key=lambda p: (p.decision != "link", -p.score, p.left_id, p.right_id))
    taken_left: set[str] = set()
    taken_right: set[str] = set()
    out = []
    for pair in ordered:
        if pair.decision == "link":
            if pair.left_id in taken_left or pair.right_id in taken_right:
                pair = ScoredPair(pair.left_id, pair.right_id, pair.score, "review")
            else:
                taken_left.add(pair.left_id)
                taken_right.add(pair.right_id)
        out.append(pair)
    return out

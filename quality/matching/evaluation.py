"""Precision, recall and F1 of the links against a truth column (same value: same person)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

from quality.matching.linker import ScoredPair

__all__ = ["Scores", "true_pairs", "evaluate"]


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    links: int
    reviews: int
    true_pairs: int

    def line(self) -> str:
        return (f"precision {self.precision:.4f}  recall {self.recall:.4f}  F1 {self.f1:.4f}  "
                f"({self.links} links, {self.reviews} reviews, {self.true_pairs} true pairs)")


def true_pairs(left: Mapping[str, str], right: Mapping[str, str]) -> set[tuple[str, str]]:
    """Every (left id, right id) whose truth values are equal and not blank."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for record_id, label in right.items():
        if label:
            by_label[label].append(record_id)
    return {(l_id, r_id) for l_id, label in left.items() if label for r_id in by_label.get(label, ())}


def evaluate(pairs: Iterable[ScoredPair], truth: set[tuple[str, str]]) -> Scores:
    pairs = list(pairs)
    links = {(p.left_id, p.right_id) for p in pairs if p.decision == "link"}
    hits = len(links & truth)
    precision = hits / len(links) if links else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision, recall, f1, len(links), sum(1 for p in pairs if p.decision == "review"), len(truth))

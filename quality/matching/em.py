"""Estimating m, u and the prior from unlabelled pairs (no one tells us which pairs match).

u (how often non-matches agree by chance) comes from random pairs: nearly all of them are
non-matches. m comes from expectation–maximisation with u held fixed, in sessions, one per
blocking rule: the pairs that share a postcode key agree on the address because of how they were
chosen, not because they match, so that session learns nothing about the address comparisons
and estimates the others; the session blocked on names estimates the address, and so on (the
approach splink documents). Fitting everything at once on all candidate pairs instead found the
household (same address, same last name) as the "match" class. Last, the prior λ (the share of
matches among the candidate pairs) is fitted with m and u fixed. Counting identical comparison
vectors once makes an iteration cost the number of distinct vectors, not of pairs.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from quality.matching.blocking import candidate_pairs
from quality.matching.comparisons import COMPARISONS, compare
from quality.matching.model import FLOOR, Model, Thresholds
from quality.matching.records import Person

__all__ = ["SESSIONS", "estimate_u", "expectation_maximisation", "fit_prior", "EmResult", "train"]

Vector = tuple[int | None, ...]
Table = dict[str, tuple[float, ...]]

#: (blocking key kinds, the comparisons the session estimates): not those the keys bias (pairs
#: blocked on names agree on names because of the blocking), nor those a household shares, where
#: its pairs are many (the postcode and phone blocks hold households, so no session uses them)
SESSIONS: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = (
    (("nm",), frozenset({"email", "phone", "company", "address", "birth_date"})),
    (("bd",), frozenset({"first_name", "last_name", "email", "phone", "company", "address"})),
)
RANDOM_PAIRS = 50_000


def _frequencies(vectors: Counter[Vector], weights: Callable[[Vector], float], smoothing: float) -> Table:
    out = {}
    for k, comparison in enumerate(COMPARISONS):
        counts = [smoothing] * len(comparison.labels)
        for vector, count in vectors.items():
            level = vector[k]
            if level is not None:
                counts[level] += count * weights(vector)
        total = sum(counts)
        out[comparison.name] = tuple(max(c / total, FLOOR) for c in counts)
    return out


def estimate_u(left: Sequence[Person], right: Sequence[Person], samples: int = RANDOM_PAIRS, seed: int = 0) -> Table:
    """Level frequencies among random pairs, which stand for the non-matches."""
    rng = random.Random(seed)
    vectors: Counter[Vector] = Counter(
        compare(left[rng.randrange(len(left))], right[rng.randrange(len(right))]) for _ in range(samples))
    return _frequencies(vectors, lambda _: 1.0, smoothing=1.0)


@dataclass(frozen=True)
class EmResult:
    m: Table
    prior: float
    iterations: int
    converged: bool


def _initial_m() -> Table:
    """Matches mostly agree: most weight on the first level, a little on each other."""
    out = {}
    for comparison in COMPARISONS:
        rest = len(comparison.labels) - 1
        out[comparison.name] = (0.8, *([0.2 / rest] * rest))
    return out


def _likelihood(probabilities: Table, vector: Vector) -> float:
    product = 1.0
    for comparison, level in zip(COMPARISONS, vector):
        if level is not None:
            product *= probabilities[comparison.name][level]
    return product


def _posteriors(vectors: Counter[Vector], m: Table, u: Table, prior: float) -> dict[Vector, float]:
    posterior = {}
    for vector in vectors:
        matched = prior * _likelihood(m, vector)
        unmatched = (1 - prior) * _likelihood(u, vector)
        posterior[vector] = matched / (matched + unmatched) if matched + unmatched > 0 else 0.0
    return posterior


def expectation_maximisation(vectors: Counter[Vector], u: Table, m: Table | None = None, prior: float = 0.3,
                             max_iterations: int = 200, tolerance: float = 1e-7, fit_m: bool = True) -> EmResult:
    """m (unless ``fit_m`` is False) and λ that maximise the likelihood of the vectors, u fixed."""
    m = m or _initial_m()
    total = sum(vectors.values())
    for iteration in range(1, max_iterations + 1):
        posterior = _posteriors(vectors, m, u, prior)
        new_prior = min(max(sum(posterior[v] * c for v, c in vectors.items()) / total, 1e-6), 1 - 1e-6)
        new_m = _frequencies(vectors, posterior.__getitem__, smoothing=0.01) if fit_m else m
        change = max([abs(new_prior - prior)] + [abs(a - b) for name in m for a, b in zip(m[name], new_m[name])])
        m, prior = new_m, new_prior
        if change < tolerance:
            return EmResult(m, prior, iteration, True)
    return EmResult(m, prior, max_iterations, False)


def _only(vector: Vector, estimated: frozenset[str]) -> Vector:
    return tuple(level if c.name in estimated else None for c, level in zip(COMPARISONS, vector))


def fit_prior(vectors: Counter[Vector], m: Table, u: Table) -> float:
    return expectation_maximisation(vectors, u, m=m, fit_m=False).prior


def train(left: Sequence[Person], right: Sequence[Person], version: str, thresholds: Thresholds = Thresholds(),
          seed: int = 0) -> Model:
    """A model fitted to two record sets: u from random pairs, m by EM per blocking session,
    λ over all candidate pairs."""
    u = estimate_u(left, right, seed=seed)
    estimates: dict[str, list[tuple[float, ...]]] = {c.name: [] for c in COMPARISONS}
    sessions = []
    for kinds, estimated in SESSIONS:
        vectors = Counter(_only(compare(left[i], right[j]), estimated) for i, j in candidate_pairs(left, right, kinds=kinds))
        if not vectors:
            continue
        result = expectation_maximisation(vectors, u)
        sessions.append({"blocking": list(kinds), "pairs": sum(vectors.values()), "iterations": result.iterations,
                         "converged": result.converged})
        for comparison in COMPARISONS:
            if comparison.name in estimated:
                estimates[comparison.name].append(result.m[comparison.name])
    if not sessions:
        raise ValueError("no candidate pairs to train on: the two files share no blocking key")
    m = {name: tuple(sum(column) / len(column) for column in zip(*found)) if found else _initial_m()[name]
         for name, found in estimates.items()}
    everything = Counter(compare(left[i], right[j]) for i, j in candidate_pairs(left, right))
    prior = fit_prior(everything, m, u)
    trained = {"left_records": len(left), "right_records": len(right), "candidate_pairs": sum(everything.values()),
               "u_random_pairs": RANDOM_PAIRS, "seed": seed, "sessions": sessions}
    return Model(version=version, m=m, u=u, prior=prior, thresholds=thresholds, trained=trained)

"""EM (quality/matching/em.py) recovers m and the prior from vectors drawn with known ones."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from quality.matching.comparisons import COMPARISONS
from quality.matching.em import expectation_maximisation

USED = ("first_name", "last_name", "phone", "birth_date")


def _draw(rng: random.Random, probabilities: tuple[float, ...]) -> int:
    return rng.choices(range(len(probabilities)), weights=probabilities)[0]


def test_em_recovers_the_m_probabilities_and_the_prior() -> None:
    rng = random.Random(3)
    levels = {c.name: len(c.labels) for c in COMPARISONS}
    m_true = {name: tuple([0.85, 0.1] + [0.05 / (levels[name] - 2)] * (levels[name] - 2)) for name in USED}
    u = {c.name: tuple([0.02, 0.03] + [0.95 / (levels[c.name] - 2)] * (levels[c.name] - 2)) for c in COMPARISONS}
    vectors: Counter = Counter()
    for _ in range(20_000):
        table = m_true if rng.random() < 0.3 else u
        vectors[tuple(_draw(rng, table[c.name]) if c.name in USED else None for c in COMPARISONS)] += 1
    result = expectation_maximisation(vectors, u)
    assert result.converged
    assert result.prior == pytest.approx(0.3, abs=0.02)
    for name in USED:
        assert result.m[name][0] == pytest.approx(0.85, abs=0.03)

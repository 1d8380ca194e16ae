"""Comparisons: how far two people agree on one role, as a level (0 = the strongest agreement,
the last level = disagreement), or None when either side lacks the value (weight 0).

Levels are few and ordered, as Fellegi–Sunter needs: the model learns an m and a u probability
per level, so a level only has to separate pairs whose evidence differs. String similarity comes
from rapidfuzz (Jaro–Winkler, Levenshtein, token ratios); it is not written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler, Levenshtein
from rapidfuzz.fuzz import token_set_ratio, token_sort_ratio

from quality.matching.records import Person, swapped
from quality.matching.tables import nickname_groups

__all__ = ["Comparison", "COMPARISONS", "compare", "orient", "by_name"]

Level = int | None


@dataclass(frozen=True)
class Comparison:
    """One role's comparison: its level labels (strongest first, "else" last) and the function."""

    name: str
    labels: tuple[str, ...]
    level: Callable[[str, str], int]

    def __call__(self, left: Person, right: Person) -> Level:
        a, b = getattr(left, self.name), getattr(right, self.name)
        if a is None or b is None:
            return None
        return self.level(a, b)


def _nicknames(a: str, b: str) -> bool:
    groups = nickname_groups()
    first_a, first_b = a.split()[0], b.split()[0]
    return bool(groups.get(first_a, frozenset()) & groups.get(first_b, frozenset()))


@lru_cache(maxsize=65536)
def _near_groups(name: str) -> frozenset[int]:
    """The nickname groups of the table's names one edit away from ``name`` (a mistyped "Bill")."""
    groups = nickname_groups()
    if len(name) < 3:
        return frozenset()
    found = process.extract(name, list(groups), scorer=Levenshtein.distance, score_cutoff=1, limit=None)
    return frozenset().union(*(groups[match] for match, _, _ in found)) if found else frozenset()


def _mistyped_nicknames(a: str, b: str) -> bool:
    first_a, first_b = a.split()[0], b.split()[0]
    return bool(_near_groups(first_a) & _near_groups(first_b))


def _band(similarity: float, cuts: tuple[float, ...]) -> int | None:
    """The index of the first cut ``similarity`` reaches (cuts from the strictest), else None."""
    return next((i for i, cut in enumerate(cuts) if similarity >= cut), None)


def _first_name(a: str, b: str) -> int:
    if a == b:
        return 0
    if _nicknames(a, b):
        return 1
    band = _band(JaroWinkler.similarity(a, b), (0.92, 0.80))
    if band is not None:
        return 2 + band
    if len(a) == 1 or len(b) == 1:  # an initial
        return 5 if a[0] == b[0] else 6
    return 4 if _mistyped_nicknames(a, b) else 6


def _last_name(a: str, b: str) -> int:
    if a == b:
        return 0
    band = _band(JaroWinkler.similarity(a, b), (0.94, 0.85))
    return 3 if band is None else 1 + band


def _email(a: str, b: str) -> int:
    if a == b:
        return 0
    if a.partition("@")[0] == b.partition("@")[0]:
        return 1
    return 2


def _phone(a: str, b: str) -> int:
    if a == b:
        return 0
    if a[-7:] == b[-7:]:
        return 1
    if len(a) == len(b) and Levenshtein.distance(a, b, score_cutoff=2) <= 1:
        return 2
    return 3


def _ratio_levels(strong: float, weak: float, scorer: Callable[[str, str], float]) -> Callable[[str, str], int]:
    def level(a: str, b: str) -> int:
        if a == b:
            return 0
        band = _band(scorer(a, b), (strong, weak))
        return 3 if band is None else 1 + band
    return level


def _birth_date(a: str, b: str) -> int:
    """ISO dates: equal; day and month exchanged or one digit mistyped; same year; else."""
    if a == b:
        return 0
    if (a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]) or Levenshtein.distance(a, b) == 1:
        return 1
    return 2 if a[:4] == b[:4] else 3


def _street_agrees(a: Person, b: Person) -> bool:
    if a.street is None or b.street is None:
        return False
    return a.street == b.street or token_sort_ratio(a.street, b.street) >= 90


def _address(a: Person, b: Person) -> Level:
    """One comparison for the whole address: street, postcode, city, state and country agree or
    disagree together (a household shares all of them), so weighing each apart would count one
    piece of evidence four times."""
    street = _street_agrees(a, b)
    postcode = a.postcode is not None and a.postcode == b.postcode
    near_postcode = (a.postcode is not None and b.postcode is not None
                     and Levenshtein.distance(a.postcode, b.postcode, score_cutoff=2) <= 1)
    city = a.city is not None and a.city == b.city
    if street and a.street2 and b.street2 and a.street2 != b.street2:
        street = False  # another flat in the same building
    if street and postcode:
        return 0
    if street and (near_postcode or city):
        return 1
    if postcode:
        return 2
    if city and not (a.state and b.state and a.state != b.state):
        return 3
    if a.state and b.state:
        return 4 if a.state == b.state and not (a.country and b.country and a.country != b.country) else 5
    if (a.postcode and b.postcode) or (a.city and b.city):
        return 5
    if a.country and b.country and a.country != b.country:
        return 5
    return None


class _Composite(Comparison):
    """A comparison that reads several roles of the two people (the address)."""

    def __call__(self, left: Person, right: Person) -> Level:
        return self.level(left, right)  # type: ignore[arg-type]


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("first_name", ("exact", "nickname", "jw>=0.92", "jw>=0.80", "nickname with a typo", "initial", "else"), _first_name),
    Comparison("last_name", ("exact", "jw>=0.94", "jw>=0.85", "else"), _last_name),
    Comparison("email", ("exact", "same local part", "else"), _email),
    Comparison("phone", ("exact", "last 7 digits", "one digit off", "else"), _phone),
    Comparison("company", ("exact", "token set>=90", "token set>=70", "else"), _ratio_levels(90, 70, token_set_ratio)),
    _Composite("address", ("street and postcode", "street and town", "postcode", "city", "state", "else"), _address),  # type: ignore[arg-type]
    Comparison("birth_date", ("exact", "day/month swapped or one digit off", "same year", "else"), _birth_date),
)


def by_name() -> dict[str, Comparison]:
    return {comparison.name: comparison for comparison in COMPARISONS}


def _name_agreement(left: Person, right: Person) -> float:
    pairs = ((left.first_name, right.first_name), (left.last_name, right.last_name))
    return sum(JaroWinkler.similarity(a, b) for a, b in pairs if a and b)


def orient(left: Person, right: Person) -> Person:
    """``right``, with its first and last name exchanged when that agrees clearly better with
    ``left`` (names typed into the wrong boxes)."""
    if not (left.first_name and left.last_name and right.first_name and right.last_name):
        return right
    agreement = _name_agreement(left, right)
    if agreement >= 1.8:  # two similarities of at most 1 each: exchanging cannot beat it by 0.2
        return right
    exchanged = swapped(right)
    if _name_agreement(left, exchanged) > agreement + 0.2:
        return exchanged
    return right


def compare(left: Person, right: Person) -> tuple[Level, ...]:
    """The comparison vector of a pair: one level (or None) per comparison, in COMPARISONS order."""
    right = orient(left, right)
    return tuple(comparison(left, right) for comparison in COMPARISONS)

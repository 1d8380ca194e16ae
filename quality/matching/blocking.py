"""Blocking: the keys under which two records must meet to be compared at all.

Comparing every left record with every right one grows with the product of the sizes; a pair
is compared only when the two share a key. The keys are chosen so that each kind of damage a
real pair may carry (a typo in the postcode, a nickname, names in the wrong boxes, a missing
phone) still leaves one key they share. A key that too many records share (a common last name
in a big city) is skipped as useless rather than compared in full.

:class:`BlockingIndex` is the shape the stream will keep in a table: key → record ids.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Iterator

from jellyfish import soundex

from quality.matching.records import Person

__all__ = ["block_keys", "BlockingIndex", "candidate_pairs", "MAX_BLOCK"]

#: a key shared by more records than this on one side is not used
MAX_BLOCK = 200


def _sound(name: str | None) -> str | None:
    return soundex(name.replace(" ", "")) if name else None


def block_keys(person: Person) -> set[str]:
    """The blocking keys of one person (none for a record without any usable role)."""
    keys: set[str] = set()
    first, last = person.first_name, person.last_name
    names = [n for n in (first, last) if n]
    if person.postcode:
        keys.update(f"pc:{person.postcode}:{name[0]}" for name in names)
    sounds = sorted(s for s in (_sound(first), _sound(last)) if s)
    if len(sounds) == 2:
        keys.add(f"nm:{sounds[0]}:{sounds[1]}")
    if person.city:
        keys.update(f"ct:{person.city}:{_sound(name)}" for name in names)
    if person.phone:
        keys.add(f"ph:{person.phone[-7:]}")
    if person.birth_date:
        keys.add(f"bd:{person.birth_date}")
    if person.email:
        keys.add(f"em:{person.email}")
    return keys


class BlockingIndex:
    """Blocking key → the ids of the records that have it."""

    def __init__(self, max_block: int = MAX_BLOCK, kinds: tuple[str, ...] = ()) -> None:
        self.max_block = max_block
        self.kinds = kinds
        self._ids: dict[str, list[int]] = defaultdict(list)

    def _keys(self, person: Person) -> Iterable[str]:
        keys = block_keys(person)
        return [k for k in keys if k.split(":", 1)[0] in self.kinds] if self.kinds else keys

    def add(self, index: int, person: Person) -> None:
        for key in self._keys(person):
            self._ids[key].append(index)

    def candidates(self, person: Person) -> set[int]:
        found: set[int] = set()
        for key in self._keys(person):
            ids = self._ids.get(key)
            if ids and len(ids) <= self.max_block:
                found.update(ids)
        return found


def candidate_pairs(left: Iterable[Person], right: Iterable[Person], max_block: int = MAX_BLOCK,
                    kinds: tuple[str, ...] = ()) -> Iterator[tuple[int, int]]:
    """(left index, right index) of every pair that shares a usable key (of ``kinds``, the key
    prefixes such as ``pc``, when given), each pair once."""
    index = BlockingIndex(max_block, kinds)
    for j, person in enumerate(right):
        index.add(j, person)
    for i, person in enumerate(left):
        for j in sorted(index.candidates(person)):
            yield i, j

"""Probabilistic matching of a would-be new customer against the golden records (docs/adr/0036).

The matcher is ``quality.matching`` (Fellegi–Sunter, docs/adr/0029); this module keeps its
blocking index in a table and decides for one record at a time:

- ``b:<blocking key>`` → the customer keys that have it (at most ``MAX_BLOCK`` + 1: a key
  that common says nothing and is skipped, as in the batch linker);
- ``p:<customer key>`` → the customer's profiles: the golden record's matching fields first,
  then those of records linked to it by matching (a TIMS customer entered at the counter with
  another email and a mistyped name stays findable by what it said);

The email is one of the blocking keys (``b:em:<address>``): its first customer is the one the
address was decided for, so two records of one address meet even before the identity index has
the address.

A link is decided only when the model says link *and* something besides the names and the
company agrees (phone, street address or birth date): two people called Ada Lovelace with
different emails are one person to Fellegi–Sunter on names alone, which the stream must not
merge without a reviewer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping, MutableMapping

from quality.matching import Model, Person, person_from
from quality.matching.blocking import block_keys
from quality.matching.comparisons import COMPARISONS, compare

__all__ = ["MATCH_FIELDS", "Match", "BlockingTable", "profile_of", "decide", "review_id", "corroborated"]

#: canonical golden-record fields the matcher reads, and the matcher's role for each
MATCH_FIELDS = {"first_name": "first_name", "last_name": "last_name", "email": "email", "phone": "phone",
                "company": "company", "street": "street", "city": "city", "postal_code": "postcode",
                "state": "state", "country": "country", "birth_date": "birth_date"}
#: profiles kept per customer: the golden one and a few linked variants
VARIANTS = 4
#: a blocking key shared by more customers than this is skipped (and no longer grows): each new
#: record is compared with every member of its keys, inside the one matching partition
MAX_BLOCK = 50
#: comparisons that corroborate names, and the weakest level of each that still agrees
_CORROBORATING = {"phone": 2, "address": 1, "birth_date": 1}
_INDEX = {c.name: i for i, c in enumerate(COMPARISONS)}


def profile_of(fields: Mapping[str, Any]) -> dict[str, str]:
    """The matching roles of canonical fields (plain values; empty ones left out)."""
    out = {}
    for name, role in MATCH_FIELDS.items():
        value = fields.get(name)
        if value is not None and str(value).strip():
            out[role] = str(value)
    return out


def review_id(new_key: str, candidate_key: str) -> str:
    """The same pair always gets the same review (a redone match sends the same record)."""
    return "r" + hashlib.sha256(f"{new_key}|{candidate_key}".encode()).hexdigest()[:15]


@dataclass(frozen=True)
class Match:
    """What the matcher decided for one record: ``candidate`` is the best-scoring customer."""

    decision: str  # link, review or new
    candidate: str | None = None
    score: float = 0.0
    levels: dict[str, str] = field(default_factory=dict)
    compared: int = 0


def corroborated(vector: tuple[int | None, ...]) -> bool:
    """Whether something besides names and company agrees (phone, street address, birth date)."""
    return any(vector[_INDEX[name]] is not None and vector[_INDEX[name]] <= weakest  # type: ignore[operator]
               for name, weakest in _CORROBORATING.items())


def _labels(vector: tuple[int | None, ...]) -> dict[str, str]:
    return {c.name: ("missing" if level is None else c.labels[level]) for c, level in zip(COMPARISONS, vector)}


@lru_cache(maxsize=20_000)
def _person(key: str, profile: tuple[tuple[str, str], ...]) -> Person:
    """A candidate's profile normalised once (the same customers are candidates again and again)."""
    return person_from(key, dict(profile))


def decide(model: Model, person: Person, candidates: Mapping[str, Iterable[Mapping[str, str]]]) -> Match:
    """Score ``person`` against each candidate's profiles (the best profile counts) and decide."""
    best: tuple[float, str, tuple[int | None, ...]] | None = None
    compared = 0
    for key in sorted(candidates):
        for profile in candidates[key]:
            vector = compare(person, _person(key, tuple(sorted(profile.items()))))
            compared += 1
            score = model.probability(vector)
            if best is None or score > best[0]:
                best = (score, key, vector)
    if best is None:
        return Match("new")
    score, key, vector = best
    decision = model.decision(score, vector)
    if decision == "link" and not corroborated(vector):
        decision = "review"
    if decision == "new":
        return Match("new", compared=compared)
    return Match(decision, key, score, _labels(vector), compared)


class BlockingTable:
    """The blocking index kept in a table (any mutable mapping of str → JSON values); values are
    assigned back whole, so a changelogged table records each change."""

    def __init__(self, table: MutableMapping[str, Any], max_block: int = MAX_BLOCK) -> None:
        self.table = table
        self.max_block = max_block

    def owner_of(self, email: str) -> str | None:
        """The customer an (already normalised) email was first filed under."""
        members = self.table.get(f"b:em:{email}") or []
        return str(members[0]) if members else None

    def profiles(self, key: str) -> list[dict[str, str]]:
        return list(self.table.get(f"p:{key}") or [])

    def candidates(self, person: Person) -> dict[str, list[dict[str, str]]]:
        """Customer key → profiles, for every customer sharing a usable blocking key."""
        keys: set[str] = set()
        for block in block_keys(person):
            members = self.table.get(f"b:{block}") or []
            if len(members) <= self.max_block:
                keys.update(members)
        return {key: profiles for key in keys if (profiles := self.profiles(key))}

    def forget(self, key: str) -> None:
        """Remove every trace of ``key`` (an erased person): profiles and block memberships."""
        self._file(key, self.profiles(key), [])

    def add(self, key: str, profile: Mapping[str, str], *, golden: bool = False) -> None:
        """File ``profile`` under ``key``: the golden one replaces the first slot, a linked
        record's is added (the oldest variant goes first when there are too many)."""
        if not profile:
            return
        before = self.profiles(key)
        entry = dict(profile)
        if golden:
            after = [entry] + before[1:]
        elif entry not in before:
            after = (before[:1] + (before[1:] + [entry])[-(VARIANTS - 1):]) if before else [entry]
        else:
            after = before
        self._file(key, before, after)

    def _file(self, key: str, before: list[dict[str, str]], after: list[dict[str, str]]) -> None:
        """Store ``after`` as the key's profiles and move its block memberships along: a block no
        profile has any more drops the key (blocking keys hold emails, phone digits, postcodes;
        an erased or changed value must not stay behind). Each table write is a changelog
        message, so only what changed is written."""
        if after == before:
            return
        if after:
            self.table[f"p:{key}"] = after
        else:
            self.table.pop(f"p:{key}", None)  # a tombstone in the changelog
        old, new = (set().union(*(block_keys(person_from(key, p)) for p in ps)) for ps in (before, after))
        for block in old - new:
            members = [member for member in self.table.get(f"b:{block}") or [] if member != key]
            if members:
                self.table[f"b:{block}"] = members
            else:
                self.table.pop(f"b:{block}", None)
        for block in new - old:
            members = list(self.table.get(f"b:{block}") or [])
            if key not in members and len(members) <= self.max_block:
                self.table[f"b:{block}"] = members + [key]

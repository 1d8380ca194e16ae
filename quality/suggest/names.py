"""Field names into concepts: split into words, replace known phrases by their concept (the
synonyms table, data/synonyms.yaml), drop the words that only say where a field lives."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml

__all__ = ["words", "concepts", "system_fields"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@lru_cache(maxsize=1)
def _table() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parent / "data" / "synonyms.yaml").read_text())


@lru_cache(maxsize=1)
def _phrases() -> list[tuple[tuple[str, ...], str]]:
    """(phrase, concept), longest phrase first."""
    found = [(tuple(str(w) for w in phrase), concept)
             for concept, phrases in _table()["concepts"].items() for phrase in phrases]
    return sorted(found, key=lambda item: -len(item[0]))


def system_fields() -> frozenset[str]:
    return frozenset(_table()["system_fields"])


def words(name: str) -> list[str]:
    """``MailingPostalCode`` → mailing postal code; ``billing_address.postal_code`` → billing
    address postal code; ``pi__score__c`` → pi score c."""
    spaced = _CAMEL.sub(" ", name)
    spaced = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", spaced)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


@lru_cache(maxsize=4096)
def concepts(name: str) -> tuple[str, ...]:
    """The concepts and leftover words a field name says, noise dropped unless nothing else is left."""
    tokens = words(name)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for phrase, concept in _phrases():
            if tuple(tokens[i:i + len(phrase)]) == phrase:
                out.append(concept)
                i += len(phrase)
                break
        else:
            out.append(tokens[i])
            i += 1
    noise = set(_table()["noise"])
    kept = [t for t in out if t not in noise]
    return tuple(kept or out)

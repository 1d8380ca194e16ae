"""The word tables the comparisons read (data/*.yaml), loaded once on first use."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

__all__ = ["nickname_groups", "abbreviations"]

_DATA = Path(__file__).resolve().parent / "data"


def _read(name: str) -> dict:
    return yaml.safe_load((_DATA / name).read_text()) or {}


@lru_cache(maxsize=1)
def nickname_groups() -> dict[str, frozenset[int]]:
    """Each name or nickname → the ids of the groups it belongs to (a formal name and its short forms)."""
    groups: dict[str, set[int]] = {}
    for index, (formal, short) in enumerate(_read("nicknames.yaml").items()):
        for name in (formal, *short):
            groups.setdefault(str(name).lower(), set()).add(index)
    return {name: frozenset(ids) for name, ids in groups.items()}


@lru_cache(maxsize=None)
def abbreviations(kind: str) -> dict[str, str]:
    """``kind`` (street, company, states, countries): each written form → the one form kept."""
    table: dict[str, str] = {}
    for kept, forms in (_read("abbreviations.yaml").get(kind) or {}).items():
        kept = str(kept)
        table[kept] = kept
        for form in forms or ():
            table[str(form).lower()] = kept
    return table

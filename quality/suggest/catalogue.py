"""The fields and types of every object the repo knows (data/catalogue.json, written by
scripts/build_field_catalogue.py from the sandbox and the TIMS contract)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

__all__ = ["CatalogueError", "objects", "fields_of"]

_CATALOGUE = Path(__file__).resolve().parent / "data" / "catalogue.json"


class CatalogueError(ValueError):
    """An object name the catalogue does not know, or a samples file that cannot be read."""


@lru_cache(maxsize=1)
def objects() -> dict[str, dict[str, str]]:
    """SYSTEM.OBJECT → field → kind (string, number, boolean, date, list)."""
    return json.loads(_CATALOGUE.read_text())


def fields_of(name: str) -> dict[str, str]:
    known = objects()
    if name in known:
        return known[name]
    folded = {key.lower(): key for key in known}
    if name.lower() in folded:
        return known[folded[name.lower()]]
    raise CatalogueError(f"unknown object {name!r}; known: {', '.join(known)}")

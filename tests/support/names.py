"""Unique names for what a test makes on the shared broker, so that it can be removed after.

Every topic prefix, app id or topic name a test makes on the broker contains a token from
``unique``; after each test, ``tests/conftest.py`` deletes the topics whose names contain one of
the tokens that test was given. Without it the broker keeps every test's topics: a few thousand
partitions per run, until it runs out of file descriptors (seen: a broker with about 20,000
partition folders died with "Too many open files" in the middle of a run).
"""

from __future__ import annotations

import uuid

__all__ = ["issued", "unique"]

_issued: list[str] = []


def unique(stem: str = "", length: int = 8) -> str:
    """``stem`` followed by a random hex token of ``length`` characters, remembered for cleanup."""
    token = uuid.uuid4().hex[:length]
    _issued.append(token)
    return f"{stem}{token}"


def issued() -> list[str]:
    """The tokens handed out since the last call, and forget them."""
    tokens = list(_issued)
    _issued.clear()
    return tokens

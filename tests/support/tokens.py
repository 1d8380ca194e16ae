"""A stand-in for ``connectors.salesforce.auth.TokenProvider`` in client unit tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Token", "Tokens"]


@dataclass
class Token:
    access_token: str


class Tokens:
    """Issues tok1, then tok2 after the first refresh, and so on; remembers what it was told was stale."""

    def __init__(self) -> None:
        self.current = Token("tok1")
        self.refreshes = 0
        self.stale_seen: list[Any] = []

    async def token(self) -> Token:
        return self.current

    async def refresh(self, stale: Any = None) -> Token:
        self.refreshes += 1
        self.stale_seen.append(stale)
        self.current = Token(f"tok{self.refreshes + 1}")
        return self.current

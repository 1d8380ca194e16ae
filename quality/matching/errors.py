"""The one exception of the matcher: a mistake the user can fix (a file, a role, a model)."""

from __future__ import annotations

__all__ = ["MatchingError"]


class MatchingError(ValueError):
    """What is wrong, in one line, naming the file or role at fault."""

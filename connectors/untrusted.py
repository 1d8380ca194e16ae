"""Reading bodies that arrive from outside (webhooks): JSON that later stages can trust.

orjson, not the json module: orjson stops at 1,024 levels with an error where json recurses
into a RecursionError, and it refuses what json lets through and later stages trip on: NaN and
Infinity, numbers that overflow a double, invalid UTF-8 and lone surrogates. The depth limit is
then checked without recursion, keeping every later ``json.dumps`` and recursive walk far from
Python's recursion limit.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["UntrustedBody", "load_json", "nests_deeper"]


class UntrustedBody(ValueError):
    """``reason``: ``not_json`` or ``too_deep``; the message quotes no value of the body."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def load_json(body: bytes, max_depth: int) -> Any:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UntrustedBody("not_json", f"the body is not JSON: {exc}") from None
    if nests_deeper(value, max_depth):
        raise UntrustedBody("too_deep", f"the body nests deeper than {max_depth} levels")
    return value


def nests_deeper(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False

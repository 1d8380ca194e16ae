"""Text made safe once, where it enters: lone surrogates and control characters.

A lone surrogate (``"\\ud800"``, which JSON's ``\\u`` escapes can carry) is not valid UTF-8: the
worker could neither encode nor decode a message holding one, and the systems we write to would
refuse it. NUL and the other C0 control characters (tab, line feed and carriage return aside)
break CSV exports, logs and some target fields. :func:`sanitize` replaces each lone surrogate
with U+FFFD, drops those control characters, and says which field paths it changed, so the
change is recorded on the event (``SourceEvent.sanitized_fields``), never silent.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["sanitize", "clean_text", "is_clean"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_ANY = re.compile("[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f]")
#: nesting followed at most; deeper values are left as they are (the worker's codec refuses them)
MAX_DEPTH = 64


def clean_text(text: str) -> str:
    """``text`` without lone surrogates (each becomes U+FFFD) and C0 controls but tab and newlines."""
    if _ANY.search(text) is None:  # the common case: one scan, no copy
        return text
    return _CONTROL.sub("", _SURROGATE.sub("\ufffd", text))


def _clean_str(text: str) -> bool:
    # isprintable() is a C loop that is False for every character _ANY matches (and for a few
    # more, as tab or a no-break space, which the regex then clears)
    return text.isprintable() or _ANY.search(text) is None


def is_clean(value: Any, depth: int = 0) -> bool:
    """Whether :func:`sanitize` would leave ``value`` as it is: no copies and no paths (the
    common case, on every event)."""
    if isinstance(value, str):
        return _clean_str(value)
    if depth >= MAX_DEPTH:
        return True
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not _clean_str(key):
                return False
            if not (_clean_str(item) if isinstance(item, str) else is_clean(item, depth + 1)):
                return False
        return True
    if isinstance(value, list):
        for item in value:
            if not is_clean(item, depth + 1):
                return False
    return True


def sanitize(value: Any, path: str = "", changed: list[str] | None = None, depth: int = 0) -> tuple[Any, list[str]]:
    """``value`` with every string cleaned (keys too), and the paths that changed (``value``
    itself, not a copy, when nothing needs cleaning)."""
    if changed is None:
        if is_clean(value, depth):
            return value, []
        changed = []
    if isinstance(value, str):
        cleaned = clean_text(value)
        if cleaned != value:
            changed.append(path or "(value)")
        return cleaned, changed
    if depth >= MAX_DEPTH:
        return value, changed
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = clean_text(key) if isinstance(key, str) else key
            where = f"{path}.{name}" if path else str(name)
            if name != key:
                changed.append(where)
            out[name] = sanitize(item, where, changed, depth + 1)[0]
        return out, changed
    if isinstance(value, list):
        return [sanitize(item, f"{path}[{i}]", changed, depth + 1)[0] for i, item in enumerate(value)], changed
    return value, changed

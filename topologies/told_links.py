"""Links a stage was told in its messages, read before its own copy of a replicated map.

A stage that writes a replicated map (``stream_app/replicated.py``, docs/adr/0019) and then sends
a message about it to a stage on another worker races that worker's reader: the message can
arrive before the entry does. So a message whose handling depends on an entry carries it, and the
stage that reads the message looks at what it was told before its own copy of the map
(docs/adr/0021 and 0026, addenda).

A row that keeps what it was told (:func:`remember`) stores it as ``{reference: [value, since
epoch ms]}``: JSON, like the rest of the row.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

__all__ = ["Told", "LinkMap", "remember", "told_values", "KEEP_MS"]

#: how long a told link outlives a different value in the map (the map moved on since)
KEEP_MS = 10 * 60 * 1000


class LinkMap(Protocol):
    def get(self, key: str) -> str | None: ...


class Told:
    """The link map, with the links a message (or a row) was told read first."""

    def __init__(self, told: Mapping[str, str], links: LinkMap) -> None:
        self.told, self.links = told, links

    def get(self, key: str) -> str | None:
        value = self.told.get(key)
        return value if value is not None else self.links.get(key)


def remember(kept: Mapping[str, Any], told: Mapping[str, str], links: LinkMap, now_ms: int,
             keep_ms: int = KEEP_MS) -> dict[str, list[Any]]:
    """What a row keeps of the links it was told: the newly told (since ``now_ms``, unless it was
    told the same before) over the kept, less what this worker's map has caught up with (the same
    value there) and what the map has held another value for past ``keep_ms`` (it moved on)."""
    merged = {ref: list(entry) for ref, entry in kept.items()}
    for ref, value in told.items():
        if ref not in merged or merged[ref][0] != value:
            merged[ref] = [value, now_ms]
    kept_now: dict[str, list[Any]] = {}
    for ref, (value, since) in merged.items():
        mapped = links.get(ref)
        if mapped != value and (mapped is None or now_ms - since < keep_ms):
            kept_now[ref] = [value, since]
    return kept_now


def told_values(kept: Mapping[str, Any]) -> dict[str, str]:
    """Reference → value of what a row keeps (:func:`remember`)."""
    return {ref: entry[0] for ref, entry in kept.items()}

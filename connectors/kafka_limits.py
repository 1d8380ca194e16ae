"""Message sizes checked against the broker's limits before a message is produced (docs/adr/0020).

A broker refuses a record batch larger than the topic's ``max.message.bytes`` (unless the topic
sets it, the broker's ``message.max.bytes``: 1,048,588 by default), and a producer refuses a
record larger than its own ``max_request_size``. Either refusal, met at send time, raises inside
the code that sent, often far from the message that caused it (a Faust agent, a source's
batch). :class:`MessageLimits` reads each topic's limit from the broker once and keeps it;
:meth:`MessageLimits.check` raises :class:`OversizeMessage` (topic, size, limit) before anything
is produced, so the caller can quarantine the message with that reason. :func:`shrunk` is what
a quarantine entry keeps of a value too big to keep whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, Awaitable, Callable, Iterable

from connectors.kafka_admin import max_message_bytes

__all__ = ["MessageLimits", "OversizeMessage", "BROKER_DEFAULT", "RECORD_OVERHEAD", "shrunk", "kept"]

#: Kafka's default ``message.max.bytes``: the limit of a topic whose own could not be read
BROKER_DEFAULT = 1_048_588
#: bytes a record needs besides its key and value (batch header, framing, headers), with room
RECORD_OVERHEAD = 512
#: seconds before a topic whose limit could not be read is asked again
RETRY_UNKNOWN = 60.0

Lookup = Callable[[Iterable[str]], Awaitable[dict[str, int]]]


class OversizeMessage(ValueError):
    """A message too large for its topic: refused before it was produced."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(f"{topic}: message of {size:,} bytes is over the topic's limit of {limit:,} bytes")
        self.topic, self.size, self.limit = topic, size, limit


class MessageLimits:
    """The most bytes a message may have on each topic: the smaller of the topic's
    ``max.message.bytes`` and ``producer_limit`` (the producer's ``max_request_size``), less
    :data:`RECORD_OVERHEAD`. One lookup per topic; a topic the broker does not answer for (not
    created yet, broker away) gets :data:`BROKER_DEFAULT` and is asked again a minute later."""

    def __init__(self, bootstrap: str, producer_limit: int | None = None, *, lookup: Lookup | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup: Lookup = lookup or (lambda topics: max_message_bytes(bootstrap, topics))
        self._producer_limit = producer_limit
        self._clock = clock
        #: topic → (its limit, when to ask again; None: never)
        self._known: dict[str, tuple[int, float | None]] = {}
        self._lock = asyncio.Lock()

    async def limit(self, topic: str) -> int:
        """The most bytes a message (key and value) may have on ``topic``."""
        known = self._known.get(topic)
        if known is None or (known[1] is not None and self._clock() >= known[1]):
            async with self._lock:
                known = self._known.get(topic)
                if known is None or (known[1] is not None and self._clock() >= known[1]):
                    known = self._known[topic] = await self._read(topic)
        return known[0]

    async def _read(self, topic: str) -> tuple[int, float | None]:
        try:
            found = (await self._lookup([topic])).get(topic)
        except Exception:  # noqa: BLE001 - the broker's default until the next attempt
            found = None
        expires = None if found is not None else self._clock() + RETRY_UNKNOWN
        allowed = min(found or BROKER_DEFAULT, self._producer_limit or BROKER_DEFAULT)
        return allowed - RECORD_OVERHEAD, expires

    async def check(self, topic: str, key: bytes | None, value: bytes | None) -> int:
        """The message's size; raises :class:`OversizeMessage` when ``topic`` cannot take it."""
        size = len(key or b"") + len(value or b"")
        limit = await self.limit(topic)
        if size > limit:
            raise OversizeMessage(topic, size, limit)
        return size


def kept(value: Any, data: bytes, limit: int) -> Any:
    """What a quarantine entry keeps of ``value`` (encoded: ``data``): the value itself when it
    takes at most ``limit`` bytes, else :func:`shrunk` (a preview of a quarter of ``limit``:
    JSON escaping of the preview can double it)."""
    return value if len(data) <= limit else shrunk(data, limit // 4)


def shrunk(data: bytes, keep: int) -> dict[str, Any]:
    """What a quarantine entry keeps of an encoded value too big to keep whole: its size, its
    SHA-256 and the start of its text (at most ``keep`` bytes of it)."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "truncated": True,
            "preview": data[:keep].decode(errors="replace")}

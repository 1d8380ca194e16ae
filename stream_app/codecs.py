"""The value codec of the topics the app owns: JSON that never raises on the way in.

Faust decodes a message before the agent sees it; with its ``json`` codec a message that is
not JSON raises inside the stream and the agent dies with the message (it is never
quarantined). ``safe_json`` hands such a message to the agent as :class:`Undecodable` (the
bytes and the parser's reason), and the stage boundary (``stream_app.flows``) quarantines it.

Decoding uses orjson, which refuses what the project must not carry further: invalid UTF-8,
lone surrogates, and nesting deeper than 1,024 levels. Encoding uses orjson too, with the
standard library as the fallback for what orjson refuses to write (the fallback escapes
surrogates instead of failing).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import orjson
from faust.serializers import codecs

from connectors.kafka_limits import kept

__all__ = ["Undecodable", "SafeJson", "CODEC", "register", "bounded", "encode"]

CODEC = "safe_json"
#: the most of an unreadable message a quarantine entry keeps (its size and hash say the rest)
KEEP_BYTES = 64 * 1024


@dataclass(frozen=True)
class Undecodable:
    """A message whose value could not be decoded, kept as it came."""

    raw: bytes
    error: str

    def describe(self, keep: int = KEEP_BYTES) -> dict[str, Any]:
        """What a quarantine entry keeps: the reason, the size, a hash and the first ``keep`` bytes."""
        return {"undecodable": self.error, "size": len(self.raw), "sha256": hashlib.sha256(self.raw).hexdigest(),
                "base64": base64.b64encode(self.raw[:keep]).decode(), "truncated": len(self.raw) > keep}


def _default(value: Any) -> Any:
    if isinstance(value, Undecodable):
        return value.describe()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


class SafeJson(codecs.Codec):
    """JSON in and out; what cannot be read comes in as :class:`Undecodable`."""

    def _loads(self, s: bytes) -> Any:
        try:
            return orjson.loads(s)
        except (orjson.JSONDecodeError, TypeError) as exc:
            return Undecodable(bytes(s) if s is not None else b"", str(exc))

    def _dumps(self, s: Any) -> bytes:
        try:
            return orjson.dumps(s, default=_default, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            return json.dumps(s, default=_default, separators=(",", ":")).encode()


def register() -> None:
    """Make ``safe_json`` known to Faust (idempotent)."""
    if CODEC not in codecs.codecs:
        codecs.register(CODEC, SafeJson())


def encode(value: Any) -> bytes:
    """``value`` as the ``safe_json`` codec writes it; bytes are taken as they are (raw topics)."""
    return bytes(value) if isinstance(value, (bytes, bytearray)) else SafeJson()._dumps(value)


def bounded(value: Any, limit: int = KEEP_BYTES) -> Any:
    """``value`` as it can be kept in a quarantine entry: itself when it encodes to at most
    ``limit`` bytes, else its size, hash and the start of its text. Never raises."""
    if isinstance(value, Undecodable):
        return value.describe(keep=limit * 3 // 4)  # base64 writes 4 bytes for 3: about limit in all
    try:
        data = SafeJson()._dumps(value)
    except (ValueError, RecursionError) as exc:  # nesting the fallback encoder cannot follow
        return {"unencodable": f"{type(exc).__name__}: {exc}", "type": type(value).__name__}
    return kept(value, data, limit)

"""Dead letters (``dlq.<system>``) and quarantined messages (``quarantine.<flow>``) as the console
lists them: one :class:`Letter` per message, kept in memory by a :class:`~.tail.TopicTail`.

A dead letter is a sink command a target refused (stream_app/dlq.py); it can be replayed. A
quarantined message is an input a flow stage could not take (stream_app/flows.py); it is shown
and purged, not replayed (the console cannot know which topic it came from: docs/adr/0031).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from connectors import registry
from stream_app.console.tail import TopicTail
from stream_app.dlq import DlqEntry, quarantine_replay_problem

__all__ = ["Letter", "LetterBox", "Filter"]


@dataclass(frozen=True, slots=True)
class Letter:
    kind: str  # "dlq" or "quarantine"
    #: the system (dead letters) or the flow (quarantine)
    source: str
    partition: int
    offset: int
    #: the entry as JSON bytes: kept as read, parsed when one letter is shown or replayed (a
    #: parsed entry takes several times the memory, and 100,000 of them are held)
    raw: bytes
    # read out of the value once, when the letter is kept: filters compare them on every page
    object: str = "?"
    error_code: str = "?"
    error: str = ""
    #: error code and message in lower case, for the "error contains" filter
    search: str = ""

    @classmethod
    def of(cls, kind: str, source: str, partition: int, offset: int, value: dict[str, Any],
           raw: bytes | None = None) -> "Letter":
        """The letter of ``value`` (``raw``: the bytes it was read from, when it was)."""
        if kind == "dlq":
            obj = (value.get("command") or {}).get("object") or value.get("object") or "?"
        else:
            message = value.get("raw")
            obj = (message.get("entity") if isinstance(message, dict) else None) or "?"
        code = str(value.get("error_code") or ("QUARANTINED" if kind == "quarantine" else "?"))
        error = str(value.get("error") or value.get("reason") or "")
        raw = json.dumps(value).encode() if raw is None else raw
        return cls(kind, source, partition, offset, raw, str(obj), code, error, f"{code} {error}".lower())

    @property
    def value(self) -> dict[str, Any]:
        return json.loads(self.raw)  # type: ignore[no-any-return]

    @property
    def id(self) -> str:
        """``<system>:<partition>:<offset>`` as ``stream-app dlq`` names dead letters;
        ``quarantine.<flow>:<partition>:<offset>`` for the rest."""
        return f"{self.source}:{self.partition}:{self.offset}" if self.kind == "dlq" else \
            f"quarantine.{self.source}:{self.partition}:{self.offset}"

    @property
    def replayable(self) -> bool:
        """A quarantined message whose entry names its origin and keeps it whole (stream_app.dlq)."""
        return self.kind == "quarantine" and quarantine_replay_problem(self.value) is None

    def dlq_entry(self) -> DlqEntry:
        return DlqEntry(self.source, self.partition, self.offset, self.value)


@dataclass(frozen=True)
class Filter:
    kind: str = ""
    source: str = ""
    object: str = ""
    #: text the error code or message contains (case-insensitive)
    error: str = ""

    def matches(self, letter: Letter) -> bool:
        return ((not self.kind or letter.kind == self.kind) and (not self.source or letter.source == self.source)
                and (not self.object or letter.object == self.object)
                and (not self.error or self.error.lower() in letter.search))


class LetterBox:
    """Every dead letter and quarantined message the broker still holds, newest last."""

    def __init__(self, bootstrap: str, prefix: str, flows: Iterable[str]) -> None:
        self.prefix = prefix
        self.dlq_topics = {f"{prefix}{registry.connector(system).dlq_topic}": system for system in registry.names()}
        self.quarantine_topics = {f"{prefix}quarantine.{flow}": flow for flow in flows}
        self._letters: dict[tuple[str, int], dict[int, Letter]] = {}
        #: how many letters name each object (the object filter's choices)
        self._objects: Counter[str] = Counter()
        self.tail = TopicTail(bootstrap, [*self.dlq_topics, *self.quarantine_topics], self._keep, self._trim)

    def _keep(self, record: ConsumerRecord) -> None:
        raw: bytes | None = record.value
        try:
            value = json.loads(record.value)
        except (TypeError, ValueError):
            value, raw = {"error_code": "UNREADABLE", "error": "entry is not JSON"}, None
        if not isinstance(value, dict):
            value, raw = {"error_code": "UNREADABLE", "error": "entry is not a JSON object"}, None
        if record.topic in self.dlq_topics:
            letter = Letter.of("dlq", self.dlq_topics[record.topic], record.partition, record.offset, value, raw)
        else:
            letter = Letter.of("quarantine", self.quarantine_topics[record.topic], record.partition, record.offset,
                               value, raw)
        self._letters.setdefault((record.topic, record.partition), {})[record.offset] = letter
        self._objects[letter.object] += 1

    def _trim(self, tp: TopicPartition, first: int) -> None:
        kept = self._letters.get((tp.topic, tp.partition), {})
        for offset in [offset for offset in kept if offset < first]:
            self._objects[kept.pop(offset).object] -= 1

    async def refresh(self) -> None:
        await self.tail.catch_up()

    def all(self) -> list[Letter]:
        return [letter for part in self._letters.values() for letter in part.values()]

    def select(self, wanted: Filter) -> list[Letter]:
        if wanted == Filter():
            return self.all()
        return [letter for part in self._letters.values() for letter in part.values() if wanted.matches(letter)]

    def find(self, letter_id: str) -> Letter | None:
        topic_part, _, offset = letter_id.rpartition(":")
        name, _, partition = topic_part.rpartition(":")
        topic = f"{self.prefix}{name}" if name.startswith("quarantine.") else f"{self.prefix}dlq.{name}"
        if not offset.isdigit() or not partition.isdigit():
            return None
        return self._letters.get((topic, int(partition)), {}).get(int(offset))

    def facets(self) -> dict[str, list[str]]:
        """The values the filters offer: systems and flows, objects."""
        return {"sources": sorted(set(self.dlq_topics.values()) | set(self.quarantine_topics.values())),
                "objects": sorted(name for name, count in self._objects.items() if count > 0)}

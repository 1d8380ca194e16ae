"""Dead letters: list, show, put back through the sinks, purge.

Entries live on ``dlq.<system>`` (written by the sink engine, see stream_app/sinks/engine.py:
the command, the error, the attempts). An entry's id is ``<system>:<partition>:<offset>``.
Replaying publishes the entry's command again on ``sink.<system>.<object>`` under its own key:
the sink's version guard makes that safe even when newer data landed since. Purging deletes
the records of the DLQ topics up to their current end (Kafka DeleteRecords).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from aiokafka import AIOKafkaProducer

from connectors import registry
from connectors.kafka_admin import KafkaAdmin, read_to_end
from connectors.kafka_security import client_options
from connectors.redact import redact_fields, redact_text

__all__ = ["DlqEntry", "DlqError", "SYSTEMS", "read_entries", "replay_entries", "purge", "purge_topics",
           "quarantine_replay_problem", "replay_quarantined",
           "format_entry_line"]

SYSTEMS: tuple[str, ...] = registry.names()


class DlqError(RuntimeError):
    """The DLQ operation cannot go ahead; the message says what to do."""


@dataclass(frozen=True)
class DlqEntry:
    system: str
    partition: int
    offset: int
    value: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.system}:{self.partition}:{self.offset}"

    @property
    def command(self) -> dict[str, Any]:
        return self.value.get("command") or {}

    def shown(self) -> dict[str, Any]:
        """The entry as an operator sees it: personal data masked."""
        value = dict(self.value)
        if "command" in value:
            value["command"] = {**self.command, "fields": redact_fields(self.command.get("fields") or {})}
        if "error" in value and isinstance(value["error"], str):
            value["error"] = redact_text(value["error"])
        return {"id": self.id, **value}


def format_entry_line(entry: DlqEntry) -> str:
    command = entry.command
    error = redact_text(str(entry.value.get("error", "")))[:80]
    return (f"{entry.id:<22} {command.get('object', '?'):<10} {command.get('external_id_field', '?')}="
            f"{command.get('external_id', '?'):<20} v{command.get('version', '?'):<4} "
            f"{entry.value.get('error_code', '?'):<34} attempts={entry.value.get('attempts', '?'):<3} {error}")


def _topics(prefix: str) -> list[str]:
    return [f"{prefix}{registry.connector(system).dlq_topic}" for system in SYSTEMS]


async def read_entries(bootstrap: str, prefix: str) -> list[DlqEntry]:
    """Every entry still on the DLQ topics, oldest first per partition."""
    entries: list[DlqEntry] = []
    async for record in read_to_end(bootstrap, _topics(prefix)):
        try:
            value = json.loads(record.value)
        except (TypeError, ValueError):
            value = {"error_code": "UNREADABLE", "error": "entry is not JSON"}
        entries.append(DlqEntry(record.topic[len(prefix) + len("dlq."):], record.partition, record.offset, value))
    return entries


def select(entries: list[DlqEntry], ids: Iterable[str]) -> list[DlqEntry]:
    by_id = {entry.id: entry for entry in entries}
    wanted = list(ids)
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise DlqError(f"no DLQ entry {', '.join(missing)}; `stream-app dlq list` shows the ids")
    return [by_id[i] for i in wanted]


async def replay_entries(bootstrap: str, prefix: str, entries: list[DlqEntry]) -> int:
    """Publish each entry's command again to its sink topic; returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                **client_options())
    await producer.start()
    try:
        for entry in entries:
            command = entry.command
            if not command.get("object") or not command.get("system"):
                raise DlqError(f"{entry.id} carries no command to replay")
            key = str(entry.value.get("partition_key") or
                      f"{command['system']}:{command['object']}:{command.get('external_id', '')}")
            await producer.send_and_wait(f"{prefix}sink.{command['system']}.{command['object']}",
                                         json.dumps(command).encode(), key=key.encode())
    finally:
        await producer.stop()
    return len(entries)


def quarantine_replay_problem(value: dict[str, Any]) -> str | None:
    """Why a quarantined message cannot be sent back to where it came from, or None when it can:
    the entry must name its origin (entries written since session 7 do) and hold the message
    whole (not the size-and-preview of a message too big, nor bytes that were not JSON)."""
    origin, raw = value.get("origin"), value.get("raw")
    if not isinstance(origin, dict) or not isinstance(origin.get("topic"), str):
        return "the entry does not say which topic it came from (written before entries carried it)"
    if isinstance(raw, dict) and ("undecodable" in raw or "unencodable" in raw
                                  or (raw.get("truncated") is True and "sha256" in raw)):
        return "the entry keeps only a preview of the message, not the message"
    return None


async def replay_quarantined(bootstrap: str, values: list[dict[str, Any]]) -> int:
    """Send each quarantined message (whole, with its origin) back to its topic under its key, for
    its stage to take again (after the mapping or the data was fixed); returns how many."""
    for value in values:
        if (problem := quarantine_replay_problem(value)) is not None:
            raise DlqError(problem)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                **client_options())
    await producer.start()
    try:
        for value in values:
            origin = value["origin"]
            key = origin.get("key")
            await producer.send_and_wait(origin["topic"], json.dumps(value["raw"]).encode(),
                                         key=key.encode() if isinstance(key, str) else None)
    finally:
        await producer.stop()
    return len(values)


async def purge(bootstrap: str, prefix: str) -> int:
    """Delete every entry on the DLQ topics; returns how many were there."""
    return await purge_topics(bootstrap, _topics(prefix))


async def purge_topics(bootstrap: str, topics: list[str]) -> int:
    """Delete every record of ``topics`` up to their current end; returns how many were there."""
    async with KafkaAdmin(bootstrap) as kafka:
        starts, ends = await kafka.beginning_offsets(topics), await kafka.end_offsets(topics)
        await kafka.delete_records({tp: end for tp, end in ends.items() if end > starts[tp]})
    return sum(end - starts[tp] for tp, end in ends.items())

"""The simulated Salesforce event bus behind the Pub/Sub API.

It turns every :class:`~sandbox.salesforce.changes.RecordChange` of the simulated org into an
Avro change event, the way Salesforce Change Data Capture does, and keeps it for a retention
window on two channels: ``/data/ChangeEvents`` (everything) and ``/data/<Entity>ChangeEvent``.
Events are numbered by one global sequence; the replay id handed to clients is that number as
8 big-endian bytes, which clients must treat as opaque. When the retention window passes, old
events are dropped and a replay id from before them is refused (Salesforce keeps 72 hours).

Gap events (``GAP_CREATE`` … ``GAP_UNDELETE``: header and record ids only, the subscriber must
fetch the records) and ``GAP_OVERFLOW`` (no ids: resync the entity) are injected with
:meth:`EventBus.inject_gap` and :meth:`EventBus.inject_overflow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from fastavro import parse_schema, schemaless_writer

from connectors.salesforce.bitmaps import encode_bitmap

from .avro_schemas import (
    COMPOUND_CHILDREN,
    FieldSpec,
    build_record,
    change_event_schema,
    flat_field_paths,
    schema_id,
    schema_json,
    specs_from_describe,
)
from .changes import RecordChange

__all__ = [
    "ALL_CHANGES_TOPIC",
    "DEFAULT_RETENTION_SECONDS",
    "DEFAULT_ENTITY_FIELDS",
    "GAP_TYPES",
    "EventBus",
    "InvalidReplayId",
    "StoredEvent",
    "admin_routes",
    "channel_for",
    "decode_replay_id",
    "encode_replay_id",
]

log = logging.getLogger(__name__)

ALL_CHANGES_TOPIC = "/data/ChangeEvents"
DEFAULT_RETENTION_SECONDS = 72 * 3600.0
GAP_TYPES = ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE")
_RECORD_CHANGE_TYPES = ("CREATE", "UPDATE", "DELETE", "UNDELETE")

_ADDRESS = "address"
_NAME = "name"
_CUSTOMER_CUSTOM: list[FieldSpec] = [
    ("TIMS_Customer_ID__c", "string"),
    ("TIMS_Payment_Terms__c", "string"),
    ("TIMS_Total_Revenue__c", "double"),
    ("TIMS_Credit_Limit__c", "double"),
]
_PARDOT: list[FieldSpec] = [("pi__score__c", "double"), ("pi__grade__c", "string")]
_AUDIT: list[FieldSpec] = [("CreatedDate", "datetime"), ("LastModifiedDate", "datetime")]

#: field lists used when no describe is wired in: the fields the sync reads and writes
DEFAULT_ENTITY_FIELDS: dict[str, list[FieldSpec]] = {
    "Lead": [
        ("Name", _NAME),
        ("Email", "string"),
        ("Phone", "string"),
        ("Company", "string"),
        ("Title", "string"),
        ("Status", "string"),
        ("LeadSource", "string"),
        ("Address", _ADDRESS),
        ("OwnerId", "string"),
        *_AUDIT,
        ("IsConverted", "boolean"),
        ("ConvertedDate", "date"),
        ("ConvertedContactId", "string"),
        ("ConvertedAccountId", "string"),
        ("ConvertedOpportunityId", "string"),
        *_CUSTOMER_CUSTOM,
        *_PARDOT,
    ],
    "Contact": [
        ("Name", _NAME),
        ("Email", "string"),
        ("Phone", "string"),
        ("MobilePhone", "string"),
        ("Title", "string"),
        ("AccountId", "string"),
        ("LeadSource", "string"),
        ("MailingAddress", _ADDRESS),
        ("OwnerId", "string"),
        *_AUDIT,
        *_CUSTOMER_CUSTOM,
        *_PARDOT,
    ],
    "Account": [
        ("Name", "string"),
        ("Phone", "string"),
        ("Website", "string"),
        ("Type", "string"),
        ("BillingAddress", _ADDRESS),
        ("ShippingAddress", _ADDRESS),
        ("OwnerId", "string"),
        *_AUDIT,
        *_CUSTOMER_CUSTOM,
    ],
    "Opportunity": [
        ("Name", "string"),
        ("AccountId", "string"),
        ("StageName", "string"),
        ("Amount", "double"),
        ("CloseDate", "date"),
        ("Probability", "double"),
        ("IsClosed", "boolean"),
        ("IsWon", "boolean"),
        ("LeadSource", "string"),
        ("CampaignId", "string"),
        ("OwnerId", "string"),
        *_AUDIT,
        ("TIMS_Customer_ID__c", "string"),
    ],
    "Campaign": [
        ("Name", "string"),
        ("Type", "string"),
        ("Status", "string"),
        ("IsActive", "boolean"),
        ("StartDate", "date"),
        ("EndDate", "date"),
        ("OwnerId", "string"),
        *_AUDIT,
    ],
    "CampaignMember": [
        ("CampaignId", "string"),
        ("LeadId", "string"),
        ("ContactId", "string"),
        ("Status", "string"),
        ("HasResponded", "boolean"),
        ("FirstRespondedDate", "date"),
        *_AUDIT,
    ],
    "Product2": [
        ("Name", "string"),
        ("ProductCode", "string"),
        ("Description", "string"),
        ("Family", "string"),
        ("IsActive", "boolean"),
        ("StockKeepingUnit", "string"),
        ("QuantityUnitOfMeasure", "string"),
        *_AUDIT,
    ],
    "Task": [
        ("Subject", "string"),
        ("Status", "string"),
        ("Priority", "string"),
        ("ActivityDate", "date"),
        ("WhoId", "string"),
        ("WhatId", "string"),
        ("Type", "string"),
        ("TaskSubtype", "string"),
        ("Description", "string"),
        ("OwnerId", "string"),
        *_AUDIT,
    ],
}


class InvalidReplayId(ValueError):
    """A replay id that is malformed, from the future, or older than the retention window."""


def encode_replay_id(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def decode_replay_id(replay_id: bytes) -> int:
    if len(replay_id) != 8:
        raise InvalidReplayId(f"replay id of {len(replay_id)} bytes")
    return int.from_bytes(replay_id, "big")


def channel_for(entity: str) -> str:
    """``Lead`` → ``/data/LeadChangeEvent``; ``Foo__c`` → ``/data/Foo__ChangeEvent``."""
    if entity.endswith("__c"):
        return f"/data/{entity[:-3]}__ChangeEvent"
    return f"/data/{entity}ChangeEvent"


@dataclass(frozen=True)
class StoredEvent:
    """One event on the bus, as the Pub/Sub API will hand it out."""

    seq: int
    entity: str
    change_type: str
    record_ids: tuple[str, ...]
    event_id: str
    schema_id: str
    payload: bytes  # schemaless Avro of the entity's change-event schema
    stored_at: float  # clock seconds, for retention

    @property
    def replay_id(self) -> bytes:
        return encode_replay_id(self.seq)


@dataclass
class _EntitySchema:
    fields: list[FieldSpec]
    schema: dict[str, Any]
    parsed: Any
    schema_id: str
    schema_json: str
    paths: dict[str, tuple[str, str | None]]


class EventBus:
    """Change events of the simulated org, per channel, with replay ids and retention.

    Field lists come from ``entities`` (default :data:`DEFAULT_ENTITY_FIELDS`), or, when
    ``describe(entity)`` is given (the simulated org's ``Org.describe``), from the org itself:
    every entity of ``entities`` is registered from describe at start, any other entity on its
    first change, and a field added to the org later gives the entity a new schema id, as a
    schema change does in Salesforce. ``publish`` may be called from any thread; subscribers
    wait with :meth:`watch` or :meth:`wait_for_change`."""

    def __init__(
        self,
        entities: Mapping[str, Sequence[FieldSpec]] | Iterable[str] | None = None,
        *,
        describe: Callable[[str], Iterable[Any]] | None = None,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.retention_seconds = float(retention_seconds)
        self._clock = clock
        self._lock = threading.RLock()
        self._entities: dict[str, _EntitySchema] = {}
        self._schemas: dict[str, str] = {}  # schema id → JSON, every version ever served
        self._log: deque[StoredEvent] = deque()
        self._seq = 0  # last sequence number handed out
        self._dropped_through = 0  # every event with seq <= this is gone
        self._commit_number = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.counters: Counter[str] = Counter()
        self._describe = describe
        given = DEFAULT_ENTITY_FIELDS if entities is None else entities
        for entity in given:
            fields = given[entity] if isinstance(given, Mapping) else DEFAULT_ENTITY_FIELDS.get(entity)
            described = self._described(entity)
            if described is not None:
                self.register_entity(entity, described)
            elif fields is not None:
                self.register_entity(entity, fields)
            else:
                raise KeyError(f"no field list for {entity!r}: give one, or a describe that knows it")

    # ---------------------------------------------------------------- schemas and topics

    def _described(self, entity: str) -> list[FieldSpec] | None:
        if self._describe is None:
            return None
        try:
            specs = specs_from_describe(entity, self._describe(entity))
        except Exception:  # an entity the org does not know (the org raises its own NOT_FOUND)
            return None
        return specs or None

    def _refresh_schema(self, entity: str) -> bool:
        """With a describe: follow the org's fields (new schema id on change). True if known."""
        described = self._described(entity)
        if described is not None:
            current = self._entities.get(entity)
            if current is None or current.fields != described:
                self.register_entity(entity, described)
        return entity in self._entities

    def register_entity(self, entity: str, fields: Sequence[FieldSpec]) -> str:
        """Add or replace an entity's field list (e.g. from the org's describe); returns the
        schema id. Older schema ids stay resolvable, like Salesforce's schema versions."""
        schema = change_event_schema(entity, list(fields))
        sid = schema_id(schema)
        text = schema_json(schema)
        with self._lock:
            self._entities[entity] = _EntitySchema(
                list(fields), schema, parse_schema(schema), sid, text, flat_field_paths(list(fields))
            )
            self._schemas[sid] = text
        return sid

    @property
    def entities(self) -> list[str]:
        return sorted(self._entities)

    def fields_of(self, entity: str) -> list[FieldSpec]:
        return list(self._entities[entity].fields)

    def schema_of(self, entity: str) -> dict[str, Any]:
        """The entity's current change-event schema as a dict."""
        return self._entities[entity].schema

    def schema_id_of(self, entity: str) -> str:
        return self._entities[entity].schema_id

    def schema_json_by_id(self, sid: str) -> str | None:
        return self._schemas.get(sid)

    def topics(self) -> list[str]:
        return [ALL_CHANGES_TOPIC] + [channel_for(e) for e in self.entities]

    def topic_entities(self, topic: str) -> frozenset[str] | None:
        """The entities a topic carries, or None for an unknown topic."""
        if topic == ALL_CHANGES_TOPIC:
            return frozenset(self._entities)
        for entity in self._entities:
            if channel_for(entity) == topic:
                return frozenset({entity})
        return None

    def topic_schema_id(self, topic: str) -> str | None:
        """GetTopic's schema id: the entity's for an entity channel. ``/data/ChangeEvents``
        mixes entities, so each event's own ``schema_id`` is what decodes it; the topic
        reports the first entity's so that the field is never empty."""
        entities = self.topic_entities(topic)
        if not entities:
            return None
        return self._entities[sorted(entities)[0]].schema_id

    # ---------------------------------------------------------------- writing events

    def publish(self, change: RecordChange) -> None:
        """ChangeListener: one committed record change → one change event."""
        if not self._refresh_schema(change.entity):
            if not self.counters[f"ignored:{change.entity}"]:
                log.warning("no change-event schema for %s: its changes are not published "
                            "(register_entity adds one)", change.entity)
            self.counters[f"ignored:{change.entity}"] += 1
            return
        if change.change_type not in _RECORD_CHANGE_TYPES:
            raise ValueError(f"change type {change.change_type!r}; gap events go through inject_gap")
        spec = self._entities[change.entity]
        header = self._header(
            change.entity,
            change.change_type,
            [change.record_id],
            change_origin=change.change_origin,
            transaction_key=change.transaction_key,
            sequence_number=change.sequence_number,
            commit_timestamp=change.commit_timestamp,
            commit_number=change.commit_number,
            commit_user=change.commit_user,
        )
        if change.change_type == "DELETE":
            body = build_record(spec.fields, {}, ())
        elif change.change_type == "UPDATE":
            nulled = set(change.nulled_fields) | {k for k, v in change.fields.items() if v is None}
            changed = set(change.changed_fields) | set(change.fields) | nulled
            body = build_record(spec.fields, change.fields, changed - nulled)
            header["changedFields"] = encode_bitmap(spec.schema, self._paths(spec, changed))
            header["nulledFields"] = encode_bitmap(spec.schema, self._paths(spec, nulled))
        else:  # CREATE / UNDELETE: every field the record has
            body = build_record(spec.fields, change.fields)
        self._append(change.entity, header, body)

    def inject_gap(
        self,
        entity: str,
        record_ids: Sequence[str],
        change_type: str = "GAP_UPDATE",
        *,
        commit_timestamp: int = 0,
        commit_user: str = "",
        change_origin: str = "",
        transaction_key: str = "",
    ) -> bytes:
        """A gap event (header and record ids only, record fields null); returns its replay id."""
        if change_type not in GAP_TYPES:
            raise ValueError(f"gap change type must be one of {GAP_TYPES}, not {change_type!r}")
        if not record_ids:
            raise ValueError("a gap event names the records to fetch")
        self._require(entity)
        header = self._header(
            entity,
            change_type,
            list(record_ids),
            change_origin=change_origin,
            transaction_key=transaction_key,
            commit_timestamp=commit_timestamp,
            commit_user=commit_user,
        )
        return self._append(entity, header, build_record(self._entities[entity].fields, {}, ())).replay_id

    def inject_overflow(
        self,
        entity: str,
        *,
        commit_timestamp: int = 0,
        commit_user: str = "",
        transaction_key: str = "",
    ) -> bytes:
        """A GAP_OVERFLOW event (entityName set, no record ids); returns its replay id."""
        self._require(entity)
        header = self._header(
            entity,
            "GAP_OVERFLOW",
            [],
            transaction_key=transaction_key,
            commit_timestamp=commit_timestamp,
            commit_user=commit_user,
        )
        return self._append(entity, header, build_record(self._entities[entity].fields, {}, ())).replay_id

    def inject_raw(self, entity: str, payload: bytes, *, schema_id: str | None = None) -> bytes:
        """An event carrying exactly ``payload`` on ``entity``'s channels (broken Avro, a header
        Salesforce would never write, or an unknown ``schema_id``), so tests can check that a
        subscriber quarantines what it cannot trust; returns its replay id."""
        self._require(entity)
        with self._lock:
            self._seq += 1
            event = StoredEvent(
                seq=self._seq,
                entity=entity,
                change_type="RAW",
                record_ids=(),
                event_id=str(uuid.uuid4()),
                schema_id=schema_id or self._entities[entity].schema_id,
                payload=payload,
                stored_at=self._clock(),
            )
            self._log.append(event)
            self.counters["RAW"] += 1
        self._notify()
        return event.replay_id

    def _require(self, entity: str) -> None:
        if not self._refresh_schema(entity):
            raise KeyError(f"unknown entity {entity!r}; known: {self.entities}")

    @staticmethod
    def _paths(spec: _EntitySchema, flat_names: Iterable[str]) -> list[str]:
        """Flat REST names → bitmap names (``MailingCity`` → ``MailingAddress.City``)."""
        compounds = {name for name, kind in spec.fields if kind in COMPOUND_CHILDREN}
        out: list[str] = []
        for flat in flat_names:
            if flat not in spec.paths:
                continue  # not in the change event (unknown, or a field CDC leaves out)
            top, child = spec.paths[flat]
            if child is not None:
                out.append(f"{top}.{child}")
            elif top not in compounds:  # a compound's own name (read-only in REST): parts decide
                out.append(top)
        return out

    def _header(
        self,
        entity: str,
        change_type: str,
        record_ids: list[str],
        *,
        change_origin: str = "",
        transaction_key: str = "",
        sequence_number: int = 1,
        commit_timestamp: int = 0,
        commit_number: int = 0,
        commit_user: str = "",
    ) -> dict[str, Any]:
        with self._lock:
            self._commit_number += 1
            number = commit_number or self._commit_number
        return {
            "entityName": entity,
            "recordIds": record_ids,
            "changeType": change_type,
            "changeOrigin": change_origin,
            "transactionKey": transaction_key or uuid.uuid4().hex[:24],
            "sequenceNumber": sequence_number,
            "commitTimestamp": commit_timestamp or int(self._clock() * 1000),
            "commitNumber": number,
            "commitUser": commit_user,
            "nulledFields": [],
            "diffFields": [],
            "changedFields": [],
        }

    def _append(self, entity: str, header: dict[str, Any], body: dict[str, Any]) -> StoredEvent:
        spec = self._entities[entity]
        buffer = io.BytesIO()
        schemaless_writer(buffer, spec.parsed, {"ChangeEventHeader": header, **body})
        with self._lock:
            self._seq += 1
            event = StoredEvent(
                seq=self._seq,
                entity=entity,
                change_type=header["changeType"],
                record_ids=tuple(header["recordIds"]),
                event_id=str(uuid.uuid4()),
                schema_id=spec.schema_id,
                payload=buffer.getvalue(),
                stored_at=self._clock(),
            )
            self._log.append(event)
            self.counters[header["changeType"]] += 1
        self._notify()
        return event

    # ---------------------------------------------------------------- reading and retention

    def expire(self) -> int:
        """Drop events older than the retention window; returns how many went."""
        cutoff = self._clock() - self.retention_seconds
        dropped = 0
        with self._lock:
            while self._log and self._log[0].stored_at < cutoff:
                self._dropped_through = self._log.popleft().seq
                dropped += 1
        self.counters["expired"] += dropped
        return dropped

    @property
    def latest_seq(self) -> int:
        return self._seq

    def latest_replay_id(self) -> bytes:
        return encode_replay_id(self._seq)

    def start_position(self, preset: str, replay_id: bytes = b"") -> int:
        """Where a subscription starts: the sequence number just before its first event.

        ``LATEST`` → after everything stored; ``EARLIEST`` → before the oldest retained event;
        ``CUSTOM`` → after ``replay_id``, which must be inside the retention window."""
        self.expire()
        with self._lock:
            if preset == "LATEST":
                return self._seq
            if preset == "EARLIEST":
                return self._dropped_through
            if preset != "CUSTOM":
                raise ValueError(f"unknown replay preset {preset!r}")
            seq = decode_replay_id(replay_id)
            if seq < self._dropped_through:
                raise InvalidReplayId("replay id is older than the retention window")
            if seq > self._seq:
                raise InvalidReplayId("replay id is not one this bus handed out")
            return seq

    def read(self, entities: frozenset[str], after: int, limit: int) -> tuple[list[StoredEvent], int]:
        """Up to ``limit`` events of ``entities`` after position ``after``, and the position
        the reader has reached: past the last event returned, or past everything scanned."""
        self.expire()
        out: list[StoredEvent] = []
        with self._lock:
            if after < self._dropped_through:
                raise InvalidReplayId("position is older than the retention window")
            position = after
            start = after - self._log[0].seq + 1 if self._log else 0
            for index in range(max(start, 0), len(self._log)):
                if len(out) >= limit:
                    break
                event = self._log[index]
                position = event.seq
                if event.entity in entities:
                    out.append(event)
            if len(out) < limit:
                position = max(position, self._seq)
        return out, position

    def caught_up_position(self, entities: frozenset[str], after: int) -> int:
        """The furthest position a reader at ``after`` can claim without skipping an event of
        ``entities``: just before the next such event, or the latest position if none."""
        self.expire()
        with self._lock:
            start = max(after - self._log[0].seq + 1, 0) if self._log else 0
            for index in range(start, len(self._log)):
                if self._log[index].entity in entities:
                    return max(after, self._log[index].seq - 1)
            return max(after, self._seq)

    def events(self) -> list[StoredEvent]:
        """Every retained event, oldest first (for tests and the admin view)."""
        self.expire()
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        """Drop every retained event now (schemas stay): every replay id but the latest is
        then refused, as if the retention window had passed."""
        with self._lock:
            self._dropped_through = self._seq
            self._log.clear()

    def snapshot(self) -> dict[str, Any]:
        self.expire()
        with self._lock:
            return {
                "retention_seconds": self.retention_seconds,
                "latest_seq": self._seq,
                "oldest_retained_seq": self._log[0].seq if self._log else None,
                "retained": len(self._log),
                "topics": self.topics(),
                "counters": dict(self.counters),
            }

    # ---------------------------------------------------------------- waiting

    @contextlib.contextmanager
    def watch(self, wake: asyncio.Event) -> Iterator[None]:
        """While inside, ``wake`` is set (on its loop) whenever an event is stored. Clear it
        *before* reading so that nothing stored after the read can be missed."""
        waiter = (asyncio.get_running_loop(), wake)
        with self._lock:
            self._waiters.add(waiter)
        try:
            yield
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    async def wait_for_change(self, after_seq: int, timeout: float) -> bool:
        """Sleep until an event past ``after_seq`` is stored or ``timeout`` passes."""
        wake = asyncio.Event()
        with self.watch(wake):
            if self._seq > after_seq:
                return True
            try:
                await asyncio.wait_for(wake.wait(), timeout)
                return True
            except asyncio.TimeoutError:
                return False

    def _notify(self) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            if loop is running:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)


def admin_routes(bus: EventBus) -> list[Any]:
    """aiohttp routes under ``/__admin/cdc`` to drive the bus while the sandbox runs:

    ``GET /__admin/cdc`` → state; ``POST /__admin/cdc/gap`` with ``{"entity", "record_ids",
    "change_type"}`` → a gap event; ``POST /__admin/cdc/overflow`` with ``{"entity"}`` → a
    GAP_OVERFLOW event; ``PUT /__admin/cdc/retention`` with ``{"seconds"}``;
    ``POST /__admin/cdc/expire`` → drop every retained event now, so any stored replay id
    but the latest is refused as corrupted. Replay ids in answers are hex."""
    from aiohttp import web

    async def state(_: web.Request) -> web.Response:
        return web.json_response(bus.snapshot())

    async def _body(request: web.Request) -> dict[str, Any]:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    async def gap(request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            replay_id = bus.inject_gap(
                str(body["entity"]), [str(i) for i in body["record_ids"]], str(body.get("change_type", "GAP_UPDATE"))
            )
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"replay_id": replay_id.hex()})

    async def overflow(request: web.Request) -> web.Response:
        try:
            replay_id = bus.inject_overflow(str((await _body(request))["entity"]))
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"replay_id": replay_id.hex()})

    async def retention(request: web.Request) -> web.Response:
        try:
            seconds = float((await _body(request))["seconds"])
            if seconds < 0:
                raise ValueError("seconds must not be negative")
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        bus.retention_seconds = seconds
        return web.json_response(bus.snapshot())

    async def expire(_: web.Request) -> web.Response:
        bus.reset()
        return web.json_response(bus.snapshot())

    return [
        web.get("/__admin/cdc", state),
        web.post("/__admin/cdc/gap", gap),
        web.post("/__admin/cdc/overflow", overflow),
        web.put("/__admin/cdc/retention", retention),
        web.post("/__admin/cdc/expire", expire),
    ]

"""Pardot v5 → ``src.pardot.<entity>`` (prospects, visitor activities, lists, list memberships), polled by updatedAt.

Pardot has no change feed: each stream queries ``updatedAtAfterOrEqualTo`` ordered by
(``updatedAt``, ``id``) and pages with ``nextPageToken``. Pardot stamps ``updatedAt`` to the
second, so a record can change within the second the last poll already read: each poll starts an
overlap window before the newest ``updatedAt`` seen and skips the rows it has already published
(same id, same ``updatedAt``, same content). Event ids are ``pardot:<entity>:<id>:<updatedAt>``:
the same for the same version of a record, whoever reads it. A record changed twice within one
second keeps its ``updatedAt``; the second version is told apart by its content and published
as ``…:<updatedAt>~<digest>``, so the dedupe downstream does not swallow it. The position (newest (updatedAt, id) and the pairs inside
the window) is saved per stream (``pardot:<entity>``) after the broker acked the events.
Deleted prospects (Pardot's recycle bin) are read too and published as DELETE.

Budget: each stream costs at least one request per poll, so with two streams a 30-second
interval spends about 5,800 of the daily quota (25,000 on the smallest edition) before a
single write.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from connectors.envelope import SourceEvent
from connectors.errors import QuotaExhaustedError, RetryableError
from connectors.kafka_io import PositionStore, Publisher
from connectors.pardot.client import PardotClient
from connectors.pardot.config import PardotConfig
from connectors.retry import RetryPolicy
from connectors.source import Source

__all__ = [
    "Stream", "STREAMS", "StreamPosition", "PardotSource", "stream_for", "row_event",
    "row_digest", "format_ts", "parse_ts",
    "PROSPECT_FIELDS", "ACTIVITY_FIELDS", "LIST_FIELDS", "MEMBERSHIP_FIELDS",
]

PROSPECT_FIELDS: tuple[str, ...] = (
    "id", "email", "salutation", "firstName", "lastName", "company", "jobTitle", "department", "phone",
    "website", "addressOne", "addressTwo", "city", "state", "zip", "country", "industry", "annualRevenue",
    "employees", "source", "score", "grade", "optedOut", "isDoNotEmail", "isDoNotCall", "campaignId",
    "salesforceId", "salesforceLeadId", "salesforceContactId", "salesforceAccountId", "salesforceOwnerId",
    "lastActivityAt", "isDeleted", "createdAt", "updatedAt", "createdById", "updatedById",
)
ACTIVITY_FIELDS: tuple[str, ...] = (
    "id", "prospectId", "visitorId", "visitId", "type", "typeName", "details", "campaignId", "formHandlerId",
    "formId", "emailId", "createdAt", "updatedAt",
)
LIST_FIELDS: tuple[str, ...] = (
    "id", "name", "title", "description", "isPublic", "isDynamic", "campaignId", "isDeleted", "createdAt", "updatedAt",
    "createdById", "updatedById",
)
MEMBERSHIP_FIELDS: tuple[str, ...] = (
    "id", "listId", "prospectId", "optedOut", "isDeleted", "createdAt", "updatedAt", "createdById", "updatedById",
)
#: (id, updatedAt) pairs remembered for the overlap window, at most
MAX_REMEMBERED = 10_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stream:
    entity: str
    collection: str
    fields: tuple[str, ...]
    #: the object has a recycle bin (``deleted=all`` shows deletions)
    soft_delete: bool

    @property
    def position_key(self) -> str:
        return f"pardot:{self.entity}"


STREAMS: dict[str, Stream] = {s.entity: s for s in (
    Stream("prospect", "prospects", PROSPECT_FIELDS, True),
    Stream("visitor_activity", "visitor-activities", ACTIVITY_FIELDS, False),
    Stream("list", "lists", LIST_FIELDS, True),
    Stream("list_membership", "list-memberships", MEMBERSHIP_FIELDS, True),
)}


def parse_ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def format_ts(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def row_digest(row: Mapping[str, Any]) -> str:
    """A short digest of a row's values: tells two versions with one ``updatedAt`` apart."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()[:12]


def row_event(stream: Stream, row: Mapping[str, Any], change_type: str | None = None,
              revision: str | None = None) -> SourceEvent:
    """The SourceEvent for one queried row; ValueError when the row lacks id or updatedAt.
    ``revision`` (a row digest) marks a second version within the same ``updatedAt``."""
    try:
        record_id = str(row["id"])
        updated_at = str(row["updatedAt"])
        stamp = int(parse_ts(updated_at).timestamp() * 1000)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a Pardot {stream.entity} row ({type(exc).__name__}: {exc})") from exc
    if change_type is None:
        if stream.soft_delete and row.get("isDeleted"):
            change_type = "DELETE"
        elif row.get("createdAt") == updated_at:
            change_type = "CREATE"
        else:
            change_type = "UPDATE"
    user = row.get("updatedById")
    return SourceEvent(
        event_id=f"pardot:{stream.entity}:{record_id}:{updated_at}" + (f"~{revision}" if revision else ""),
        source="pardot", entity=stream.entity,
        record_id=record_id, change_type=change_type, fields=dict(row), full_state=True,
        commit_timestamp=stamp, change_origin=None if user is None else f"user:{user}",
        commit_user=None if user is None else str(user),
        position={"updated_at": updated_at, "id": record_id},
    )


@dataclass
class StreamPosition:
    """The newest (updatedAt, id) published, and for each ``id@updatedAt`` inside the window
    the [updatedAt, digest] of what was published."""

    updated_at: str | None = None
    id: str | None = None
    seen: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StreamPosition":
        seen = {pair: list(value) for pair, value in (data.get("seen") or {}).items()}
        return cls(data.get("updated_at"), data.get("id"), seen)

    def as_dict(self) -> dict[str, Any]:
        return {"updated_at": self.updated_at, "id": self.id, "seen": {p: list(v) for p, v in self.seen.items()}}

    @staticmethod
    def pair(record_id: str, updated_at: str) -> str:
        return f"{record_id}@{updated_at}"

    def digest(self, record_id: str, updated_at: str) -> str | None:
        """The digest published for this id and updatedAt, if any."""
        known = self.seen.get(self.pair(record_id, updated_at))
        return known[1] if known else None

    def note(self, record_id: str, updated_at: str, digest: str = "") -> None:
        self.seen[self.pair(record_id, updated_at)] = [updated_at, digest]
        key = (parse_ts(updated_at), _number(record_id))
        if self.updated_at is None or key > (parse_ts(self.updated_at), _number(self.id)):
            self.updated_at, self.id = updated_at, record_id

    def window_start(self, overlap: float) -> datetime | None:
        return None if self.updated_at is None else parse_ts(self.updated_at) - timedelta(seconds=overlap)

    def prune(self, overlap: float) -> None:
        start = self.window_start(overlap)
        if start is None:
            return
        kept = {p: v for p, v in self.seen.items() if parse_ts(v[0]) >= start}
        if len(kept) > MAX_REMEMBERED:
            kept = dict(sorted(kept.items(), key=lambda item: parse_ts(item[1][0]))[-MAX_REMEMBERED:])
        self.seen = kept


def stream_for(config: PardotConfig, entity: str) -> Stream:
    """The stream of ``entity``, prospects with the configured custom fields as well."""
    stream = STREAMS[entity]
    if entity == "prospect" and config.prospect_fields:
        return Stream(stream.entity, stream.collection,
                      tuple(dict.fromkeys(stream.fields + config.prospect_fields)), stream.soft_delete)
    return stream


def _number(record_id: str | None) -> int:
    return int(record_id) if record_id and record_id.isdigit() else 0


class PardotSource(Source):
    system = "pardot"

    def __init__(self, publisher: Publisher, positions: PositionStore, client: PardotClient,
                 config: PardotConfig | None = None, backoff: RetryPolicy | None = None,
                 closing: tuple[Any, ...] = ()) -> None:
        super().__init__(publisher, positions)
        self.client = client
        self.config = config or client.config
        self.backoff = backoff or RetryPolicy(base_delay=2.0, max_delay=60.0)
        self.streams = [stream_for(self.config, e) for e in self.config.entities]
        self.state: dict[str, StreamPosition] = {}
        self.outages = 0
        self.quarantined = 0
        self._saved: dict[str, dict[str, Any]] = {}
        self._closing = closing

    async def start(self) -> None:
        await super().start()
        saved = await self.positions.load()
        for stream in self.streams:
            data = saved.get(stream.position_key)
            self.state[stream.entity] = StreamPosition.from_dict(data) if data else StreamPosition()
            self._saved[stream.entity] = self.state[stream.entity].as_dict()
            where = self.state[stream.entity].updated_at or "the beginning"
            log.info("Pardot %s stream resumes from %s", stream.entity, where)

    async def close(self) -> None:
        try:
            await self.client.aclose()
            for resource in self._closing:
                await resource.aclose()
        finally:
            await super().close()

    async def run(self) -> None:
        failures = 0
        while not self.stopping:
            try:
                results = await asyncio.gather(*(self.poll_stream(s) for s in self.streams), return_exceptions=True)
                failed = next((r for r in results if isinstance(r, BaseException)), None)
                if failed is not None:
                    raise failed
            except (RetryableError, QuotaExhaustedError) as exc:
                failures += 1
                self.outages += 1
                if isinstance(exc, QuotaExhaustedError):
                    delay = self.client.budget.pause
                else:
                    delay = self.backoff.delay(failures, exc.retry_after)
                log.warning("Pardot unavailable (%s); attempt %d, retrying in %.1fs", exc, failures, delay)
                if await self.sleep(max(0.1, delay)):
                    return
                continue
            if failures:
                log.info("Pardot reachable again after %d failed attempts; catching up", failures)
                failures = 0
            if await self.sleep(self.config.poll_interval):
                return

    async def poll_stream(self, stream: Stream) -> int:
        """Read one stream from its window start to now; returns the events published."""
        position = self.state.setdefault(stream.entity, StreamPosition())
        params: dict[str, Any] = {"orderBy": "updatedAt"}
        start = position.window_start(self.config.overlap_seconds)
        if start is not None:
            params["updatedAtAfterOrEqualTo"] = format_ts(start)
        if stream.soft_delete:
            params["deleted"] = "all"
        published = 0
        pages = self.client.query(stream.collection, stream.fields, params, limit=self.config.page_size)
        async with aclosing(pages):
            async for rows in pages:
                published += await self._emit(stream, position, rows)
                if self.stopping:
                    break
        self.polled(stream.entity)
        return published

    async def _emit(self, stream: Stream, position: StreamPosition, rows: list[dict[str, Any]]) -> int:
        events: list[tuple[SourceEvent, str]] = []
        for row in rows:
            digest = row_digest(row)
            known = position.digest(str(row.get("id")), str(row.get("updatedAt")))
            if known == digest:
                continue
            try:
                events.append((row_event(stream, row, revision=digest if known is not None else None), digest))
            except ValueError as exc:
                self.quarantined += 1
                await self.publisher.quarantine("pardot", str(exc), row, {"stream": stream.position_key})
        if events:
            await self.publish([event for event, _ in events])
        for event, digest in events:
            position.note(event.record_id, event.position["updated_at"], digest)
        position.prune(self.config.overlap_seconds)
        state = position.as_dict()
        if state != self._saved.get(stream.entity):
            await self.positions.save(stream.position_key, state)
            self._saved[stream.entity] = state
        return len(events)

"""TIMS change feed → ``src.tims.<entity>``, one SourceEvent per change, keyed by record id.

The feed is ordered by (``updated_at``, ``change_id``) and paged with an opaque cursor. A write
committed late can carry an ``updated_at`` the cursor has already passed, so after each
caught-up read the source re-reads an overlap window (``since`` = newest ``updated_at`` seen
minus ``overlap`` seconds) and publishes the changes it has not seen. Duplicates are possible
(after a crash, or when the window outgrows its memory) and harmless: each event carries the
stable id ``tims:<change_id>`` that the topologies dedupe on. The position (cursor, newest
change, change ids inside the window) is saved under ``tims:changes`` only after the broker
acked everything before it. When TIMS is down the source backs off, logs, and catches up later.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from connectors.envelope import SourceEvent
from connectors.errors import FatalError, QuotaExhaustedError, RetryableError
from connectors.kafka_io import PositionStore, Publisher
from connectors.retry import RetryPolicy
from connectors.source import Source
from connectors.tims.client import ChangePage, TimsClient
from connectors.tims.config import TimsConfig
from connectors.tims.resources import RESOURCES

__all__ = [
    "POSITION_KEY", "FeedPosition", "TimsSource", "change_event",
    "format_ts", "parse_ts",
]

POSITION_KEY = "tims:changes"
#: change ids remembered for the overlap window, at most (beyond it: possible duplicates only)
MAX_REMEMBERED = 10_000
log = logging.getLogger(__name__)


def parse_ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def format_ts(value: datetime) -> str:
    """UTC with milliseconds and a ``Z``, the contract's own form (no ``+`` to mangle in a query)."""
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def change_event(change: Mapping[str, Any]) -> SourceEvent:
    """The SourceEvent for one feed (or webhook) ``Change``; ValueError when it is not one. The
    message names the field at fault but not its value: the webhook answers it to the sender."""
    if not isinstance(change, Mapping):
        raise ValueError("not a TIMS change: not a JSON object")
    change_id, entity, record_id, updated_at = (_text_field(change, name)
                                                for name in ("change_id", "entity", "id", "updated_at"))
    op, version, record, modified_by = (change.get(name) for name in ("op", "version", "record", "modified_by"))
    for fits, problem in (
        (entity in RESOURCES, f"entity is not one of {', '.join(RESOURCES)}"),
        (op in ("upsert", "delete"), "op is not upsert or delete"),
        (type(version) is int, "version is not an integer"),  # exact type: a bool is an int too
        (isinstance(record, dict), "record is not an object"),
        (modified_by is None or isinstance(modified_by, str), "modified_by is not a string"),
    ):
        if not fits:
            raise ValueError(f"not a TIMS change: {problem}")
    try:
        committed = int(parse_ts(updated_at).timestamp() * 1000)
    except (ValueError, OverflowError):
        raise ValueError("not a TIMS change: updated_at is not an ISO 8601 date-time") from None
    if committed < 0:
        raise ValueError("not a TIMS change: updated_at is before 1970")
    kind = "DELETE" if op == "delete" else "CREATE" if version == 1 else "UPDATE"
    return SourceEvent(
        event_id=f"tims:{change_id}", source="tims", entity=entity, record_id=record_id, change_type=kind,
        fields=record, full_state=True, commit_timestamp=committed, change_origin=modified_by,
        commit_user=modified_by, position={"change_id": change_id, "updated_at": updated_at},
    )


def _text_field(change: Mapping[str, Any], name: str) -> str:
    value = change.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a TIMS change: {name} is missing or not a non-empty string")
    return value


def _order(change_id: str) -> tuple[int, str]:
    return (len(change_id), change_id)


@dataclass
class FeedPosition:
    """Where the source is: the feed cursor, the newest change published, and the change ids
    published inside the overlap window (so a re-read publishes only what is new)."""

    cursor: str | None = None
    updated_at: str | None = None
    change_id: str | None = None
    seen: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeedPosition":
        return cls(data.get("cursor"), data.get("updated_at"), data.get("change_id"), dict(data.get("seen") or {}))

    def as_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "updated_at": self.updated_at, "change_id": self.change_id,
                "seen": dict(self.seen)}

    def key(self) -> tuple[datetime, tuple[int, str]] | None:
        if self.updated_at is None:
            return None
        return (parse_ts(self.updated_at), _order(self.change_id or ""))

    def note(self, change_id: str, updated_at: str) -> bool:
        """Remember a published change; True when it sorts before the newest one (a late commit)."""
        self.seen[change_id] = updated_at
        key = (parse_ts(updated_at), _order(change_id))
        newest = self.key()
        if newest is None or key > newest:
            self.updated_at, self.change_id = updated_at, change_id
            return False
        return key < newest

    def window_start(self, overlap: float) -> datetime | None:
        newest = self.key()
        return None if newest is None else newest[0] - timedelta(seconds=overlap)

    def prune(self, overlap: float) -> None:
        start = self.window_start(overlap)
        if start is None:
            return
        kept = {cid: ts for cid, ts in self.seen.items() if parse_ts(ts) >= start}
        if len(kept) > MAX_REMEMBERED:
            newest = sorted(kept.items(), key=lambda item: (parse_ts(item[1]), _order(item[0])))[-MAX_REMEMBERED:]
            kept = dict(newest)
        self.seen = kept

    def describe(self) -> str:
        if self.updated_at is None:
            return "the start of the change feed"
        return f"change {self.change_id} ({self.updated_at})"


class TimsSource(Source):
    """Polls the change feed (see the module docstring for the cursor and the overlap)."""

    system = "tims"

    def __init__(self, publisher: Publisher, positions: PositionStore, client: TimsClient,
                 config: TimsConfig | None = None, backoff: RetryPolicy | None = None) -> None:
        super().__init__(publisher, positions)
        self.client = client
        self.config = config or client.config
        self.backoff = backoff or RetryPolicy(base_delay=1.0, max_delay=30.0)
        self.position = FeedPosition()
        self.late = 0
        self.outages = 0
        self.quarantined = 0
        self._saved: dict[str, Any] | None = None
        self._in_flight: dict[str, asyncio.Future[bool]] = {}

    async def start(self) -> None:
        await super().start()
        saved = (await self.positions.load()).get(POSITION_KEY)
        self.position = FeedPosition.from_dict(saved) if saved else FeedPosition()
        self._saved = self.position.as_dict()
        log.info("TIMS source resumes after %s", self.position.describe())

    async def close(self) -> None:
        try:
            await self.client.aclose()
        finally:
            await super().close()

    async def run(self) -> None:
        await self.follow(self.config.poll_interval)

    async def follow(self, interval: float) -> None:
        """Read, publish and save until stop(); back off while TIMS is unreachable."""
        failures = 0
        while not self.stopping:
            try:
                caught_up = await self.poll_once()
                if caught_up:
                    await self.sweep()
            except (RetryableError, QuotaExhaustedError) as exc:
                failures += 1
                self.outages += 1
                delay = max(0.1, self.backoff.delay(failures, getattr(exc, "retry_after", None)))
                log.warning("TIMS change feed unavailable (%s); attempt %d, retrying in %.1fs", exc, failures, delay)
                if await self.sleep(delay):
                    return
                continue
            if failures:
                log.info("TIMS change feed reachable again after %d failed attempts; catching up", failures)
                failures = 0
            if caught_up and await self.sleep(interval):
                return

    async def poll_once(self) -> bool:
        """Read one page forward from the cursor; True when the feed has nothing more now."""
        position = self.position
        try:
            page = await self._page(cursor=position.cursor, since=None if position.cursor else self._since())
        except FatalError as exc:
            if exc.code != "invalid_cursor" or position.cursor is None:
                raise
            log.warning("TIMS refused the saved cursor (%s); re-reading from %s minus the overlap window",
                        exc.code, position.describe())
            position.cursor = None
            return False
        await self._emit(page.changes)
        position.cursor = page.next_cursor
        await self._save()
        self.polled(POSITION_KEY.split(":", 1)[1])
        return not page.has_more

    async def sweep(self) -> int:
        """Re-read the overlap window; publish changes not seen yet (late commits). Returns how many."""
        since = self._since()
        if since is None:
            return 0
        found = 0
        cursor: str | None = None
        while True:
            page = await self._page(cursor=cursor, since=None if cursor else since)
            found += await self._emit(page.changes)
            await self._save()
            if not page.has_more:
                return found
            cursor = page.next_cursor

    def _since(self) -> str | None:
        start = self.position.window_start(self.config.overlap_seconds)
        return None if start is None else format_ts(start)

    async def _page(self, *, cursor: str | None, since: str | None) -> ChangePage:
        return await self.client.changes(cursor=cursor, since=since, limit=self.config.page_size,
                                         entities=self.config.entities or None)

    async def _emit(self, changes: list[dict[str, Any]]) -> int:
        """Publish the changes not seen yet; returns how many were published."""
        events: list[SourceEvent] = []
        for raw in changes:
            if not isinstance(raw, Mapping):  # a feed entry that is not an object: keep it, with why
                self.quarantined += 1
                await self.publisher.quarantine("tims", "change feed entry is not an object", raw,
                                                {"stream": POSITION_KEY})
                continue
            if self.already_published(str(raw.get("change_id"))):
                continue
            try:
                events.append(change_event(raw))
            except ValueError as exc:
                self.quarantined += 1
                await self.publisher.quarantine("tims", str(exc), raw, {"stream": POSITION_KEY})
                self._remember(raw)
        published = await self.publish_once(events, self._noted)
        self.position.prune(self.config.overlap_seconds)
        return len(published)

    def _noted(self, events: list[SourceEvent]) -> None:
        late = sum(self.position.note(e.position["change_id"], e.position["updated_at"]) for e in events)
        if late:
            self.late += late
            log.info("TIMS: %d late-committed changes found in the overlap window", late)

    async def publish_once(self, events: list[SourceEvent],
                           mark: Callable[[list[SourceEvent]], None]) -> list[SourceEvent]:
        """Publish the events no other path of this source has published or is publishing;
        ``mark`` records them before they are released. An event another path is publishing is
        waited for, and published here if that failed. Returns the events published here."""
        mine: list[SourceEvent] = []
        elsewhere: list[tuple[SourceEvent, asyncio.Future[bool]]] = []
        for event in events:
            change_id = event.position["change_id"]
            if change_id in self._in_flight:
                elsewhere.append((event, self._in_flight[change_id]))
            elif not self.already_published(change_id):
                mine.append(event)
        loop = asyncio.get_running_loop()
        claims = {e.position["change_id"]: loop.create_future() for e in mine}
        self._in_flight.update(claims)
        ok = False
        try:
            if mine:
                await self.publish(mine)
                mark(mine)
            ok = True
        finally:
            for change_id, claim in claims.items():
                if not claim.done():
                    claim.set_result(ok)
                del self._in_flight[change_id]
        for event, claim in elsewhere:
            if not await asyncio.shield(claim):
                mine += await self.publish_once([event], mark)
        return mine

    def already_published(self, change_id: str) -> bool:
        return change_id in self.position.seen

    def _remember(self, raw: Mapping[str, Any]) -> None:
        """Keep a quarantined change out of the next overlap re-read, when it can be placed."""
        try:
            self.position.note(str(raw["change_id"]), str(raw["updated_at"]))
        except (KeyError, TypeError, ValueError):
            pass

    async def _save(self) -> None:
        state = self.position.as_dict()
        if state != self._saved:
            await self.positions.save(POSITION_KEY, state)
            self._saved = state

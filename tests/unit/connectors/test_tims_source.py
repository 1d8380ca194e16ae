"""The TIMS poller's cursor logic against a fake change feed and an in-memory Kafka."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import httpx
import pytest

from connectors.retry import RetryPolicy
from connectors.tims.client import TimsClient
from connectors.errors import ConfigError
from connectors.tims.config import TimsConfig
from connectors.tims.source import (
    POSITION_KEY, FeedPosition, TimsSource, change_event, format_ts, parse_ts,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> str:
    return format_ts(T0 + timedelta(seconds=seconds))


class FakeFeed:
    """The contract's change feed: (updated_at, change_id) order, opaque cursor, ``since``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        #: entries a broken feed puts before the changes of every page
        self.junk: list[Any] = []
        self.seq = 0
        self.down = 0  # answer 503 to this many requests
        self.requests: list[httpx.Request] = []
        self.reject_cursors = False

    def add(self, record_id: str, seconds: float, *, version: int = 1, op: str = "upsert",
            by: str = "tims-ui", seq: int | None = None) -> str:
        """A committed change; ``seq`` below the last one stands for a change id taken before
        another transaction's but committed after it."""
        self.seq += 1
        change = {"change_id": f"{seq or self.seq:012d}", "entity": "customer", "resource": "customers",
                  "id": record_id, "external_id": None, "op": op, "version": version,
                  "updated_at": at(seconds), "modified_by": by,
                  "record": {"customer_id": record_id, "name": f"N {record_id}", "version": version}}
        self.rows.append(change)
        self.rows.sort(key=self._key)
        return change["change_id"]

    @staticmethod
    def _key(change: dict[str, Any]) -> tuple[datetime, str]:
        return (parse_ts(change["updated_at"]), change["change_id"])

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            self.down -= 1
            return httpx.Response(503, json={"error": {"code": "service_unavailable", "message": "down"}},
                                  headers={"Retry-After": "0"})
        params = request.url.params
        limit = int(params.get("limit", "100"))
        if "cursor" in params:
            if self.reject_cursors:
                return httpx.Response(400, json={"error": {"code": "invalid_cursor", "message": "expired"}})
            ts, _, cid = params["cursor"].partition("|")
            start = (parse_ts(ts), cid)
            rows = [c for c in self.rows if self._key(c) > start]
        elif "since" in params:
            start = (parse_ts(params["since"]), "")
            rows = [c for c in self.rows if self._key(c) >= start]
        else:
            start = (T0 - timedelta(days=1), "")
            rows = list(self.rows)
        page = rows[:limit]
        last = self._key(page[-1]) if page else start
        return httpx.Response(200, json={"changes": self.junk + page, "next_cursor": f"{format_ts(last[0])}|{last[1]}",
                                         "has_more": len(rows) > limit})


class FakeKafka:
    """Publisher and PositionStore in one, recording what happened in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.saved: dict[str, dict[str, Any]] = {}
        self.quarantined: list[Any] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_many(self, topic: str, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
        records = list(records)
        self.log += [("send", (topic, key, value)) for key, value in records]
        return len(records)

    async def quarantine(self, source: str, reason: str, raw: Any, context: dict[str, Any] | None = None) -> None:
        self.quarantined.append((reason, raw))

    async def load(self) -> dict[str, dict[str, Any]]:
        return dict(self.saved)

    async def save(self, key: str, position: dict[str, Any]) -> None:
        self.saved[key] = position
        self.log.append(("save", position))

    def sent(self) -> list[dict[str, Any]]:
        return [entry[1][2] for entry in self.log if entry[0] == "send"]

    def event_ids(self) -> list[str]:
        return [v["event_id"] for v in self.sent()]


def source(feed: FakeFeed, kafka: FakeKafka, **options: Any) -> TimsSource:
    http = httpx.AsyncClient(transport=httpx.MockTransport(feed.handler))
    config = TimsConfig(base_url="https://tims.example", api_key="k",
                        **{"page_size": 2, "overlap_seconds": 5.0, "poll_interval": 0.01, **options})
    client = TimsClient(config, policy=RetryPolicy(max_attempts=1), http=http)
    return TimsSource(kafka, kafka, client, config, backoff=RetryPolicy(base_delay=0.01, max_delay=0.02))  # type: ignore[arg-type]


async def drain(src: TimsSource) -> None:
    while not await src.poll_once():
        pass
    await src.sweep()


def test_change_event_maps_a_change_to_a_source_event() -> None:
    feed = FakeFeed()
    feed.add("C000001", 1)
    feed.add("C000001", 2, version=2, by="connect")
    feed.add("C000001", 3, version=3, op="delete")
    created, updated, deleted = (change_event(c) for c in feed.rows)
    assert (created.event_id, created.change_type, created.record_id) == ("tims:000000000001", "CREATE", "C000001")
    assert (updated.change_type, updated.change_origin) == ("UPDATE", "connect")
    assert deleted.change_type == "DELETE" and deleted.full_state
    assert created.commit_timestamp == int((T0 + timedelta(seconds=1)).timestamp() * 1000)
    with pytest.raises(ValueError):
        change_event({"change_id": "1", "entity": "customer"})


async def test_publishes_every_change_in_feed_order_and_saves_after_the_sends() -> None:
    feed, kafka = FakeFeed(), FakeKafka()
    for i in range(5):
        feed.add(f"C{i:06d}", i)
    src = source(feed, kafka)
    await src.start()
    await drain(src)
    assert kafka.event_ids() == [f"tims:{i:012d}" for i in range(1, 6)]
    topics_keys = [(e[1][0], e[1][1]) for e in kafka.log if e[0] == "send"]
    assert topics_keys[0] == ("src.tims.customer", "C000000")
    first_save = next(i for i, e in enumerate(kafka.log) if e[0] == "save")
    assert all(e[0] == "send" for e in kafka.log[:first_save]) and first_save == 2, "a page is acked before its save"
    saved = kafka.saved[POSITION_KEY]
    assert saved["change_id"] == "000000000005" and saved["updated_at"] == at(4)
    assert saved["cursor"] == f"{at(4)}|000000000005"


async def test_a_late_commit_inside_the_overlap_window_is_published_once() -> None:
    feed, kafka = FakeFeed(), FakeKafka()
    feed.add("C1", 10, seq=10)
    feed.add("C2", 10, seq=12)
    src = source(feed, kafka)
    await src.start()
    await drain(src)
    late = feed.add("C3", 10, seq=11)  # same instant, smaller id, committed after the cursor passed it
    older = feed.add("C4", 7)  # an earlier instant inside the 5 s window
    await drain(src)
    await drain(src)
    assert kafka.event_ids().count(f"tims:{late}") == 1
    assert kafka.event_ids().count(f"tims:{older}") == 1
    assert src.late == 2
    assert len(kafka.event_ids()) == 4


async def test_a_commit_older_than_the_window_is_not_read_again() -> None:
    feed, kafka = FakeFeed(), FakeKafka()
    feed.add("C1", 100)
    src = source(feed, kafka)
    await src.start()
    await drain(src)
    feed.add("C0", 50)
    await drain(src)
    assert kafka.event_ids() == ["tims:000000000001"]


async def test_a_restarted_source_resumes_from_the_saved_position_without_repeats() -> None:
    feed, kafka = FakeFeed(), FakeKafka()
    for i in range(3):
        feed.add(f"C{i}", i)
    first = source(feed, kafka)
    await first.start()
    await drain(first)
    feed.add("C9", 3)
    second = source(feed, kafka)
    await second.start()
    assert second.position.change_id == "000000000003"
    await drain(second)
    assert kafka.event_ids() == [f"tims:{i:012d}" for i in range(1, 5)]


async def test_a_refused_cursor_falls_back_to_the_overlap_window() -> None:
    feed, kafka = FakeFeed(), FakeKafka()
    feed.add("C1", 1)
    src = source(feed, kafka)
    await src.start()
    await drain(src)
    feed.reject_cursors = True
    feed.add("C2", 2)
    assert await src.poll_once() is False
    assert src.position.cursor is None
    feed.reject_cursors = False
    await drain(src)
    assert kafka.event_ids() == ["tims:000000000001", "tims:000000000002"]


async def test_run_backs_off_through_an_outage_and_catches_up() -> None:
    feed, kafka = FakeFeed(), FakeKafka()
    feed.add("C1", 1)
    feed.down = 4
    src = source(feed, kafka)
    await src.start()
    task = asyncio.create_task(src.run())
    for _ in range(200):
        if len(kafka.event_ids()) == 1:
            break
        await asyncio.sleep(0.01)
    feed.add("C2", 2)
    for _ in range(200):
        if len(kafka.event_ids()) == 2:
            break
        await asyncio.sleep(0.01)
    src.stop()
    await asyncio.wait_for(task, 5)
    assert src.outages == 4
    assert kafka.event_ids() == ["tims:000000000001", "tims:000000000002"]


async def test_a_malformed_change_is_quarantined_and_the_rest_published() -> None:
    feed, kafka = FakeFeed(), FakeKafka()
    feed.add("C1", 1)
    feed.rows[0]["record"] = "not an object"
    feed.add("C2", 2)
    src = source(feed, kafka)
    await src.start()
    await drain(src)
    assert kafka.event_ids() == ["tims:000000000002"]
    assert len(kafka.quarantined) == 1 and "not a TIMS change" in kafka.quarantined[0][0]


async def test_a_feed_entry_that_is_not_an_object_is_quarantined() -> None:
    feed, kafka = FakeFeed(), FakeKafka()
    feed.add("C1", 1)
    feed.junk = ["a string", None]
    src = source(feed, kafka)
    await src.start()
    await drain(src)
    assert kafka.event_ids() == ["tims:000000000001"]
    assert [reason for reason, *_ in kafka.quarantined][:2] == ["change feed entry is not an object"] * 2


def test_feed_position_remembers_only_the_window() -> None:
    position = FeedPosition()
    assert position.note("000000000002", at(10)) is False
    assert position.note("000000000001", at(10)) is True  # same instant, earlier id: late
    position.note("000000000003", at(30))
    position.prune(5.0)
    assert set(position.seen) == {"000000000003"}
    assert FeedPosition.from_dict(position.as_dict()) == position


def test_config_refuses_unknown_entities_and_modes() -> None:
    required = {"base_url": "https://tims.example", "api_key": "k"}
    with pytest.raises(ConfigError, match="entities: unknown"):
        TimsConfig.load("tims", {**required, "entities": ("widget",)})
    with pytest.raises(ConfigError, match="source_mode: Input should be 'poll' or 'webhook'"):
        TimsConfig.load("tims", {**required, "source_mode": "push"})
    config = TimsConfig.load("tims", {**required, "entities": "customer, invoice", "poll_interval": 0.5})
    assert config.entities == ("customer", "invoice") and config.poll_interval == 0.5 and config.source_mode == "poll"

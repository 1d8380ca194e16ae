"""The Pardot poller's cursor logic: updatedAt windows, second precision, deletions, positions."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import httpx
import pytest

from connectors.pardot.client import PardotClient
from connectors.errors import ConfigError
from connectors.pardot.config import ENTITIES, PardotConfig
from connectors.pardot.source import (
    STREAMS, PardotSource, StreamPosition, stream_for, format_ts, parse_ts, row_event,
)
from connectors.retry import RetryPolicy

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: int) -> str:
    return format_ts(T0 + timedelta(seconds=seconds))


class FakePardot:
    """Prospects and visitor activities with v5's filters, ordering, recycle bin and page tokens."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[int, dict[str, Any]]] = {"prospects": {}, "visitor-activities": {}}
        self.requests: list[httpx.Request] = []

    def prospect(self, pid: int, seconds: int, *, created: int | None = None, deleted: bool = False,
                 by: int = 1000) -> None:
        self.rows["prospects"][pid] = {"id": pid, "email": f"p{pid}@example.com", "updatedAt": at(seconds),
                                       "createdAt": at(seconds if created is None else created),
                                       "isDeleted": deleted, "updatedById": by}

    def activity(self, aid: int, pid: int, seconds: int) -> None:
        self.rows["visitor-activities"][aid] = {"id": aid, "prospectId": pid, "type": 4, "typeName": "Form Handler",
                                                "createdAt": at(seconds), "updatedAt": at(seconds)}

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["Pardot-Business-Unit-Id"]
        params = dict(request.url.params)
        assert params.get("fields"), "fields= always"
        collection = request.url.path.rsplit("/", 1)[1]
        if "nextPageToken" in params:
            params = {**json.loads(base64.b64decode(params["nextPageToken"])), "fields": params["fields"]}
        rows = list(self.rows[collection].values())
        if collection == "prospects" and params.get("deleted") != "all":
            rows = [r for r in rows if not r["isDeleted"]]
        if "updatedAtAfterOrEqualTo" in params:
            since = parse_ts(params["updatedAtAfterOrEqualTo"])
            rows = [r for r in rows if parse_ts(r["updatedAt"]) >= since]
        rows.sort(key=lambda r: (parse_ts(r["updatedAt"]), r["id"]))
        skip = int(params.get("_skip", 0))
        limit = int(params["limit"])
        page = rows[skip:skip + limit]
        token = None
        if len(rows) > skip + limit:
            token = base64.b64encode(json.dumps({**params, "_skip": skip + limit}).encode()).decode()
        fields = params["fields"].split(",")
        return httpx.Response(200, json={"values": [{f: r.get(f) for f in fields} for r in page],
                                         "nextPageToken": token})


class FakeKafka:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.saved: dict[str, dict[str, Any]] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_many(self, topic: str, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
        batch = [(topic, key, value) for key, value in records]
        self.sent += batch
        return len(batch)

    async def load(self) -> dict[str, dict[str, Any]]:
        return dict(self.saved)

    async def save(self, key: str, position: dict[str, Any]) -> None:
        self.saved[key] = position

    def ids(self, entity: str = "prospect") -> list[str]:
        return [v["event_id"] for t, _, v in self.sent if t == f"src.pardot.{entity}"]


def source(fake: FakePardot, kafka: FakeKafka, **options: Any) -> PardotSource:
    class Tokens:
        async def token(self) -> Any:
            return type("T", (), {"access_token": "t"})()

        async def refresh(self, stale: Any = None) -> Any:
            return await self.token()

    config = PardotConfig(base_url="https://pi.example", business_unit_id="0Uv5e0000000001AAA",
                          **{"page_size": 2, "overlap_seconds": 10.0, "poll_interval": 0.01, **options})
    client = PardotClient(config, Tokens(), policy=RetryPolicy(max_attempts=1),
                          http=httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)))
    return PardotSource(kafka, kafka, client, config)  # type: ignore[arg-type]


async def poll(src: PardotSource) -> None:
    for stream in src.streams:
        await src.poll_stream(stream)


def test_row_events_carry_stable_ids_and_the_kind_of_change() -> None:
    stream = STREAMS["prospect"]
    created = row_event(stream, {"id": 1001, "createdAt": at(1), "updatedAt": at(1), "updatedById": 1001})
    updated = row_event(stream, {"id": 1001, "createdAt": at(1), "updatedAt": at(5), "isDeleted": False})
    deleted = row_event(stream, {"id": 1001, "createdAt": at(1), "updatedAt": at(9), "isDeleted": True})
    assert created.event_id == f"pardot:prospect:1001:{at(1)}"
    assert (created.change_type, updated.change_type, deleted.change_type) == ("CREATE", "UPDATE", "DELETE")
    assert created.change_origin == "user:1001" and created.record_id == "1001"
    assert created.commit_timestamp == int((T0 + timedelta(seconds=1)).timestamp() * 1000)
    with pytest.raises(ValueError):
        row_event(stream, {"email": "x@example.com"})


async def test_both_streams_are_read_with_the_updated_at_filter_and_recycle_bin() -> None:
    fake, kafka = FakePardot(), FakeKafka()
    for pid in range(1001, 1006):
        fake.prospect(pid, pid - 1000)
    fake.prospect(1009, 6, created=1, deleted=True)
    fake.activity(4001, 1001, 2)
    src = source(fake, kafka)
    await src.start()
    await poll(src)
    assert kafka.ids() == [f"pardot:prospect:{pid}:{at(pid - 1000)}" for pid in range(1001, 1006)] + \
        [f"pardot:prospect:1009:{at(6)}"]
    assert [v["change_type"] for t, _, v in kafka.sent if t == "src.pardot.prospect"][-1] == "DELETE"
    assert kafka.ids("visitor_activity") == [f"pardot:visitor_activity:4001:{at(2)}"]
    assert kafka.saved["pardot:prospect"]["updated_at"] == at(6) and kafka.saved["pardot:prospect"]["id"] == "1009"
    first = [r for r in fake.requests if r.url.path.endswith("/prospects")][0]
    assert first.url.params["orderBy"] == "updatedAt" and first.url.params["deleted"] == "all"
    assert "updatedAtAfterOrEqualTo" not in first.url.params


async def test_a_change_within_the_last_second_read_is_not_missed_nor_repeated() -> None:
    fake, kafka = FakePardot(), FakeKafka()
    fake.prospect(1002, 10)
    src = source(fake, kafka)
    await src.start()
    await poll(src)
    fake.prospect(1001, 10)  # same second, lower id: sorts before what was read
    fake.prospect(1003, 11)
    await poll(src)
    await poll(src)
    assert kafka.ids() == [f"pardot:prospect:1002:{at(10)}", f"pardot:prospect:1001:{at(10)}",
                           f"pardot:prospect:1003:{at(11)}"]
    last_query = [r for r in fake.requests if r.url.path.endswith("/prospects")
                  and "updatedAtAfterOrEqualTo" in r.url.params][-1]
    assert last_query.url.params["updatedAtAfterOrEqualTo"] == at(1), "11 s minus the 10 s overlap"


async def test_an_updated_record_is_a_new_event_and_a_restart_repeats_nothing() -> None:
    fake, kafka = FakePardot(), FakeKafka()
    fake.prospect(1001, 1)
    first = source(fake, kafka)
    await first.start()
    await poll(first)
    fake.prospect(1001, 3, created=1)
    second = source(fake, kafka)
    await second.start()
    await poll(second)
    await poll(second)
    assert kafka.ids() == [f"pardot:prospect:1001:{at(1)}", f"pardot:prospect:1001:{at(3)}"]
    assert [v["change_type"] for _, _, v in kafka.sent if v["entity"] == "prospect"] == ["CREATE", "UPDATE"]


async def test_a_second_change_within_the_same_second_is_published_under_its_own_id() -> None:
    fake, kafka = FakePardot(), FakeKafka()
    fake.prospect(1001, 5)
    src = source(fake, kafka)
    await src.start()
    await poll(src)
    fake.rows["prospects"][1001]["email"] = "changed@example.com"  # same updatedAt, new content
    await poll(src)
    await poll(src)
    first, second = kafka.ids()
    assert first == f"pardot:prospect:1001:{at(5)}"
    assert second.startswith(first + "~") and len(second) == len(first) + 13
    assert kafka.sent[-1][2]["fields"]["email"] == "changed@example.com"


def test_the_window_forgets_pairs_older_than_the_overlap() -> None:
    position = StreamPosition()
    position.note("1001", at(0), "d1")
    position.note("1002", at(30), "d2")
    position.prune(10.0)
    assert position.seen == {StreamPosition.pair("1002", at(30)): [at(30), "d2"]}
    assert position.digest("1002", at(30)) == "d2" and position.digest("1001", at(0)) is None
    assert StreamPosition.from_dict(position.as_dict()) == position


def test_config_reads_comma_separated_names() -> None:
    config = PardotConfig(business_unit_id="0Uv5e0000000001AAA", entities="prospect",
                          prospect_fields="TIMS_Customer_ID__c, Payment_Terms__c")
    assert config.entities == ("prospect",)
    assert stream_for(config, "prospect").fields[-2:] == ("TIMS_Customer_ID__c", "Payment_Terms__c")
    assert tuple(STREAMS) == ENTITIES
    with pytest.raises(ConfigError, match="entities: choose from prospect, visitor_activity"):
        PardotConfig.load("pardot", {"business_unit_id": "0Uv5e0000000001AAA", "entities": "lists"})
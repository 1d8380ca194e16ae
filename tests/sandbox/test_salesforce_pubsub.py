"""The simulated Pub/Sub API, driven over a real gRPC channel with the generated client stubs.

Everything a CDC subscriber depends on: topics and schemas, Avro change events with header
bitmaps, gap and overflow events, flow control, keep-alives, replay after reconnect, retention
expiry, authentication and injected faults.
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp
import grpc
import pytest
from aiohttp import web
from fastavro import parse_schema, schemaless_reader

from connectors.salesforce.proto import pubsub_api_pb2 as pb
from connectors.salesforce.proto import pubsub_api_pb2_grpc as pb_grpc
from sandbox.faults import FaultConfig, Faults
from connectors.salesforce.bitmaps import decode_bitmap
from sandbox.salesforce.changes import RecordChange
from sandbox.salesforce.eventbus import EventBus, admin_routes
from sandbox.salesforce.org import FieldDef, Org
from sandbox.salesforce.pubsub import (
    ERROR_AUTH,
    ERROR_CONCURRENT_LIMIT,
    ERROR_DELIVERY_LIMIT,
    ERROR_NUM_REQUESTED,
    ERROR_REPLAY_CORRUPTED,
    ERROR_REPLAY_VALIDATION,
    ERROR_TOPIC_NOT_FOUND,
    ERROR_UNAVAILABLE,
    start_pubsub_server,
)

ORG_ID = "00D000000000001AAA"
TOKEN = "00D000000000001!good-token"
CONTACT_TOPIC = "/data/ContactChangeEvent"
KEEPALIVE = 0.4
TIMEOUT = 5.0
IDLE_TIMEOUT = 5.0  # bounds the wait for a keep-alive (sent every KEEPALIVE seconds)


class FakeClock:
    """Bus time that tests move forward to age events out of retention."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    bus: EventBus
    faults: Faults
    clock: FakeClock
    address: str
    valid_tokens: set[str]
    stub: pb_grpc.PubSubStub


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    bus = EventBus(retention_seconds=3600, clock=clock)
    faults = Faults()
    tokens = {TOKEN}
    server, address = await start_pubsub_server(
        "127.0.0.1", 0, bus, lambda token: token in tokens, faults,
        keepalive_seconds=KEEPALIVE, tenant_id=ORG_ID,
    )
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Rig(bus, faults, clock, address, tokens, pb_grpc.PubSubStub(channel))
    finally:
        await channel.close()
        await server.stop(0)


def metadata(token: str = TOKEN, tenant: str = ORG_ID) -> tuple[tuple[str, str], ...]:
    return (("accesstoken", token), ("instanceurl", "https://example.my.salesforce.com"), ("tenantid", tenant))


class Subscriber:
    """A Subscribe call driven by hand: write FetchRequests, read FetchResponses."""

    def __init__(self, stub: pb_grpc.PubSubStub, token: str = TOKEN) -> None:
        self.stub = stub
        self.call = stub.Subscribe(metadata=metadata(token))
        self._schemas: dict[str, dict[str, Any]] = {}

    async def fetch(self, n: int, topic: str = "", preset: int = pb.LATEST, replay_id: bytes = b"") -> None:
        try:
            await self.call.write(pb.FetchRequest(topic_name=topic, replay_preset=preset, replay_id=replay_id,
                                                  num_requested=n))
        except grpc.aio.AioRpcError:
            pass  # the server may end the call before reading (auth, faults): read() reports it

    async def response(self, timeout: float = TIMEOUT) -> pb.FetchResponse:
        response = await asyncio.wait_for(self.call.read(), timeout)
        assert response is not grpc.aio.EOF, "stream ended"
        return response

    async def events(self, count: int) -> list[pb.ConsumerEvent]:
        """Read responses until ``count`` events came (keep-alives in between are fine)."""
        out: list[pb.ConsumerEvent] = []
        while len(out) < count:
            out.extend((await self.response()).events)
        assert len(out) == count, f"server sent {len(out)} events, {count} were requested"
        return out

    async def decode(self, event: pb.ConsumerEvent) -> tuple[dict[str, Any], dict[str, Any]]:
        """The event's record, decoded with the schema fetched by its schema id."""
        sid = event.event.schema_id
        if sid not in self._schemas:
            info = await self.stub.GetSchema(pb.SchemaRequest(schema_id=sid), metadata=metadata())
            assert info.schema_id == sid
            self._schemas[sid] = json.loads(info.schema_json)
        schema = self._schemas[sid]
        record = schemaless_reader(io.BytesIO(event.event.payload), parse_schema(schema))
        return record, schema

    async def error(self, timeout: float = TIMEOUT) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            while True:
                await asyncio.wait_for(self.call.read(), timeout)
        return caught.value

    def close(self) -> None:
        self.call.cancel()


def error_code(error: grpc.aio.AioRpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get("error-code")


def contact_change(record_id: str, change_type: str, fields: dict[str, Any], **extra: Any) -> RecordChange:
    return RecordChange(
        entity="Contact",
        record_id=record_id,
        change_type=change_type,
        fields=fields,
        change_origin="com/salesforce/api/rest/62.0;client=tims-connect",
        commit_user="005000000000001AAA",
        commit_timestamp=1_717_000_000_000,
        transaction_key="tx-" + record_id + change_type,
        **extra,
    )


async def test_get_topic_and_schema(rig: Rig) -> None:
    info = await rig.stub.GetTopic(pb.TopicRequest(topic_name=CONTACT_TOPIC), metadata=metadata())
    assert info.topic_name == CONTACT_TOPIC
    assert info.can_subscribe and not info.can_publish
    assert info.tenant_guid == ORG_ID and info.rpc_id
    assert info.schema_id == rig.bus.schema_id_of("Contact")

    schema = await rig.stub.GetSchema(pb.SchemaRequest(schema_id=info.schema_id), metadata=metadata())
    parsed = json.loads(schema.schema_json)
    assert parsed["name"] == "ContactChangeEvent"
    assert parsed["fields"][0]["name"] == "ChangeEventHeader"
    assert "MailingAddress" in [f["name"] for f in parsed["fields"]]

    everything = await rig.stub.GetTopic(pb.TopicRequest(topic_name="/data/ChangeEvents"), metadata=metadata())
    assert everything.can_subscribe and everything.schema_id

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rig.stub.GetTopic(pb.TopicRequest(topic_name="/data/NoSuchChangeEvent"), metadata=metadata())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_code(caught.value) == ERROR_TOPIC_NOT_FOUND
    assert "rpcId:" in (caught.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rig.stub.GetSchema(pb.SchemaRequest(schema_id="nope"), metadata=metadata())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rig.stub.Publish(pb.PublishRequest(topic_name=CONTACT_TOPIC), metadata=metadata())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_create_update_delete_events_with_bitmaps(rig: Rig) -> None:
    rig.bus.publish(contact_change("003A", "CREATE", {
        "FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com", "Phone": "+44 20 1",
        "MailingStreet": "12 St James's Sq", "MailingCity": "London", "TIMS_Credit_Limit__c": 5000,
        "LastModifiedDate": "2024-05-29T16:26:40.000+0000",
    }))
    rig.bus.publish(RecordChange("Account", "001A", "CREATE", {"Name": "Analytical Engines Ltd"}))
    rig.bus.publish(contact_change(
        "003A", "UPDATE",
        {"Email": "ada@engines.example", "MailingCity": "Cambridge", "Phone": None, "MailingStreet": None,
         "LastModifiedDate": 1_717_000_100_000},
        changed_fields=("Email", "MailingCity", "Phone", "MailingStreet", "LastModifiedDate"),
        nulled_fields=("Phone", "MailingStreet"),
    ))
    rig.bus.publish(contact_change("003A", "DELETE", {}))

    sub = Subscriber(rig.stub)
    await sub.fetch(10, CONTACT_TOPIC, pb.EARLIEST)
    events = await sub.events(3)  # the Account event is on another channel
    decoded = [(await sub.decode(e)) for e in events]
    records = [r for r, _ in decoded]
    schema = decoded[0][1]
    assert len({e.replay_id for e in events}) == 3
    assert all(e.event.id and e.event.schema_id == rig.bus.schema_id_of("Contact") for e in events)

    create, update, delete = records
    header = create["ChangeEventHeader"]
    assert header["entityName"] == "Contact" and header["recordIds"] == ["003A"]
    assert header["changeType"] == "CREATE"
    assert header["changeOrigin"] == "com/salesforce/api/rest/62.0;client=tims-connect"
    assert header["commitUser"] == "005000000000001AAA"
    assert header["commitTimestamp"] == 1_717_000_000_000
    assert header["transactionKey"] == "tx-003ACREATE" and header["sequenceNumber"] == 1
    assert header["changedFields"] == [] and header["nulledFields"] == []
    assert create["Name"] == {"Salutation": None, "FirstName": "Ada", "LastName": "Lovelace"}
    assert create["MailingAddress"]["Street"] == "12 St James's Sq"
    assert create["MailingAddress"]["City"] == "London"
    assert create["Email"] == "ada@example.com" and create["TIMS_Credit_Limit__c"] == 5000.0
    assert create["LastModifiedDate"] == 1_717_000_000_000  # epoch ms, as Pub/Sub sends dates

    header = update["ChangeEventHeader"]
    assert header["changeType"] == "UPDATE"
    mailing = [f["name"] for f in schema["fields"]].index("MailingAddress")
    assert any(entry.startswith(f"{mailing}-0x") for entry in header["changedFields"])
    assert set(decode_bitmap(schema, header["changedFields"])) == {
        "Email", "Phone", "LastModifiedDate", "MailingAddress.City", "MailingAddress.Street",
    }
    assert set(decode_bitmap(schema, header["nulledFields"])) == {"Phone", "MailingAddress.Street"}
    assert header["diffFields"] == []
    assert update["Email"] == "ada@engines.example" and update["Phone"] is None
    assert update["Name"] is None  # unchanged fields are null on UPDATE
    assert update["TIMS_Credit_Limit__c"] is None
    assert update["MailingAddress"] == {
        "Street": None, "City": "Cambridge", "State": None, "PostalCode": None, "Country": None,
    }

    header = delete["ChangeEventHeader"]
    assert header["changeType"] == "DELETE" and header["recordIds"] == ["003A"]
    assert header["changedFields"] == [] and header["nulledFields"] == []
    assert all(value is None for key, value in delete.items() if key != "ChangeEventHeader")

    everything = Subscriber(rig.stub)
    await everything.fetch(10, "/data/ChangeEvents", pb.EARLIEST)
    mixed = [(await everything.decode(e))[0]["ChangeEventHeader"]["entityName"] for e in await everything.events(4)]
    assert mixed == ["Contact", "Account", "Contact", "Contact"]
    sub.close()
    everything.close()


async def test_gap_and_overflow_events(rig: Rig) -> None:
    rig.bus.inject_gap("Lead", ["00QA", "00QB"], "GAP_UPDATE", commit_timestamp=1_717_000_000_000)
    rig.bus.inject_gap("Lead", ["00QC"], "GAP_CREATE")
    rig.bus.inject_gap("Contact", ["003C"], "GAP_DELETE")
    rig.bus.inject_gap("Contact", ["003D"], "GAP_UNDELETE")
    rig.bus.inject_overflow("Account")
    with pytest.raises(ValueError):
        rig.bus.inject_gap("Lead", ["00QA"], "UPDATE")
    with pytest.raises(ValueError):
        rig.bus.inject_gap("Lead", [], "GAP_UPDATE")

    sub = Subscriber(rig.stub)
    await sub.fetch(10, "/data/ChangeEvents", pb.EARLIEST)
    records = [(await sub.decode(e))[0] for e in await sub.events(5)]
    headers = [r["ChangeEventHeader"] for r in records]
    assert [(h["entityName"], h["changeType"], h["recordIds"]) for h in headers] == [
        ("Lead", "GAP_UPDATE", ["00QA", "00QB"]),
        ("Lead", "GAP_CREATE", ["00QC"]),
        ("Contact", "GAP_DELETE", ["003C"]),
        ("Contact", "GAP_UNDELETE", ["003D"]),
        ("Account", "GAP_OVERFLOW", []),
    ]
    assert headers[0]["commitTimestamp"] == 1_717_000_000_000
    for record in records:  # header only: no record values, no field lists
        assert all(value is None for key, value in record.items() if key != "ChangeEventHeader")
        header = record["ChangeEventHeader"]
        assert header["changedFields"] == header["nulledFields"] == header["diffFields"] == []
    sub.close()


async def test_flow_control_sends_no_more_than_requested(rig: Rig) -> None:
    for n in range(5):
        rig.bus.publish(contact_change(f"003{n}", "CREATE", {"LastName": f"L{n}"}))
    sub = Subscriber(rig.stub)
    await sub.fetch(2, CONTACT_TOPIC, pb.EARLIEST)
    first = await sub.response()
    got = list(first.events)
    while len(got) < 2:
        got.extend((await sub.response()).events)
    assert len(got) == 2
    # nothing more until asked: only keep-alives for the next few intervals
    for _ in range(3):
        idle = await sub.response(timeout=IDLE_TIMEOUT)
        assert len(idle.events) == 0
        assert idle.pending_num_requested == 0
        assert idle.latest_replay_id == got[-1].replay_id  # not past the undelivered events
    await sub.fetch(3)
    rest = await sub.events(3)
    names = [(await sub.decode(e))[0]["Name"]["LastName"] for e in got + rest]
    assert names == ["L0", "L1", "L2", "L3", "L4"]
    sub.close()


async def test_num_requested_over_100_is_invalid(rig: Rig) -> None:
    sub = Subscriber(rig.stub)
    await sub.fetch(101, CONTACT_TOPIC, pb.EARLIEST)
    error = await sub.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(error) == ERROR_NUM_REQUESTED

    sub = Subscriber(rig.stub)
    await sub.fetch(5, CONTACT_TOPIC, pb.EARLIEST)
    await sub.fetch(500)  # a later request is checked too
    error = await sub.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(error) == ERROR_NUM_REQUESTED

    sub = Subscriber(rig.stub)
    await sub.fetch(5, CONTACT_TOPIC, pb.CUSTOM)  # CUSTOM without a replay id
    error = await sub.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(error) == ERROR_REPLAY_VALIDATION


async def test_keepalive_carries_latest_replay_id(rig: Rig) -> None:
    rig.bus.publish(contact_change("003A", "CREATE", {"LastName": "A"}))
    sub = Subscriber(rig.stub)
    await sub.fetch(10, CONTACT_TOPIC, pb.EARLIEST)
    [event] = await sub.events(1)
    idle = await sub.response(timeout=IDLE_TIMEOUT)
    assert len(idle.events) == 0
    assert idle.latest_replay_id == event.replay_id
    assert idle.pending_num_requested == 9
    assert idle.rpc_id

    # an event on another channel moves the subscription's position past it
    rig.bus.publish(RecordChange("Account", "001A", "CREATE", {"Name": "Other"}))
    idle = await sub.response(timeout=IDLE_TIMEOUT)
    assert len(idle.events) == 0
    assert idle.latest_replay_id == rig.bus.latest_replay_id() != event.replay_id
    sub.close()

    # resuming from the keep-alive's replay id skips nothing and repeats nothing
    rig.bus.publish(contact_change("003B", "CREATE", {"LastName": "B"}))
    again = Subscriber(rig.stub)
    await again.fetch(10, CONTACT_TOPIC, pb.CUSTOM, idle.latest_replay_id)
    [later] = await again.events(1)
    assert (await again.decode(later))[0]["ChangeEventHeader"]["recordIds"] == ["003B"]
    again.close()


async def test_latest_preset_gets_only_new_events(rig: Rig) -> None:
    rig.bus.publish(contact_change("003OLD", "CREATE", {"LastName": "Old"}))
    sub = Subscriber(rig.stub)
    await sub.fetch(10, CONTACT_TOPIC, pb.LATEST)
    idle = await sub.response(timeout=IDLE_TIMEOUT)  # subscription is live once this arrives
    assert len(idle.events) == 0
    rig.bus.publish(contact_change("003NEW", "CREATE", {"LastName": "New"}))
    [event] = await sub.events(1)
    assert (await sub.decode(event))[0]["ChangeEventHeader"]["recordIds"] == ["003NEW"]
    sub.close()


async def test_custom_replay_after_reconnect_gets_exactly_the_rest(rig: Rig) -> None:
    for n in range(4):
        rig.bus.publish(contact_change(f"003{n}", "CREATE", {"LastName": f"L{n}"}))
    first = Subscriber(rig.stub)
    await first.fetch(2, CONTACT_TOPIC, pb.EARLIEST)
    consumed = await first.events(2)
    stored = consumed[-1].replay_id  # what a connector saves after the broker acked
    first.close()

    rig.bus.publish(contact_change("0034", "CREATE", {"LastName": "L4"}))
    second = Subscriber(rig.stub)
    await second.fetch(100, CONTACT_TOPIC, pb.CUSTOM, stored)
    rest = await second.events(3)
    ids = [(await second.decode(e))[0]["ChangeEventHeader"]["recordIds"][0] for e in rest]
    assert ids == ["0032", "0033", "0034"]
    idle = await second.response(timeout=IDLE_TIMEOUT)
    assert len(idle.events) == 0  # and nothing else
    second.close()


async def test_replay_id_past_retention_is_corrupted(rig: Rig) -> None:
    rig.bus.publish(contact_change("003A", "CREATE", {"LastName": "A"}))
    rig.bus.publish(contact_change("003B", "CREATE", {"LastName": "B"}))
    sub = Subscriber(rig.stub)
    await sub.fetch(1, CONTACT_TOPIC, pb.EARLIEST)
    [first] = await sub.events(1)
    sub.close()

    rig.clock.now += 3601  # both events age out of the one-hour window
    rig.bus.publish(contact_change("003C", "CREATE", {"LastName": "C"}))

    stale = Subscriber(rig.stub)
    await stale.fetch(10, CONTACT_TOPIC, pb.CUSTOM, first.replay_id)
    error = await stale.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(error) == ERROR_REPLAY_CORRUPTED
    assert dict(error.trailing_metadata() or ()).get("rpc-id")

    garbage = Subscriber(rig.stub)
    await garbage.fetch(10, CONTACT_TOPIC, pb.CUSTOM, b"\xff" * 8)  # never handed out
    assert error_code(await garbage.error()) == ERROR_REPLAY_CORRUPTED

    earliest = Subscriber(rig.stub)
    await earliest.fetch(10, CONTACT_TOPIC, pb.EARLIEST)
    [only] = await earliest.events(1)
    assert (await earliest.decode(only))[0]["ChangeEventHeader"]["recordIds"] == ["003C"]
    earliest.close()


async def test_bad_or_revoked_token_is_unauthenticated(rig: Rig) -> None:
    sub = Subscriber(rig.stub, token="expired-token")
    await sub.fetch(10, CONTACT_TOPIC, pb.EARLIEST)
    error = await sub.error()
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_code(error) == ERROR_AUTH

    for md in (metadata(token=""), metadata(tenant="00D999999999999AAA")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await rig.stub.GetTopic(pb.TopicRequest(topic_name=CONTACT_TOPIC), metadata=md)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_code(caught.value) == ERROR_AUTH

    live = Subscriber(rig.stub)
    await live.fetch(1, CONTACT_TOPIC, pb.EARLIEST)
    await live.response(timeout=IDLE_TIMEOUT)
    rig.valid_tokens.clear()  # the session is revoked while the stream is open
    await live.fetch(1)
    error = await live.error()
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_code(error) == ERROR_AUTH


async def test_injected_faults_map_to_grpc_statuses(rig: Rig) -> None:
    rig.faults.go_down(30)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rig.stub.GetTopic(pb.TopicRequest(topic_name=CONTACT_TOPIC), metadata=metadata())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_code(caught.value) == ERROR_UNAVAILABLE
    sub = Subscriber(rig.stub)
    await sub.fetch(10, CONTACT_TOPIC, pb.EARLIEST)
    error = await sub.error()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_code(error) == ERROR_UNAVAILABLE
    rig.faults.reset()

    # a downtime window that starts while a subscription is open ends it
    live = Subscriber(rig.stub)
    await live.fetch(10, CONTACT_TOPIC, pb.EARLIEST)
    await live.response(timeout=IDLE_TIMEOUT)
    rig.faults.go_down(30)
    error = await live.error()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    rig.faults.reset()

    for kind, code in (("limit", ERROR_DELIVERY_LIMIT), ("429", ERROR_CONCURRENT_LIMIT),
                       ("503", ERROR_UNAVAILABLE)):
        rig.faults.configure(FaultConfig(error_rate=1.0, error_kinds=[kind], paths=["Subscribe"]))
        sub = Subscriber(rig.stub)
        await sub.fetch(10, CONTACT_TOPIC, pb.EARLIEST)
        error = await sub.error()
        expected = grpc.StatusCode.UNAVAILABLE if kind == "503" else grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.code() == expected
        assert error_code(error) == code
        # paths limit the faults: GetTopic still works
        await rig.stub.GetTopic(pb.TopicRequest(topic_name=CONTACT_TOPIC), metadata=metadata())
    assert rig.faults.injected["limit"] >= 1 and rig.faults.injected["429"] >= 1
    rig.faults.reset()

    # a fault on a later FetchRequest ends an open subscription the same way
    live = Subscriber(rig.stub)
    await live.fetch(1, CONTACT_TOPIC, pb.EARLIEST)
    await live.response(timeout=IDLE_TIMEOUT)
    rig.faults.configure(FaultConfig(error_rate=1.0, error_kinds=["503"]))
    await live.fetch(1)
    error = await live.error()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_code(error) == ERROR_UNAVAILABLE


async def test_admin_routes_inject_gaps_and_expire_replay_ids(rig: Rig) -> None:
    app = web.Application()
    app.add_routes(admin_routes(rig.bus))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}/__admin/cdc"
    try:
        rig.bus.publish(contact_change("003A", "CREATE", {"LastName": "A"}))
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/gap", json={"entity": "Contact", "record_ids": ["003Z"],
                                                      "change_type": "GAP_DELETE"}) as answer:
                assert answer.status == 200
                gap_replay = bytes.fromhex((await answer.json())["replay_id"])
            async with http.post(base + "/overflow", json={"entity": "Contact"}) as answer:
                assert answer.status == 200
            async with http.post(base + "/gap", json={"entity": "Contact", "record_ids": [],
                                                      "change_type": "GAP_DELETE"}) as answer:
                assert answer.status == 400
            async with http.put(base + "/retention", json={"seconds": -1}) as answer:
                assert answer.status == 400

            sub = Subscriber(rig.stub)
            await sub.fetch(10, CONTACT_TOPIC, pb.EARLIEST)
            events = await sub.events(3)
            headers = [(await sub.decode(e))[0]["ChangeEventHeader"] for e in events]
            assert [h["changeType"] for h in headers] == ["CREATE", "GAP_DELETE", "GAP_OVERFLOW"]
            assert events[1].replay_id == gap_replay
            sub.close()

            async with http.post(base + "/expire") as answer:
                assert answer.status == 200
                assert (await answer.json())["retained"] == 0
            async with http.get(base) as answer:
                state = await answer.json()
                assert CONTACT_TOPIC in state["topics"] and state["counters"]["GAP_DELETE"] == 1

        stale = Subscriber(rig.stub)
        await stale.fetch(10, CONTACT_TOPIC, pb.CUSTOM, events[0].replay_id)
        assert error_code(await stale.error()) == ERROR_REPLAY_CORRUPTED
        latest = Subscriber(rig.stub)  # the newest replay id is still a valid place to resume
        await latest.fetch(10, CONTACT_TOPIC, pb.CUSTOM, events[-1].replay_id)
        idle = await latest.response(timeout=IDLE_TIMEOUT)
        assert len(idle.events) == 0
        latest.close()
    finally:
        await runner.cleanup()


async def test_schemas_follow_the_org_describe() -> None:
    """With the simulated org's describe, the bus carries the org's own fields, folds name and
    address parts into compounds, and a field added later yields a new schema id."""
    org = Org()
    bus = EventBus(["Lead", "Contact"], describe=org.describe)
    contact = dict(bus.fields_of("Contact"))
    assert contact["Name"] == "name" and contact["MailingAddress"] == "address"
    assert "FirstName" not in contact and "MailingStreet" not in contact
    assert "Id" not in contact and "IsDeleted" not in contact and "SystemModstamp" not in contact
    assert contact["TIMS_Credit_Limit__c"] == "double" and contact["LastModifiedDate"] == "datetime"
    assert dict(bus.fields_of("Lead"))["Address"] == "address"
    assert "/data/LeadChangeEvent" in bus.topics() and "/data/AccountChangeEvent" not in bus.topics()

    before = bus.schema_id_of("Contact")
    org.add_field("Contact", FieldDef("Loyalty_Tier__c", "string"))
    bus.publish(contact_change("003A", "UPDATE", {"Loyalty_Tier__c": "Gold", "MailingCity": "Leeds"},
                               changed_fields=("Loyalty_Tier__c", "MailingCity")))
    after = bus.schema_id_of("Contact")
    assert after != before
    assert bus.schema_json_by_id(before) is not None  # old events stay decodable
    [event] = bus.events()
    schema = bus.schema_of("Contact")
    record = schemaless_reader(io.BytesIO(event.payload), parse_schema(schema))
    assert record["Loyalty_Tier__c"] == "Gold" and record["MailingAddress"]["City"] == "Leeds"
    assert set(decode_bitmap(schema, record["ChangeEventHeader"]["changedFields"])) == {
        "Loyalty_Tier__c", "MailingAddress.City",
    }

    bus.publish(RecordChange("Account", "001A", "CREATE", {"Name": "Acme"}))  # registered on first use
    assert bus.topic_entities("/data/AccountChangeEvent") == frozenset({"Account"})
    bus.publish(RecordChange("NoSuchThing", "a01A", "CREATE", {"Name": "x"}))  # unknown: not published
    assert bus.counters["ignored:NoSuchThing"] == 1

"""Change events → SourceEvents: decoding, bitmaps, compound fields, one event per record, stable
ids, and a typed error with a reason for anything malformed. Events are produced by the
sandbox's event bus and by hand with fastavro, never by the code under test."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from connectors.salesforce.bitmaps import encode_bitmap
from connectors.salesforce.cdc import (
    ChangeSchema,
    MalformedEvent,
    change_events,
    channel_for,
    decode_change,
    format_datetime,
    gap_delete_event,
    parse_datetime_ms,
    snapshot_event,
    soql_datetime,
)
from sandbox.salesforce.avro_schemas import build_record, change_event_schema, schema_id, schema_json
from sandbox.salesforce.changes import RecordChange
from sandbox.salesforce.eventbus import DEFAULT_ENTITY_FIELDS, EventBus, StoredEvent

CHANNEL = "/data/ContactChangeEvent"
COMMIT_MS = 1_717_000_000_123
REPLAY = (42).to_bytes(8, "big")


def schema_for(entity: str) -> ChangeSchema:
    schema = change_event_schema(entity, DEFAULT_ENTITY_FIELDS[entity])
    return ChangeSchema.from_json(schema_id(schema), schema_json(schema))


def header(**overrides: Any) -> dict[str, Any]:
    base = {
        "entityName": "Contact", "recordIds": ["003000000000001AAA"], "changeType": "UPDATE",
        "changeOrigin": "com/salesforce/api/rest/62.0;client=tims-connect", "transactionKey": "tx-1",
        "sequenceNumber": 3, "commitTimestamp": COMMIT_MS, "commitNumber": 99, "commitUser": "005000000000001AAA",
        "nulledFields": [], "diffFields": [], "changedFields": [],
    }
    return {**base, **overrides}


def encode(entity: str, head: dict[str, Any], values: dict[str, Any], include: Any = None) -> bytes:
    schema = change_event_schema(entity, DEFAULT_ENTITY_FIELDS[entity])
    buffer = io.BytesIO()
    record = {"ChangeEventHeader": head, **build_record(DEFAULT_ENTITY_FIELDS[entity], values, include)}
    schemaless_writer(buffer, parse_schema(schema), record)
    return buffer.getvalue()


def bus_event(bus: EventBus, change: RecordChange) -> StoredEvent:
    bus.publish(change)
    return bus.events()[-1]


def decode_stored(bus: EventBus, event: StoredEvent, known: Any = None):  # type: ignore[no-untyped-def]
    schema = ChangeSchema.from_json(event.schema_id, bus.schema_json_by_id(event.schema_id) or "")
    return decode_change(event.payload, schema, event.replay_id, known)


def test_create_decodes_every_field_flattened_with_rest_style_dates() -> None:
    bus = EventBus(["Contact"])
    event = bus_event(bus, RecordChange(
        "Contact", "003000000000001AAA", "CREATE",
        {"FirstName": "Jane", "LastName": "Doe", "Email": "jane@example.com", "MailingCity": "Leeds",
         "MailingPostalCode": "LS1", "LastModifiedDate": "2024-05-29T16:26:40.123+0000", "pi__score__c": 42},
        change_origin="", commit_user="005000000000001AAA", commit_timestamp=COMMIT_MS, transaction_key="tx-c",
    ))
    change = decode_stored(bus, event)
    assert change.change_type == "CREATE" and change.entity == "Contact"
    [out] = change_events(change, CHANNEL)
    assert out.full_state and out.change_type == "CREATE"
    assert out.fields["FirstName"] == "Jane" and out.fields["LastName"] == "Doe"
    assert out.fields["MailingCity"] == "Leeds" and out.fields["MailingPostalCode"] == "LS1"
    assert out.fields["MailingStreet"] is None
    assert out.fields["LastModifiedDate"] == "2024-05-29T16:26:40.123+0000"
    assert out.fields["pi__score__c"] == 42.0
    assert "Name" not in out.fields and "MailingAddress" not in out.fields
    assert out.event_id == "sf:tx-c:1:003000000000001AAA"
    assert out.commit_timestamp == COMMIT_MS and out.commit_user == "005000000000001AAA"
    assert out.change_origin is None  # a UI change has no origin
    assert out.position == {"channel": CHANNEL, "replay_id": event.replay_id.hex()}


def test_update_bitmaps_become_flat_names_and_only_changed_values_travel() -> None:
    bus = EventBus(["Contact"])
    event = bus_event(bus, RecordChange(
        "Contact", "003000000000001AAA", "UPDATE", {"Email": "new@example.com", "MailingCity": "York", "Phone": None},
        changed_fields=("Email", "MailingCity", "Phone"), nulled_fields=("Phone",),
        change_origin="com/salesforce/api/rest/62.0;client=tims-connect", commit_timestamp=COMMIT_MS,
        transaction_key="tx-u",
    ))
    change = decode_stored(bus, event)
    assert set(change.changed_fields) == {"Email", "MailingCity", "Phone"}
    assert change.nulled_fields == ("Phone",)
    [out] = change_events(change, CHANNEL)
    assert not out.full_state
    assert out.fields == {"Email": "new@example.com", "MailingCity": "York", "Phone": None}
    assert set(out.changed_fields) == {"Email", "MailingCity", "Phone"} and out.nulled_fields == ["Phone"]
    assert out.change_origin == "com/salesforce/api/rest/62.0;client=tims-connect"


def test_an_update_that_only_blanks_fields_carries_them_as_none() -> None:
    schema = schema_for("Contact")
    nulled = encode_bitmap(schema.schema, ["Phone", "MailingAddress.City"])
    change = decode_change(encode("Contact", header(nulledFields=nulled), {}), schema, REPLAY)
    assert change.changed_fields == () and change.nulled_fields == ("Phone", "MailingCity")
    [out] = change_events(change, CHANNEL)
    assert out.fields == {"Phone": None, "MailingCity": None}
    assert out.nulled_fields == ["Phone", "MailingCity"] and set(out.changed_fields) == {"Phone", "MailingCity"}


def test_without_changed_fields_values_travel_beside_the_nulled_fields() -> None:
    schema = schema_for("Contact")
    payload = encode("Contact", header(nulledFields=encode_bitmap(schema.schema, ["Phone"])),
                     {"Email": "new@example.com"})
    [out] = change_events(decode_change(payload, schema, REPLAY), CHANNEL)
    assert out.fields == {"Email": "new@example.com", "Phone": None} and out.nulled_fields == ["Phone"]


def test_a_nulled_field_missing_from_changed_fields_still_travels_as_none() -> None:
    schema = schema_for("Contact")
    payload = encode("Contact", header(changedFields=encode_bitmap(schema.schema, ["Email"]),
                                       nulledFields=encode_bitmap(schema.schema, ["Phone"])),
                     {"Email": "new@example.com"})
    [out] = change_events(decode_change(payload, schema, REPLAY), CHANNEL)
    assert out.fields == {"Email": "new@example.com", "Phone": None} and out.nulled_fields == ["Phone"]
    assert set(out.changed_fields) == {"Email", "Phone"}


def test_compound_named_alone_stands_for_all_its_parts_and_name_parts_keep_their_names() -> None:
    schema = schema_for("Account")
    changed = encode_bitmap(schema.schema, ["Name", "ShippingAddress", "BillingAddress.City"])
    payload = encode("Account", header(entityName="Account", recordIds=["001000000000001AAA"], changedFields=changed),
                     {"Name": "Acme", "ShippingCity": "Hull", "BillingCity": "Leeds"})
    change = decode_change(payload, schema, REPLAY)
    assert change.changed_fields == ("Name", "ShippingStreet", "ShippingCity", "ShippingState",
                                     "ShippingPostalCode", "ShippingCountry", "BillingCity")
    lead = schema_for("Lead")
    assert {"Salutation", "FirstName", "LastName", "Street", "City", "PostalCode"} <= set(lead.flat_field_names())
    assert "Name" not in lead.flat_field_names() and "Address" not in lead.flat_field_names()
    assert schema.entity == "Account" and lead.entity == "Lead"


def test_one_event_per_record_id_with_stable_distinct_ids() -> None:
    schema = schema_for("Contact")
    ids = ["003000000000001AAA", "003000000000002AAA", "003000000000003AAA"]
    payload = encode("Contact", header(recordIds=ids, changedFields=encode_bitmap(schema.schema, ["Title"])),
                     {"Title": "CEO"})
    first = change_events(decode_change(payload, schema, REPLAY), CHANNEL)
    again = change_events(decode_change(payload, schema, REPLAY), CHANNEL)
    assert [e.record_id for e in first] == ids
    assert [e.event_id for e in first] == [f"sf:tx-1:3:{i}" for i in ids]
    assert [e.event_id for e in again] == [e.event_id for e in first]
    assert all(e.fields == {"Title": "CEO"} for e in first)


def test_delete_carries_no_fields() -> None:
    schema = schema_for("Contact")
    [out] = change_events(decode_change(encode("Contact", header(changeType="DELETE"), {}), schema, REPLAY), CHANNEL)
    assert out.change_type == "DELETE" and out.fields == {} and not out.full_state


def test_gap_overflow_and_wildcard_are_classified_not_turned_into_events() -> None:
    schema = schema_for("Contact")
    gap = decode_change(encode("Contact", header(changeType="GAP_UPDATE"), {}), schema, REPLAY)
    assert gap.is_gap and not gap.is_overflow
    overflow = decode_change(encode("Contact", header(changeType="GAP_OVERFLOW", recordIds=[]), {}), schema, REPLAY)
    assert overflow.is_overflow and overflow.record_ids == ()
    wildcard = decode_change(encode("Contact", header(recordIds=["003*"]), {}), schema, REPLAY)
    assert wildcard.is_wildcard
    with pytest.raises(ValueError):
        change_events(gap, CHANNEL)
    [deleted] = [gap_delete_event(gap, "003000000000001AAA", CHANNEL)]
    assert deleted.change_type == "DELETE" and deleted.event_id == "sf:tx-1:3:003000000000001AAA"


def test_diff_fields_are_changed_but_carry_no_value() -> None:
    schema = schema_for("Task")
    diff = encode_bitmap(schema.schema, ["Description"])
    payload = encode("Task", header(entityName="Task", recordIds=["00T000000000001AAA"],
                                    changedFields=encode_bitmap(schema.schema, ["Description", "Status"]),
                                    diffFields=diff), {"Description": "@@ -1 +1 @@", "Status": "Done"})
    change = decode_change(payload, schema, REPLAY)
    assert change.diff_fields == ("Description",)
    [out] = change_events(change, "/data/TaskChangeEvent")
    assert out.fields == {"Status": "Done"} and "Description" in out.changed_fields


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x02\x0fnot avro at all", "bad Avro payload"),
        (None, "bytes left after the record"),
    ],
)
def test_bad_avro_is_malformed(payload: bytes | None, reason: str) -> None:
    schema = schema_for("Contact")
    if payload is None:
        payload = encode("Contact", header(), {}) + b"\x00\x01"
    with pytest.raises(MalformedEvent) as caught:
        decode_change(payload, schema, REPLAY)
    assert reason in caught.value.reason


def test_truncated_payload_is_malformed() -> None:
    schema = schema_for("Contact")
    payload = encode("Contact", header(), {"Email": "a@b.co"}, ["Email"])
    with pytest.raises(MalformedEvent, match="bad Avro payload"):
        decode_change(payload[: len(payload) // 2], schema, REPLAY)


def test_missing_header_fields_are_named() -> None:
    schema = schema_for("Contact")
    payload = encode("Contact", header(entityName="", transactionKey="", recordIds=[], commitTimestamp=0), {})
    with pytest.raises(MalformedEvent) as caught:
        decode_change(payload, schema, REPLAY)
    assert caught.value.reason == "missing header fields: entityName, transactionKey, commitTimestamp, recordIds"


def test_unknown_entity_is_malformed() -> None:
    schema = schema_for("Contact")
    with pytest.raises(MalformedEvent, match="unknown entity 'Bogus'"):
        decode_change(encode("Contact", header(entityName="Bogus"), {}), schema, REPLAY)
    lead = encode("Contact", header(entityName="Lead"), {})
    with pytest.raises(MalformedEvent, match="unknown entity 'Lead'"):
        decode_change(lead, schema, REPLAY, known_entities={"Contact"})


def test_bitmap_past_the_schema_is_malformed() -> None:
    schema = schema_for("Contact")
    with pytest.raises(MalformedEvent, match="bad field bitmap"):
        decode_change(encode("Contact", header(changedFields=["0x" + "F" * 40]), {}), schema, REPLAY)


@pytest.mark.parametrize("text", ["{not json", json.dumps({"type": "record", "name": "X", "fields": []}),
                                  json.dumps({"type": "record", "name": "X", "fields": [{"name": "a", "type": "int"}]})])
def test_unusable_schema_is_malformed(text: str) -> None:
    with pytest.raises(MalformedEvent, match="unusable schema s1"):
        ChangeSchema.from_json("s1", text)


def test_snapshot_events_from_rest_rows() -> None:
    row = {"Id": "003000000000001AAA", "FirstName": "Jane", "Email": "jane@example.com",
           "LastModifiedDate": "2024-05-29T16:26:40.123+0000", "LastModifiedById": "005000000000009AAA",
           "attributes": {"type": "Contact"}}
    out = snapshot_event("Contact", row, {"channel": CHANNEL}, fallback_timestamp=1)
    assert out.change_type == "SNAPSHOT" and out.full_state
    assert out.fields == {"FirstName": "Jane", "Email": "jane@example.com",
                          "LastModifiedDate": "2024-05-29T16:26:40.123+0000", "LastModifiedById": "005000000000009AAA"}
    assert out.commit_timestamp == 1_717_000_000_123 and out.commit_user == "005000000000009AAA"
    assert out.event_id == "sf:snapshot:Contact:003000000000001AAA:1717000000123"
    assert snapshot_event("Contact", dict(row), {}, 1).event_id == out.event_id
    gone = snapshot_event("Contact", {**row, "IsDeleted": True}, {}, 1)
    assert gone.change_type == "DELETE" and gone.fields == {}


def test_time_helpers_round_trip() -> None:
    assert format_datetime(COMMIT_MS) == "2024-05-29T16:26:40.123+0000"
    assert parse_datetime_ms("2024-05-29T16:26:40.123+0000") == COMMIT_MS
    assert parse_datetime_ms("2024-05-29T16:26:40.123Z") == COMMIT_MS
    assert soql_datetime(COMMIT_MS) == "2024-05-29T16:26:40Z"
    assert channel_for("Contact") == "/data/ContactChangeEvent"
    assert channel_for("Invoice__c") == "/data/Invoice__ChangeEvent"

"""Bitmap encoding and the change-event schema builder, checked against an independent reading
of Salesforce's documented bitmap format (bit i from the right = field i in schema order)."""

from __future__ import annotations

import io
import json

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from connectors.salesforce.bitmaps import BitmapError, bits_to_hex, decode_bitmap, encode_bitmap, hex_to_bits
from sandbox.salesforce.avro_schemas import (
    CHANGE_TYPES,
    build_record,
    change_event_schema,
    coerce_value,
    flat_field_paths,
    schema_id,
    schema_json,
    specs_from_describe,
)
from sandbox.salesforce.eventbus import DEFAULT_ENTITY_FIELDS

CONTACT = change_event_schema("Contact", DEFAULT_ENTITY_FIELDS["Contact"])
ACCOUNT = change_event_schema("Account", DEFAULT_ENTITY_FIELDS["Account"])


def _reference_decode(schema: dict, entry: str) -> list[str]:
    """Salesforce's recipe, written differently on purpose: binary string, reversed, index of '1'."""
    names = [f["name"] for f in schema["fields"]]
    binary = bin(int(entry[2:], 16))[2:][::-1]
    return [names[i] for i, bit in enumerate(binary) if bit == "1"]


def _position(schema: dict, name: str) -> int:
    return [f["name"] for f in schema["fields"]].index(name)


def test_hex_round_trip_and_documented_example() -> None:
    # the example from Salesforce's "Event Deserialization Considerations"
    assert hex_to_bits("0x650004E0") == [5, 6, 7, 10, 24, 26, 29, 30]
    assert bits_to_hex([5, 6, 7, 10, 24, 26, 29, 30]) == "0x650004E0"
    assert bits_to_hex([0]) == "0x01"
    assert bits_to_hex([4]) == "0x10"
    assert bits_to_hex([1, 2]) == "0x06"
    assert bits_to_hex([]) == "0x00"
    with pytest.raises(BitmapError):
        hex_to_bits("650004E0")
    with pytest.raises(BitmapError):
        hex_to_bits("0xZZ")


def test_encode_top_level_fields_matches_reference_reading() -> None:
    names = ["Email", "Phone", "LastModifiedDate", "TIMS_Credit_Limit__c"]
    entries = encode_bitmap(CONTACT, names)
    assert len(entries) == 1 and entries[0].startswith("0x")
    assert sorted(_reference_decode(CONTACT, entries[0])) == sorted(names)
    assert sorted(decode_bitmap(CONTACT, entries)) == sorted(names)
    # bit 0 is the header itself, never an entity field
    assert 0 not in hex_to_bits(entries[0])


def test_compound_children_get_a_positional_entry() -> None:
    names = ["Email", "MailingAddress.City", "MailingAddress.Street", "Name.LastName"]
    entries = encode_bitmap(CONTACT, names)
    mailing = _position(CONTACT, "MailingAddress")
    name = _position(CONTACT, "Name")
    assert entries[0] == bits_to_hex([_position(CONTACT, "Email")])
    assert f"{mailing}-0x03" in entries  # Street (bit 0) and City (bit 1)
    assert f"{name}-0x04" in entries  # Salutation, FirstName, LastName → bit 2
    assert sorted(decode_bitmap(CONTACT, entries)) == sorted(names)


def test_only_nested_changes_have_no_top_level_entry() -> None:
    entries = encode_bitmap(CONTACT, ["MailingAddress.PostalCode"])
    assert entries == [f"{_position(CONTACT, 'MailingAddress')}-0x08"]
    assert decode_bitmap(CONTACT, entries) == ["MailingAddress.PostalCode"]
    assert encode_bitmap(CONTACT, []) == []


def test_second_address_refers_to_the_named_type_and_still_decodes() -> None:
    shipping = next(f for f in ACCOUNT["fields"] if f["name"] == "ShippingAddress")
    assert shipping["type"] == ["null", "com.sforce.eventbus.Address"]
    entries = encode_bitmap(ACCOUNT, ["ShippingAddress.Country", "BillingAddress.Street"])
    assert decode_bitmap(ACCOUNT, entries) == ["BillingAddress.Street", "ShippingAddress.Country"]
    # and from the schema text, and from fastavro's parsed form
    assert decode_bitmap(schema_json(ACCOUNT), entries) == ["BillingAddress.Street", "ShippingAddress.Country"]
    assert decode_bitmap(parse_schema(ACCOUNT), entries) == ["BillingAddress.Street", "ShippingAddress.Country"]


def test_bad_names_and_bitmaps_are_refused() -> None:
    with pytest.raises(BitmapError):
        encode_bitmap(CONTACT, ["NoSuchField"])
    with pytest.raises(BitmapError):
        encode_bitmap(CONTACT, ["Email.Child"])
    with pytest.raises(BitmapError):
        encode_bitmap(CONTACT, ["MailingAddress.Planet"])
    with pytest.raises(BitmapError):
        decode_bitmap(CONTACT, [bits_to_hex([len(CONTACT["fields"]) + 3])])
    with pytest.raises(BitmapError):
        decode_bitmap(CONTACT, [f"{_position(CONTACT, 'Email')}-0x01"])  # Email is not compound
    assert decode_bitmap(CONTACT, ["Email"]) == ["Email"]  # names (CometD style) pass through


def test_schema_shape_follows_salesforce() -> None:
    header = CONTACT["fields"][0]
    assert header["name"] == "ChangeEventHeader"
    assert [f["name"] for f in header["type"]["fields"]] == [
        "entityName", "recordIds", "changeType", "changeOrigin", "transactionKey", "sequenceNumber",
        "commitTimestamp", "commitNumber", "commitUser", "nulledFields", "diffFields", "changedFields",
    ]
    change_type = header["type"]["fields"][2]["type"]
    assert change_type["type"] == "enum" and change_type["name"] == "ChangeType"
    assert "GAP_OVERFLOW" in change_type["symbols"] and tuple(change_type["symbols"]) == CHANGE_TYPES
    assert CONTACT["name"] == "ContactChangeEvent" and CONTACT["namespace"] == "com.sforce.eventbus"
    for field in CONTACT["fields"][1:]:
        assert field["type"][0] == "null" and field["default"] is None
    assert change_event_schema("Invoice__c", [("Amount__c", "double")])["name"] == "Invoice__ChangeEvent"
    parse_schema(CONTACT)  # valid Avro


def test_schema_id_is_stable_and_changes_with_fields() -> None:
    again = change_event_schema("Contact", list(DEFAULT_ENTITY_FIELDS["Contact"]))
    assert schema_id(again) == schema_id(CONTACT)
    fewer = change_event_schema("Contact", DEFAULT_ENTITY_FIELDS["Contact"][:-1])
    assert schema_id(fewer) != schema_id(CONTACT)
    assert json.loads(schema_json(CONTACT)) == CONTACT


def test_flat_names_map_into_compounds_and_values_round_trip() -> None:
    fields = DEFAULT_ENTITY_FIELDS["Lead"]
    paths = flat_field_paths(fields)
    assert paths["FirstName"] == ("Name", "FirstName")
    assert paths["Street"] == ("Address", "Street")
    assert paths["Email"] == ("Email", None)
    record = build_record(
        fields,
        {
            "FirstName": "Ada", "LastName": "Lovelace", "City": "London", "Email": "ada@example.com",
            "pi__score__c": 42, "IsConverted": "false", "ConvertedDate": "2024-03-01",
            "LastModifiedDate": "2024-03-01T10:00:00.000+0000", "Unknown__c": "dropped",
        },
    )
    assert record["Name"] == {"Salutation": None, "FirstName": "Ada", "LastName": "Lovelace"}
    assert record["Address"]["City"] == "London" and record["Address"]["Street"] is None
    assert record["pi__score__c"] == 42.0 and record["IsConverted"] is False
    assert record["ConvertedDate"] == 19783  # days since 1970-01-01
    assert record["LastModifiedDate"] == 1709287200000
    assert "Unknown__c" not in record
    lead = change_event_schema("Lead", fields)
    header = {
        "entityName": "Lead", "recordIds": ["00Q1"], "changeType": "CREATE", "changeOrigin": "",
        "transactionKey": "t", "sequenceNumber": 1, "commitTimestamp": 1, "commitNumber": 1,
        "commitUser": "005", "nulledFields": [], "diffFields": [], "changedFields": [],
    }
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(lead), {"ChangeEventHeader": header, **record})
    decoded = schemaless_reader(io.BytesIO(buffer.getvalue()), parse_schema(lead))
    assert decoded["Name"]["LastName"] == "Lovelace" and decoded["Email"] == "ada@example.com"


def test_coerce_values() -> None:
    assert coerce_value("datetime", "1970-01-01T00:00:01Z") == 1000
    assert coerce_value("datetime", 5) == 5
    assert coerce_value("date", "1970-01-11") == 10
    assert coerce_value("boolean", "TRUE") is True
    assert coerce_value("double", "2.5") == 2.5
    assert coerce_value("string", 7) == "7"
    assert coerce_value("string", None) is None


def test_specs_from_describe_folds_compound_parts() -> None:
    describe = [
        {"name": "Id", "type": "id"},
        {"name": "FirstName", "type": "string"},
        {"name": "LastName", "type": "string"},
        {"name": "Email", "type": "email"},
        {"name": "MailingStreet", "type": "textarea"},
        {"name": "MailingCity", "type": "string"},
        {"name": "MailingAddress", "type": "address"},
        {"name": "TIMS_Credit_Limit__c", "type": "currency"},
        {"name": "LastModifiedDate", "type": "datetime"},
        {"name": "IsDeleted", "type": "boolean"},
    ]
    assert specs_from_describe("Contact", describe) == [
        ("Name", "name"),
        ("Email", "string"),
        ("MailingAddress", "address"),
        ("TIMS_Credit_Limit__c", "double"),
        ("LastModifiedDate", "datetime"),
    ]

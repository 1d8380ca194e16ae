"""What counts as a malformed sink command (it goes to quarantine.sink with the reason)."""

from __future__ import annotations

import json

import pytest

from stream_app.sinks.engine import MalformedCommand, parse_command

GOOD = {"system": "salesforce", "object": "Contact", "external_id_field": "TIMS_Customer_ID__c",
        "external_id": "C-1", "fields": {"LastName": "Lovelace"}, "version": 3, "record_key": "ck-1"}
KEY = b"salesforce:Contact:C-1"


def test_a_good_command_parses_from_bytes() -> None:
    command = parse_command(json.dumps(GOOD).encode(), KEY, "salesforce", "Contact")
    assert command.version == 3 and command.partition_key == KEY.decode() and command.idempotency_key


@pytest.mark.parametrize(("raw", "key", "reason"), [
    (b"\xff\xfe", KEY, "not UTF-8"),
    (b"{not json", KEY, "not JSON"),
    (b"9" * 5000, KEY, "not JSON we read: ValueError"),
    (b"[" * 100_000 + b"]" * 100_000, KEY, "not JSON we read: RecursionError"),
    (b"[1, 2]", KEY, "expected a JSON object, got list"),
    (json.dumps({**GOOD, "version": -1}).encode(), KEY, "version"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "external_id"}).encode(), KEY, "external_id: Field required"),
    (json.dumps({**GOOD, "surprise": 1}).encode(), KEY, "surprise"),
    (json.dumps({**GOOD, "object": "Account"}).encode(), b"salesforce:Account:C-1", "salesforce.Account on the topic"),
    (json.dumps(GOOD).encode(), b"ck-1", "is not the command's partition_key"),
    (json.dumps(GOOD).encode(), None, "is not the command's partition_key"),
    (json.dumps({**GOOD, "fields": {"TIMS_Customer_ID__c": "C-2"}}).encode(), KEY, "differs from external_id"),
])
def test_malformed_commands_say_why(raw: bytes, key: bytes | None, reason: str) -> None:
    with pytest.raises(MalformedCommand) as caught:
        parse_command(raw, key, "salesforce", "Contact")
    assert reason in caught.value.reason

"""The customer sync's privacy tool finds a person by email, key or any system's record id, over
tables as their changelogs hold them (the console's customer 360 and `stream-app privacy export`)."""

from __future__ import annotations

import json

from topologies.customer_sync.privacy import INDEX, MASTER, CustomerSyncPrivacy

KEY = "5f0c6a52-0000-4000-8000-000000000001"
TABLES = {
    INDEX: {b"email:ada@analytical.example": KEY.encode(), b"salesforce:Contact:003A": KEY.encode(),
            b"pardot:prospect:1001": KEY.encode(), b"tims:customer:C000001": KEY.encode(),
            b"legacy:thing:X9": KEY.encode(), b"email:other@example.com": b"someone-else"},
    MASTER: {json.dumps(KEY).encode(): json.dumps({"key": KEY, "fields": {}, "seen": ["e1"]}).encode()},
}


async def read(name: str) -> dict[bytes, bytes]:
    return TABLES[name]


async def test_found_by_email_key_and_each_systems_id() -> None:
    tool = CustomerSyncPrivacy()
    for reference in (" Ada@Analytical.example ", "003A", "1001", "C000001", "legacy:thing:X9", KEY):
        assert await tool.find(read, reference) == KEY, reference
    assert await tool.find(read, "nobody@example.com") is None
    assert await tool.find(read, "not-an-email@") is None
    assert await tool.find(read, "003Z") is None and await tool.find(read, " ") is None


async def test_export_lists_every_identity_of_the_person() -> None:
    person = await CustomerSyncPrivacy().export(read, email="ada@analytical.example", customer=None)
    assert person is not None and person["customer_key"] == KEY
    assert person["identity_entries"] == sorted(["email:ada@analytical.example", "legacy:thing:X9",
                                                 "pardot:prospect:1001", "salesforce:Contact:003A",
                                                 "tims:customer:C000001"])
    assert person["golden_record"]["key"] == KEY and person["recent_event_ids"] == ["e1"]
    plain = {INDEX: TABLES[INDEX], MASTER: {KEY.encode(): TABLES[MASTER][json.dumps(KEY).encode()]}}

    async def read_plain(name: str) -> dict[bytes, bytes]:
        return plain[name]

    assert (await CustomerSyncPrivacy().export(read_plain, email=None, customer=KEY))["golden_record"]["key"] == KEY


async def test_a_table_indexed_by_value_answers_without_a_scan() -> None:
    from stream_app.console.people import IndexedTable

    index = IndexedTable()
    for key, value in TABLES[INDEX].items():
        index.put(key, value)
    index.put(b"legacy:thing:X9", b"someone-else")  # moved to another customer
    index.put(b"tims:customer:C000001", None)  # deleted
    assert sorted(index.keys_for(KEY.encode()) or []) == [b"email:ada@analytical.example", b"pardot:prospect:1001",
                                                          b"salesforce:Contact:003A"]
    assert index.keys_for(b"x" * 100) is None

    async def read_indexed(name: str) -> dict[bytes, bytes]:
        return index if name == INDEX else TABLES[MASTER]

    person = await CustomerSyncPrivacy().export(read_indexed, email=None, customer=KEY)
    assert person is not None and "legacy:thing:X9" not in person["identity_entries"]
    assert len(person["identity_entries"]) == 3

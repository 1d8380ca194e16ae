"""The customer sync's part of ``stream-app privacy export``: one person as its tables hold them.

The person is found by customer key, or by email through the identity index (``email:<address>``
→ customer key, normalised as the flow normalises emails). The export is the golden record (every
field with the system and time it came from, the links to each system's record, what the flow
believes each target holds), every identity entry that leads to the customer (their references
in Salesforce, Pardot and TIMS, and their emails), and the ids of the recent events folded into
the record (its dedupe window). The events themselves stay in the source topics.
"""

from __future__ import annotations

import json
from typing import Any

from topologies.customer_sync.golden import LINK_OF
from topologies.customer_sync.identity import normalize_email
from topologies.flow import ReadTable

__all__ = ["CustomerSyncPrivacy"]

INDEX = "customer_sync_identity"
MASTER = "customer_master"


def _table_key(raw: bytes) -> str:
    """A table key as the app wrote it: JSON text, or plain text."""
    if raw.startswith(b'"'):
        try:
            return str(json.loads(raw))
        except ValueError:
            pass
    return raw.decode(errors="replace")


def _raw_record(master: dict[bytes, bytes], key: str) -> bytes | None:
    """The golden record stored under ``key``: looked up as the app writes keys (JSON text or
    plain), else found by decoding every key (a key written some other way)."""
    for raw_key in (json.dumps(key).encode(), key.encode()):
        if raw_key in master:
            return master[raw_key]
    return next((value for raw, value in master.items() if _table_key(raw) == key), None)


class CustomerSyncPrivacy:
    async def find(self, read_table: ReadTable, reference: str) -> str | None:
        """The customer key behind an email, a customer key or any system's record id (a
        Salesforce Lead/Contact/Account id, a Pardot prospect id, a TIMS customer id)."""
        reference = reference.strip()
        if not reference:
            return None
        raw_index = await read_table(INDEX)
        if "@" in reference:
            address = normalize_email(reference)
            owner = raw_index.get(f"email:{address}".encode()) if address else None
            return owner.decode(errors="replace") if owner is not None else None
        # every reference in the index is <system>:<entity>:<id> of an entity with a link (identity.py):
        # one lookup each, and a reference typed in full is looked up as it is
        for candidate in (reference, *(f"{system}:{entity}:{reference}" for system, entity in LINK_OF)):
            owner = raw_index.get(candidate.encode())
            if owner is not None:
                return owner.decode(errors="replace")
        master = await read_table(MASTER)
        if json.dumps(reference).encode() in master or reference.encode() in master:
            return reference
        return None

    async def export(self, read_table: ReadTable, *, email: str | None, customer: str | None) -> dict[str, Any] | None:
        raw_index = await read_table(INDEX)
        key = customer
        if key is None:
            address = normalize_email(email)
            owner = raw_index.get(f"email:{address}".encode()) if address else None
            key = owner.decode(errors="replace") if owner is not None else None
        if key is None:
            return None
        raw_record = _raw_record(await read_table(MASTER), key)
        owner_bytes = key.encode()
        # a reader that indexes values back to keys (the console's) answers without a scan
        keys_for = getattr(raw_index, "keys_for", None)
        found = keys_for(owner_bytes) if keys_for is not None else None
        if found is None:
            found = [entry for entry, owner in raw_index.items() if owner == owner_bytes]
        entries = sorted(entry.decode(errors="replace") for entry in found)
        if raw_record is None and not entries:
            return None
        record = json.loads(raw_record) if raw_record is not None else None
        return {
            "customer_key": key,
            "identity_entries": entries,
            "golden_record": record,
            "recent_event_ids": list((record or {}).get("seen", [])),
        }

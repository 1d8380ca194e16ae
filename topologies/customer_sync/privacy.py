"""The customer sync's part of ``stream-app privacy``: export one person, or plan their erasure.

The person is found by customer key, or by email through the identity index (``email:<address>``
→ customer key, normalised as the flow normalises emails). The export is the golden record (every
field with the system and time it came from, the links to each system's record, what the flow
believes each target holds), every identity entry that leads to the customer (their references
in Salesforce, Pardot and TIMS, and their emails), and the ids of the recent events folded into
the record (its dedupe window). The events themselves stay in the source topics.

The erasure plan (docs/adr/0034) is what the app then carries out: a sink command per linked
record, by the policy (``privacy_policy.yaml``: delete, anonymise or keep per target), at a
version no earlier command can beat; the entries of the lasting ``erased`` map, which make the
flow drop every later event of the person (by customer key, by each system reference, by the
SHA-256 of each email: no email is kept in clear); the identity entries to forget; and the
messages that make the worker delete the golden record and what waits under the person's
references.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from connectors.envelope import SinkCommand
from topologies.customer_sync.golden import LINK_OF
from topologies.customer_sync.identity import normalize_email
from topologies.flow import ReadTable
from topologies.mapping_file import load_model

__all__ = ["CustomerSyncPrivacy", "ErasePolicy", "ErasePlan", "erased_email", "ERASE_VERSION", "DEFAULT_POLICY"]

INDEX = "customer_sync_identity"
MASTER = "customer_master"
DEFAULT_POLICY = Path(__file__).with_name("privacy_policy.yaml")
#: the version of an erasure's commands: above any the golden record reaches, so the sinks'
#: version guard keeps every earlier command from writing the person back
ERASE_VERSION = 2**53
#: where each of the golden record's links points, and the field its records are written by
TARGETS = {"salesforce_lead": ("salesforce", "Lead", "Id"), "salesforce_contact": ("salesforce", "Contact", "Id"),
           "pardot_prospect": ("pardot", "prospect", "id"), "tims_customer": ("tims", "customer", "customer_id"),
           "salesforce_account": ("salesforce", "Account", "Id")}


def erased_email(email: str) -> str:
    """The erased map's entry for an (already normalised) email: its SHA-256, never the address."""
    return "email:" + hashlib.sha256(email.encode()).hexdigest()


class ErasePolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: dict[str, Literal["delete", "anonymise", "keep"]]
    anonymise: dict[str, dict[str, Any]] = {}

    @field_validator("actions")
    @classmethod
    def _known(cls, value: dict[str, str]) -> dict[str, str]:
        known = {f"{system}.{sobject}" for system, sobject, _ in TARGETS.values()}
        for target in value:
            if target not in known:
                raise ValueError(f"actions: {target} is not one of {', '.join(sorted(known))}")
        return value

    def model_post_init(self, _: Any) -> None:
        for target, action in self.actions.items():
            if action == "anonymise" and not self.anonymise.get(target):
                raise ValueError(f"actions: {target} is anonymised, but anonymise.{target} names no field")


@dataclass
class ErasePlan:
    customer_key: str
    #: the sink commands that delete or anonymise the person's records
    commands: list[SinkCommand] = field(default_factory=list)
    #: the lasting ``erased`` map's new entries
    erased: dict[str, str] = field(default_factory=dict)
    #: identity index entries to forget (tombstones)
    forget: list[str] = field(default_factory=list)
    #: ``(stage topic without the prefix, key, value)`` for the worker
    messages: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    #: what is done, per target: ``{"salesforce.Contact": "anonymise 003…"}`` (ids, no personal data)
    actions: dict[str, str] = field(default_factory=dict)


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

    async def _find(self, read_table: ReadTable, email: str | None,
                    customer: str | None) -> tuple[str, list[str], dict[str, Any] | None] | None:
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
        return key, entries, json.loads(raw_record) if raw_record is not None else None

    async def export(self, read_table: ReadTable, *, email: str | None, customer: str | None) -> dict[str, Any] | None:
        found = await self._find(read_table, email, customer)
        if found is None:
            return None
        key, entries, record = found
        return {
            "customer_key": key,
            "identity_entries": entries,
            "golden_record": record,
            "recent_event_ids": list((record or {}).get("seen", [])),
        }

    async def erase_plan(self, read_table: ReadTable, *, email: str | None, customer: str | None,
                         policy_file: Path | None, erasure: str) -> ErasePlan | None:
        policy = load_model(policy_file or DEFAULT_POLICY, ErasePolicy)
        found = await self._find(read_table, email, customer)
        if found is None:
            return None
        key, entries, record = found
        plan = ErasePlan(customer_key=key)
        links = (record or {}).get("links", {})
        for link, (system, sobject, id_field) in TARGETS.items():
            target, record_id = f"{system}.{sobject}", links.get(link)
            action = policy.actions.get(target, "keep")
            if not record_id or action == "keep":
                continue
            fields = policy.anonymise[target] if action == "anonymise" else {}
            plan.commands.append(SinkCommand(
                system=system, object=sobject, operation="delete" if action == "delete" else "upsert",
                external_id_field=id_field, external_id=str(record_id), fields=fields, version=ERASE_VERSION,
                record_key=key, source_event_id=f"erase:{erasure}"))
            plan.actions[target] = f"{action} {record_id}"
        emails = {entry.removeprefix("email:") for entry in entries if entry.startswith("email:")}
        if email and normalize_email(email):
            emails.add(str(normalize_email(email)))
        current = ((record or {}).get("fields", {}).get("email") or {}).get("v")
        if current:
            emails.add(str(current))
        refs = [entry for entry in entries if not entry.startswith("email:")]
        plan.erased = {f"key:{key}": erasure, **{f"ref:{ref}": erasure for ref in refs},
                       **{erased_email(address): erasure for address in sorted(emails)}}
        plan.forget = entries
        plan.messages = [("customer_sync.merge", key, {"kind": "erase"}),
                         *(("customer_sync.identify", ref, {"kind": "erase"}) for ref in refs)]
        return plan

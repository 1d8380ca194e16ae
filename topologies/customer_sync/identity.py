"""Who is this record? Source references, cross-references and the customer key.

The customer key is deterministic: ``uuid5`` of the normalised email of the first record that
introduced the person. Two workers that meet the same new email at once (a Lead and its
converted Contact, a Pardot prospect, a TIMS customer) mint the same key, so no race can make
two customers. Once a record is linked (the identity index, docs/adr/0019), the link wins over
its current email, so an email change does not split the customer.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Iterable

from connectors.envelope import SourceEvent

__all__ = ["MAX_EMAIL_LENGTH", "normalize_email", "source_ref", "crossrefs", "company_refs", "mint_key", "ref_of", "KEY_NAMESPACE"]

KEY_NAMESPACE = uuid.UUID("6f1c2a9e-4d3b-5c8a-9e7f-2b1d0c3a4e5f")
#: The longest email address SMTP can carry (RFC 5321 path limit less the angle brackets).
MAX_EMAIL_LENGTH = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(value: Any) -> str | None:
    """Trimmed, lower-cased email, or None when it is not an email at all. The length is checked
    before the pattern, which backtracks quadratically on long dotted input."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH:
        return None
    return email if _EMAIL.match(email) else None


def ref_of(system: str, entity: str, record_id: str) -> str:
    return f"{system}:{entity}:{record_id}"


def source_ref(event: SourceEvent) -> str:
    return ref_of(event.source, event.entity, event.record_id)


def mint_key(email: str) -> str:
    return str(uuid.uuid5(KEY_NAMESPACE, email))


#: Fields naming the same *person* in another system: identity may follow them.
_PERSON_REFS: dict[tuple[str, str], tuple[tuple[str, str, str], ...]] = {
    ("salesforce", "Lead"): (("ConvertedContactId", "salesforce", "Contact"),),
    ("salesforce", "Contact"): (("TIMS_Customer_ID__c", "tims", "customer"),),
    ("pardot", "prospect"): (("salesforceContactId", "salesforce", "Contact"),
                             ("salesforceLeadId", "salesforce", "Lead")),
    ("tims", "customer"): (("external_id", "salesforce", "*"),),
}
#: Fields naming the person's company: linked to the customer that first named it, never used to
#: identify a person (many contacts share one account).
_COMPANY_REFS: dict[tuple[str, str], tuple[tuple[str, str, str], ...]] = {
    ("salesforce", "Lead"): (("ConvertedAccountId", "salesforce", "Account"),),
    ("salesforce", "Contact"): (("AccountId", "salesforce", "Account"),),
    ("pardot", "prospect"): (("salesforceAccountId", "salesforce", "Account"),),
}
_SF_PREFIX = {"00Q": "Lead", "003": "Contact", "001": "Account"}


def _refs(table: dict, event: SourceEvent, fields: dict[str, Any] | None) -> list[str]:
    values = event.fields if fields is None else fields
    refs: list[str] = []
    for field, system, entity in table.get((event.source, event.entity), ()):
        value = values.get(field)
        if not isinstance(value, str) or not value.strip():
            continue
        value = value.strip()
        if entity == "*":
            entity = _SF_PREFIX.get(value[:3], "")
            if not entity:
                continue
        refs.append(ref_of(system, entity, value))
    return refs


def crossrefs(event: SourceEvent, fields: dict[str, Any] | None = None) -> list[str]:
    """References to the same person in other systems, from the event's own fields."""
    return _refs(_PERSON_REFS, event, fields)


def company_refs(event: SourceEvent, fields: dict[str, Any] | None = None) -> list[str]:
    """References to the person's company (Salesforce Account)."""
    return _refs(_COMPANY_REFS, event, fields)


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))

"""A person as the matcher sees it: each role normalised once, so comparisons stay cheap.

Normalising removes the differences that carry no identity (case, accents, punctuation, "St" vs
"Street", "Inc", a phone's country code, a ZIP+4 suffix, date formats); what is left differs
only where the people, or typos, differ.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Mapping

from quality.matching.tables import abbreviations

__all__ = ["ROLES", "Person", "person_from", "swapped", "fold"]

#: every role a record may fill (any subset); ``id`` identifies the record and is never compared
ROLES = ("id", "first_name", "last_name", "email", "phone", "company", "street", "street2", "city",
         "postcode", "state", "country", "birth_date")
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d", "%d %b %Y", "%b %d %Y", "%B %d %Y")
_NON_WORD = re.compile(r"[^a-z0-9 ]+")


@dataclass(frozen=True)
class Person:
    """Normalised roles; None where the record has no usable value."""

    id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    street: str | None = None
    street2: str | None = None
    city: str | None = None
    postcode: str | None = None
    state: str | None = None
    country: str | None = None
    birth_date: str | None = None


def fold(value: Any) -> str | None:
    """Lower case ASCII words separated by one space; None when nothing is left."""
    if value is None:
        return None
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode().lower()
    text = " ".join(_NON_WORD.sub(" ", text.replace("'", "")).split())
    return text or None


def _words(value: Any, kind: str) -> str | None:
    text = fold(value.replace("&", " and ") if isinstance(value, str) else value)
    if text is None:
        return None
    table = abbreviations(kind)
    kept = " ".join(w for w in (table.get(word, word) for word in text.split()) if w)
    return kept or None


def _phone(value: Any) -> str | None:
    """The national number's digits (the last ten: a "+1" or "001" prefix carries no identity)."""
    digits = re.sub(r"\D", "", str(value)) if value is not None else ""
    if digits.startswith("00"):
        digits = digits[2:]
    return digits[-10:] if len(digits) >= 7 else None


def _postcode(value: Any) -> str | None:
    code = re.sub(r"[^0-9A-Za-z]", "", str(value)).upper() if value is not None else ""
    if len(code) == 9 and code.isdigit():  # ZIP+4
        code = code[:5]
    return code or None


def _birth_date(value: Any) -> str | None:
    if isinstance(value, (date, datetime)):
        return value.strftime("%Y-%m-%d")
    text = str(value).strip() if value is not None else ""
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).strftime("%Y-%m-%d")
        except ValueError:
            continue
    return None


def _email(value: Any) -> str | None:
    text = str(value).strip().lower() if value is not None else ""
    return text if "@" in text else None


def _coded(value: Any, kind: str) -> str | None:
    text = fold(value)
    return abbreviations(kind).get(text, text) if text else None


def _name(value: Any) -> str | None:
    return fold(value)


_NORMALISERS = {
    "first_name": _name, "last_name": _name, "email": _email, "phone": _phone,
    "company": lambda v: _words(v, "company"), "street": lambda v: _words(v, "street"),
    "street2": lambda v: _words(v, "street"), "city": fold, "postcode": _postcode,
    "state": lambda v: _coded(v, "states"), "country": lambda v: _coded(v, "countries"),
    "birth_date": _birth_date,
}


def person_from(record_id: Any, roles: Mapping[str, Any]) -> Person:
    """A Person from raw role values (blank strings count as missing)."""
    values = {}
    for role, raw in roles.items():
        if role == "id" or raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        values[role] = _NORMALISERS[role](raw)
    return Person(id=str(record_id), **values)


def swapped(person: Person) -> Person:
    """The same person with first and last name exchanged (forms filled in the wrong boxes)."""
    return replace(person, first_name=person.last_name, last_name=person.first_name)

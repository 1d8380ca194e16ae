"""Masking for log lines that carry record values: people's emails and phone numbers stay out of
logs (they are personal data, and logs travel further than topics do).

``redact_fields`` masks by field name (``Email``, ``MobilePhone``, ``pi__email__c``...) and, for
any other string, by shape, so an email typed into a free-text field is masked too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["mask_email", "mask_phone", "redact_fields", "redact_text"]

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
#: a candidate phone: digits with the separators phone numbers are written with, standing alone
#: (not inside a word or an id); :func:`_is_phone` decides
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d \t().-]{5,}\d(?!\w)")
#: shapes the phone pattern also matches but which are not phones: dates and IPv4 addresses
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,3}(\.\d{1,3}){3}\b")
_DIGIT_GROUP = re.compile(r"\d+")
_EMAIL_FIELD = re.compile(r"e-?mail", re.IGNORECASE)
_PHONE_FIELD = re.compile(r"phone|fax|mobile", re.IGNORECASE)


def mask_email(value: str) -> str:
    """``jane.doe@example.com`` → ``j***@example.com`` (the domain helps when debugging)."""
    local, at, domain = value.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str) -> str:
    """``+44 20 7946 0018`` → ``***18``."""
    digits = re.sub(r"\D", "", value)
    return f"***{digits[-2:]}" if len(digits) > 2 else "***"


def _is_phone(candidate: str) -> bool:
    """A phone number as people write one: 7 to 15 digits (E.164's most), and either an
    international ``+`` or digit groups split by spaces, dashes or parentheses (or three groups
    or more split by dots). A bare run of digits is an id, an offset, a timestamp or a replay
    id, and a number with one dot a decimal: those stay readable."""
    digits = sum(len(group) for group in _DIGIT_GROUP.findall(candidate))
    if not 7 <= digits <= 15 or _DATE.match(candidate):
        return False
    if candidate.startswith("+"):
        return True
    groups = len(_DIGIT_GROUP.findall(candidate))
    separators = set(_DIGIT_GROUP.sub("", candidate))
    return groups >= 3 if separators <= {"."} else groups >= 2


def redact_text(text: str) -> str:
    """Mask every email and phone number inside free text (:func:`_is_phone`)."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)) if _is_phone(m.group(0)) else m.group(0), text)


def redact_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``fields`` that is safe to log."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, Mapping):
            out[name] = redact_fields(value)
        elif not isinstance(value, str):
            out[name] = value
        elif _EMAIL_FIELD.search(name):
            out[name] = mask_email(value)
        elif _PHONE_FIELD.search(name):
            out[name] = mask_phone(value)
        else:
            out[name] = redact_text(value)
    return out

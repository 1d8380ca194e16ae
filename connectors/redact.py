"""Masking for log lines that carry record values: people's emails and phone numbers stay out of
logs (they are personal data, and logs travel further than topics do).

``redact_fields`` masks by field name (``Email``, ``MobilePhone``, ``pi__email__c``...) and, for
any other string, by shape, so an email typed into a free-text field is masked too.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

__all__ = ["mask_email", "mask_phone", "redact_fields", "redact_text"]

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")
#: shapes the phone pattern also matches but which are not phones: dates and IPv4 addresses
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,3}(\.\d{1,3}){3}\b")
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


def redact_text(text: str) -> str:
    """Mask every email and phone-like number inside free text."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(lambda m: m.group(0) if _DATE.match(m.group(0)) else mask_phone(m.group(0)), text)


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

"""Cleansing before any write: trim, case, numbers, phones, grades.

A cleanser returns the cleaned value or raises :class:`Uncleanable` with a reason; the caller
sends what cannot be fixed to ``quarantine.<flow>``. Each cleanser refuses input longer than
its kind can be before any regular expression sees it, so a hostile oversized field costs
linear time (some patterns here backtrack quadratically on long input).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from topologies.customer_sync.identity import MAX_EMAIL_LENGTH, normalize_email

__all__ = ["Uncleanable", "CLEANSERS", "clean", "GRADES", "grade_rank", "MAX_LENGTHS"]

#: The longest trimmed input each kind accepts, in characters. Phone: E.164's 15 digits with
#: room for a "+", punctuation and an extension. Text: far above the 255 characters that the
#: mapped Salesforce, Pardot and TIMS fields hold.
MAX_LENGTHS = {"email": MAX_EMAIL_LENGTH, "phone": 64, "number": 64, "text": 10_000}


class Uncleanable(ValueError):
    """The value cannot be made valid; the message says why."""


GRADES = ("F", "D-", "D", "D+", "C-", "C", "C+", "B-", "B", "B+", "A-", "A", "A+")


def grade_rank(grade: str) -> int:
    return GRADES.index(grade)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _bounded(value: Any, kind: str) -> str | None:
    """The trimmed text of ``value`` (None when blank); Uncleanable when longer than ``kind`` allows."""
    if _blank(value):
        return None
    text = str(value).strip()
    if len(text) > MAX_LENGTHS[kind]:
        raise Uncleanable(f"{kind} value of {len(text)} characters (at most {MAX_LENGTHS[kind]})")
    return text


def _text(value: Any) -> str | None:
    text = _bounded(value, "text")
    return None if text is None else re.sub(r"\s+", " ", text)


def _name(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if text.isupper() or text.islower():
        text = " ".join(part[:1].upper() + part[1:].lower() for part in text.split(" "))
    return text


def _email(value: Any) -> str | None:
    text = _bounded(value, "email")
    if text is None:
        return None
    email = normalize_email(value)
    if email is None:
        raise Uncleanable(f"{str(value)[:3]}… is not an email address")
    return email


def _number(value: Any) -> float | None:
    """A finite float: infinities and NaN (``"1e999"``, ``"NaN"``) have no place in a target."""
    if isinstance(value, bool):
        raise Uncleanable("a boolean is not a number")
    try:
        number = float(value) if isinstance(value, (int, float)) else _parse_number(value)
    except OverflowError:
        raise Uncleanable("number too large") from None
    if number is not None and not math.isfinite(number):
        raise Uncleanable(f"{number} is not a finite number")
    return number


def _parse_number(value: Any) -> float | None:
    text = _bounded(value, "number")
    if text is None:
        return None
    text = text.replace(" ", "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    elif re.fullmatch(r"-?\d+,\d{1,2}", text):
        text = text.replace(",", ".")
    try:
        return float(Decimal(text.lstrip("$€£")))
    except (InvalidOperation, ValueError):  # ValueError: a signalling NaN
        raise Uncleanable(f"{text!r} is not a number") from None


def _phone(value: Any) -> str | None:
    """E.164-like: '+' and digits; 10 digits are taken as North American (+1)."""
    text = _bounded(value, "phone")
    if text is None:
        return None
    text = re.split(r"\s*(?:x|ext\.?)\s*\d+$", text, flags=re.I)[0]
    digits = re.sub(r"\D", "", text)
    if text.startswith("+"):
        result = "+" + digits
    elif len(digits) == 10:
        result = "+1" + digits
    elif len(digits) == 11 and digits.startswith("1"):
        result = "+" + digits
    elif text.startswith("00") and len(digits) > 8:
        result = "+" + digits[2:]
    else:
        raise Uncleanable(f"phone number with {len(digits)} digits and no country code")
    if not 8 <= len(result) - 1 <= 15:
        raise Uncleanable("phone number length is not plausible")
    return result


def _upper(value: Any) -> str | None:
    text = _text(value)
    return None if text is None else text.upper().replace(" ", "_")


def _grade(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    text = text.upper()
    if text not in GRADES:
        raise Uncleanable(f"{text[:10]!r} is not a Pardot grade (F to A+)")
    return text


CLEANSERS: dict[str, Callable[[Any], Any]] = {
    "text": _text, "name": _name, "email": _email, "number": _number, "phone": _phone,
    "upper": _upper, "grade": _grade,
}


def clean(kind: str, value: Any) -> Any:
    return CLEANSERS[kind](value)

"""Cleansing under hostile input: oversized fields are refused before any regular expression
(some backtrack quadratically), numbers stay finite, and nothing but Uncleanable escapes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topologies.customer_sync.cleansing import CLEANSERS, MAX_LENGTHS, Uncleanable, clean
from topologies.customer_sync.identity import MAX_EMAIL_LENGTH, normalize_email

MEGABYTE = 1_000_000

#: per kind, a 1 MB value shaped to make its patterns backtrack (seconds per value before the bound)
HOSTILE = {
    "email": "a@" + "a." * (MEGABYTE // 2) + "@",
    "phone": "1" + " " * MEGABYTE + "x",
    "number": "1," * (MEGABYTE // 2) + "5",
    "text": "a " * (MEGABYTE // 2),
    "name": "A " * (MEGABYTE // 2),
    "upper": "net " * (MEGABYTE // 4),
    "grade": "A" * MEGABYTE,
}


def test_every_kind_has_a_hostile_case() -> None:
    assert set(HOSTILE) == set(CLEANSERS)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_one_megabyte_value_is_refused_for_its_length(kind: str) -> None:
    with pytest.raises(Uncleanable, match=r"value of \d+ characters \(at most \d+\)"):
        clean(kind, HOSTILE[kind])


def test_a_one_megabyte_email_is_not_an_email_for_identity() -> None:
    assert normalize_email(HOSTILE["email"]) is None


def test_the_bounds_are_inclusive() -> None:
    local = "a" * (MAX_EMAIL_LENGTH - len("@example.com"))
    assert clean("email", f" {local}@example.com ") == f"{local}@example.com"
    with pytest.raises(Uncleanable, match="at most 254"):
        clean("email", f"a{local}@example.com")
    assert clean("phone", "+1 555 123 4567".ljust(MAX_LENGTHS["phone"] - 4) + "x 12") == "+15551234567"


@pytest.mark.parametrize("raw", [10**400, float("inf"), float("nan"), "1e999", "NaN", "sNaN", "-Infinity"])
def test_numbers_that_are_not_finite_are_refused(raw: object) -> None:
    with pytest.raises(Uncleanable):
        clean("number", raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
#: text built from the characters the patterns look for, so the interesting branches are reached
pattern_text = st.text(alphabet="aA1+0 .,@-$xXet\t\n\u00a0", max_size=80)


@given(kind=st.sampled_from(sorted(CLEANSERS)), value=json_values | pattern_text)
def test_cleansers_return_or_refuse_and_raise_nothing_else(kind: str, value: Any) -> None:
    try:
        cleaned = clean(kind, value)
    except Uncleanable as exc:
        assert str(exc)
        return
    if kind == "number" and cleaned is not None:
        assert math.isfinite(cleaned)
    if isinstance(cleaned, str):
        assert cleaned == cleaned.strip() and len(cleaned) <= MAX_LENGTHS["text"]

"""Comparison levels (quality/matching/comparisons.py): typos, nicknames, swapped names,
abbreviations and missing values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from quality.matching.comparisons import COMPARISONS, compare
from quality.matching.records import person_from

NAMES = [c.name for c in COMPARISONS]


def levels(a: dict, b: dict) -> dict[str, int | None]:
    return dict(zip(NAMES, compare(person_from("a", a), person_from("b", b))))


def test_nicknames_typos_and_initials_have_their_own_levels() -> None:
    assert levels({"first_name": "Robert"}, {"first_name": "Bob"})["first_name"] == 1
    assert levels({"first_name": "Katherine"}, {"first_name": "Katherien"})["first_name"] == 2
    assert levels({"first_name": "Wjlliam"}, {"first_name": "Bill"})["first_name"] == 4
    assert levels({"first_name": "J"}, {"first_name": "John"})["first_name"] == 5
    assert levels({"first_name": "Robert"}, {"first_name": "Susan"})["first_name"] == 6


def test_names_in_the_wrong_boxes_are_compared_the_right_way_round() -> None:
    found = levels({"first_name": "Ada", "last_name": "Lovelace"}, {"first_name": "Lovelace", "last_name": "Ada"})
    assert (found["first_name"], found["last_name"]) == (0, 0)


def test_a_missing_value_is_no_level_at_all() -> None:
    found = levels({"first_name": "Ada", "phone": "4155550134"}, {"first_name": "Ada"})
    assert found["phone"] is None and found["birth_date"] is None and found["address"] is None


def test_one_address_comparison_for_street_postcode_and_town() -> None:
    home = {"street": "12 Main Street", "postcode": "62701", "city": "Springfield", "state": "IL"}
    assert levels(home, {**home, "street": "12 Main St."})["address"] == 0
    assert levels(home, {**home, "postcode": "62702"})["address"] == 1
    assert levels(home, {**home, "street": "9 Elm Road"})["address"] == 2
    assert levels(home, {"city": "Springfield", "state": "Illinois"})["address"] == 3
    assert levels(home, {"street": "1 Bay Road", "postcode": "33601", "city": "Tampa", "state": "FL"})["address"] == 5


def test_phone_and_birth_date_levels() -> None:
    assert levels({"phone": "+1 415 555 0134"}, {"phone": "(415) 555-0134"})["phone"] == 0
    assert levels({"phone": "4155550134"}, {"phone": "6505550134"})["phone"] == 1
    assert levels({"birth_date": "1980-03-04"}, {"birth_date": "1980-04-03"})["birth_date"] == 1
    assert levels({"birth_date": "1980-03-04"}, {"birth_date": "1980-11-20"})["birth_date"] == 2


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=12)


@given(first=words, last=words, street=words, phone=st.from_regex(r"[2-9][0-9]{9}", fullmatch=True))
def test_a_record_agrees_fully_with_itself(first: str, last: str, street: str, phone: str) -> None:
    record = {"first_name": first, "last_name": last, "street": f"1 {street} road", "postcode": "12345", "phone": phone}
    found = levels(record, record)
    assert all(found[name] == 0 for name in ("first_name", "last_name", "address", "phone"))
    assert found["email"] is None and found["birth_date"] is None

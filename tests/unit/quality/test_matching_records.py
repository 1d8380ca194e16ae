"""Normalising a person's roles (quality/matching/records.py): what carries no identity goes."""

from __future__ import annotations

from quality.matching.records import person_from, swapped


def test_case_accents_and_punctuation_carry_no_identity() -> None:
    person = person_from("1", {"first_name": "  JOSÉ ", "last_name": "O'Brien-Smith"})
    assert (person.first_name, person.last_name) == ("jose", "obrien smith")


def test_street_and_company_abbreviations_meet_one_form() -> None:
    long = person_from("1", {"street": "12 North Main Street", "company": "Acme Welding Incorporated"})
    short = person_from("2", {"street": "12 N. Main St", "company": "ACME Welding, Inc."})
    assert long.street == short.street == "12 north main street"
    assert long.company == short.company == "acme welding"


def test_phone_postcode_state_country_and_dates_are_written_one_way() -> None:
    person = person_from("1", {"phone": "+1 (415) 555-0134", "postcode": "94105-1234", "state": "California",
                               "country": "United States", "birth_date": "03/04/1980"})
    assert person.phone == "4155550134"
    assert person.postcode == "94105"
    assert (person.state, person.country) == ("ca", "us")
    assert person.birth_date == "1980-03-04"
    assert person_from("2", {"phone": "415-555-0134", "birth_date": "1980-03-04"}).phone == "4155550134"


def test_blank_and_unparseable_values_are_missing() -> None:
    person = person_from("1", {"first_name": "  ", "birth_date": "not a date", "phone": "12", "email": "nobody"})
    assert (person.first_name, person.birth_date, person.phone, person.email) == (None, None, None, None)


def test_swapped_exchanges_first_and_last_name() -> None:
    person = person_from("1", {"first_name": "Ada", "last_name": "Lovelace"})
    assert (swapped(person).first_name, swapped(person).last_name) == ("lovelace", "ada")

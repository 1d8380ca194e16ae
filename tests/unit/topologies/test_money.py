"""Money as Decimal: parsing, ISO codes, rounding half up to the minor unit, exact wire numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from topologies.money import MoneyError, currency_code, line_amount, quantize, text, to_decimal, wire


def test_floats_become_the_decimal_of_their_shortest_text() -> None:
    assert to_decimal(0.1) == Decimal("0.1")
    assert to_decimal(12.3) + to_decimal(0.2) == Decimal("12.5")
    assert to_decimal("1e2") == Decimal("100")
    assert to_decimal(7) == Decimal(7)


@pytest.mark.parametrize("bad", [True, None, float("nan"), float("inf"), "NaN", "twelve", "", "Infinity"])
def test_what_is_not_a_finite_number_is_refused(bad: object) -> None:
    with pytest.raises(MoneyError):
        to_decimal(bad)


def test_currency_codes_are_iso_4217() -> None:
    assert currency_code(" usd ") == "USD"
    for bad in ("US", "USDX", "XYZ", None, "€"):
        with pytest.raises(MoneyError):
            currency_code(bad)


def test_rounding_is_half_up_to_the_minor_unit_of_the_currency() -> None:
    assert quantize(Decimal("2.675"), "USD") == Decimal("2.68")  # round(2.675, 2) on a float gives 2.67
    assert quantize(Decimal("2.665"), "USD") == Decimal("2.67")
    assert quantize(Decimal("-2.665"), "USD") == Decimal("-2.67")
    assert quantize(Decimal("1234.5"), "JPY") == Decimal("1235")
    assert quantize(Decimal("1.2345"), "KWD") == Decimal("1.235")
    assert line_amount(Decimal("3"), Decimal("0.335"), "USD") == Decimal("1.01")  # 1.005 → 1.01


def test_wire_numbers_carry_the_decimal_exactly_or_are_refused() -> None:
    assert wire(Decimal("37.50")) == 37.5 and repr(wire(Decimal("0.10"))) == "0.1"
    assert wire(Decimal("100.00")) == 100 and isinstance(wire(Decimal("100.00")), int)
    with pytest.raises(MoneyError):
        wire(Decimal("1234567890123.456"))  # 16 significant digits: a double cannot hold them
    assert text(Decimal("37.50")) == "37.50"

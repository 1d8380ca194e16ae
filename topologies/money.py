"""Money as :class:`~decimal.Decimal`, from the edge to the sink command (docs/adr/0021).

Amounts reach us as JSON numbers (Salesforce currency fields are doubles; TIMS amounts are
``number``) that the codec has already read as floats. They become Decimals here, from their
shortest text (``12.3`` → ``Decimal("12.3")``, never ``Decimal(12.3)``), and are rounded to the
currency's minor unit (ISO 4217, from the CLDR data in Babel) half up, line by line: a line's
amount is ``quantize(quantity × unit price)``, an order's total the sum of its lines.

On the wire to a target, an amount goes out as a JSON number written from that Decimal; its
text is exact for up to 15 significant digits (a double carries them), and :func:`wire` refuses
anything longer instead of rounding it silently. In our own messages and tables an amount is its
Decimal text (``"37.50"``).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from babel.numbers import get_currency_precision, list_currencies

__all__ = ["MoneyError", "to_decimal", "currency_code", "quantize", "line_amount", "wire", "text"]

#: significant digits a double (the targets' number type) keeps exactly
_EXACT_DIGITS = 15


class MoneyError(ValueError):
    """An amount, quantity or currency we cannot take as it is (the reason is the message)."""


def to_decimal(value: Any, what: str = "amount") -> Decimal:
    """A JSON number or numeric text as a Decimal; booleans, NaN and infinities are refused."""
    if isinstance(value, bool) or value is None:
        raise MoneyError(f"{what}: {value!r} is not a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MoneyError(f"{what}: {value!r} is not a finite number")
        value = repr(value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise MoneyError(f"{what}: {value!r} is not a number") from None
    if not number.is_finite():
        raise MoneyError(f"{what}: {value!r} is not a finite number")
    return number


@lru_cache(maxsize=None)
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def currency_code(value: Any) -> str:
    """An ISO 4217 code (``usd`` → ``USD``); anything else is refused."""
    code = str(value or "").strip().upper()
    if len(code) != 3 or code not in _known_currencies():
        raise MoneyError(f"currency: {value!r} is not an ISO 4217 code")
    return code


def quantize(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half up to the currency's minor unit (USD cents, JPY yen, KWD fils)."""
    exponent = Decimal(1).scaleb(-get_currency_precision(currency))
    return amount.quantize(exponent, rounding=ROUND_HALF_UP)


def line_amount(quantity: Decimal, unit_price: Decimal, currency: str) -> Decimal:
    return quantize(quantity * unit_price, currency)


def wire(amount: Decimal) -> int | float:
    """The JSON number a target API takes for ``amount``, whose text is the Decimal's own."""
    if amount == amount.to_integral_value() and abs(amount) < 10 ** _EXACT_DIGITS:
        return int(amount)
    digits = len(amount.normalize().as_tuple().digits)
    if digits > _EXACT_DIGITS:
        raise MoneyError(f"amount {amount} has more than {_EXACT_DIGITS} significant digits")
    number = float(amount)
    if Decimal(repr(number)) != amount:
        raise MoneyError(f"amount {amount} is not exact as a JSON number")
    return number


def text(amount: Decimal) -> str:
    """How an amount is kept in our messages and tables."""
    return format(amount, "f")

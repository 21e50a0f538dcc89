"""Money: settled amounts are integers in minor units, rates are Decimal, never float.

There is exactly one rounding step in the whole project: ``to_minor``, ROUND_HALF_UP, once per invoice
line (or per settled amount). Everything before it is exact Decimal arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import MAX_PREC, Context, Decimal
from fractions import Fraction

# ISO 4217 minor-unit exponents of the currencies we settle in.
CURRENCY_EXPONENTS: dict[str, int] = {"CNY": 2, "USD": 2}
DEFAULT_CURRENCY = "CNY"
CURRENCY_CHOICES = [("CNY", "CNY ¥"), ("USD", "USD $")]
CURRENCY_SYMBOLS = {"CNY": "¥", "USD": "$"}

# Unit prices and ratios: DecimalField(max_digits=RATE_MAX_DIGITS, decimal_places=RATE_DECIMAL_PLACES).
RATE_MAX_DIGITS = 20
RATE_DECIMAL_PLACES = 10


class CurrencyError(ValueError):
    pass


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise CurrencyError(f"unsupported currency {currency!r}") from None


def _as_decimal(value: Decimal | int | str) -> Decimal:
    if isinstance(value, float):
        raise TypeError("money never goes through float; pass Decimal, int or str")
    if isinstance(value, bool):
        raise TypeError("a bool is not an amount")
    return value if isinstance(value, Decimal) else Decimal(value)


def _exact(value: Decimal | int | str | Fraction) -> Fraction:
    if isinstance(value, Fraction):  # already exact (e.g. seconds / 3600): no trip through a 28-digit Decimal
        return value
    decimal = _as_decimal(value)
    if not decimal.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return Fraction(decimal)


def _round_half_up(value: Fraction) -> int:
    """The nearest integer, ties away from zero (ROUND_HALF_UP as the books mean it), in exact arithmetic."""
    magnitude = abs(value)
    rounded = (2 * magnitude.numerator + magnitude.denominator) // (2 * magnitude.denominator)
    return -rounded if value < 0 else rounded


def to_minor(amount: Decimal | int | str | Fraction, currency: str) -> int:
    """The one rounding helper: a major-unit amount (e.g. ¥12.345) to integer minor units, ROUND_HALF_UP.

    Exact for any size of amount (rational arithmetic, not Decimal's 28-digit context).
    """
    return _round_half_up(_exact(amount) * 10 ** exponent(currency))


def from_minor(amount_minor: int, currency: str) -> Decimal:
    """Integer minor units to an exact major-unit Decimal (12345 CNY -> Decimal('123.45'))."""
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise TypeError("amount_minor must be an int")
    return Decimal(amount_minor).scaleb(-exponent(currency), context=Context(prec=MAX_PREC))


def line_amount_minor(quantity: Decimal | int | str | Fraction, unit_price: Decimal | int | str, currency: str) -> int:
    """quantity x unit price, rounded once to minor units: how every invoice line is priced.

    The product is exact (a 20-digit unit price times a 12-digit quantity has more digits than Decimal's
    default context keeps, and rounding it there first would be a second rounding).
    """
    return _round_half_up(_exact(quantity) * _exact(unit_price) * 10 ** exponent(currency))


def allocate_minor(amount_minor: int, weights: Sequence[Decimal | int]) -> list[int]:
    """Split an integer amount by weights so that the parts sum exactly to it (largest remainder).

    Used for revenue shares (合作分成) and any split of a settled amount. Ties in the remainder go to the
    earlier weight, so the result is deterministic. The arithmetic is exact (rationals, not Decimal with its
    28-digit context), so remainders are compared exactly whatever the size of the amount and weights.
    """
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise TypeError("amount_minor must be an int")
    if not weights:
        raise ValueError("at least one weight is needed")
    exact_weights = [Fraction(_as_decimal(w)) for w in weights]
    if any(w < 0 for w in exact_weights):
        raise ValueError("weights cannot be negative")
    total_weight = sum(exact_weights, Fraction(0))
    if total_weight == 0:
        raise ValueError("weights sum to zero")
    sign = -1 if amount_minor < 0 else 1
    magnitude = abs(amount_minor)
    exact = [magnitude * w / total_weight for w in exact_weights]
    parts = [x.numerator // x.denominator for x in exact]  # floor, since all are non-negative
    leftover = magnitude - sum(parts)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:leftover]:
        parts[i] += 1
    return [sign * p for p in parts]


def format_money(amount_minor: int, currency: str) -> str:
    """'¥1,234.50' style for the portal and PDFs."""
    value = from_minor(amount_minor, currency)
    symbol = CURRENCY_SYMBOLS.get(currency, currency + " ")
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{abs(value):,.{exponent(currency)}f}"

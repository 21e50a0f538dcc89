"""Money: settled amounts are integers in minor units, rates are Decimal, never float.

There is exactly one rounding step in the whole project: ``to_minor``, ROUND_HALF_UP, once per invoice
line (or per settled amount). Everything before it is exact Decimal arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

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


def to_minor(amount: Decimal | int | str, currency: str) -> int:
    """The one rounding helper: a major-unit amount (e.g. ¥12.345) to integer minor units, ROUND_HALF_UP."""
    quantum = Decimal(1).scaleb(-exponent(currency))
    rounded = _as_decimal(amount).quantize(quantum, rounding=ROUND_HALF_UP)
    return int(rounded.scaleb(exponent(currency)))


def from_minor(amount_minor: int, currency: str) -> Decimal:
    """Integer minor units to an exact major-unit Decimal (12345 CNY -> Decimal('123.45'))."""
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise TypeError("amount_minor must be an int")
    return Decimal(amount_minor).scaleb(-exponent(currency))


def line_amount_minor(quantity: Decimal | int | str, unit_price: Decimal | int | str, currency: str) -> int:
    """quantity x unit price, rounded once to minor units: how every invoice line is priced."""
    return to_minor(_as_decimal(quantity) * _as_decimal(unit_price), currency)


def allocate_minor(amount_minor: int, weights: Sequence[Decimal | int]) -> list[int]:
    """Split an integer amount by weights so that the parts sum exactly to it (largest remainder).

    Used for revenue shares (合作分成) and any split of a settled amount. Ties in the remainder go to the
    earlier weight, so the result is deterministic.
    """
    if not weights:
        raise ValueError("at least one weight is needed")
    decimal_weights = [_as_decimal(w) for w in weights]
    if any(w < 0 for w in decimal_weights):
        raise ValueError("weights cannot be negative")
    total_weight = sum(decimal_weights, Decimal(0))
    if total_weight == 0:
        raise ValueError("weights sum to zero")
    sign = -1 if amount_minor < 0 else 1
    magnitude = abs(amount_minor)
    exact = [Decimal(magnitude) * w / total_weight for w in decimal_weights]
    parts = [int(x) for x in exact]  # floor, since all are non-negative
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

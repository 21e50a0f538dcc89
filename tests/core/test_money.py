"""core.money: integer minor units, one ROUND_HALF_UP step, exact splits, never float."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.money import (
    CurrencyError,
    allocate_minor,
    format_money,
    from_minor,
    line_amount_minor,
    to_minor,
)

CURRENCIES = st.sampled_from(["CNY", "USD"])

# Decimals built from an integer and a scale, so that exact ties (x.xx5, x.xx50) come up often.
amounts = st.builds(
    lambda digits, scale: Decimal(digits).scaleb(-scale),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.integers(min_value=0, max_value=8),
)
# The largest amount a BigIntegerField holds, and rates with the DecimalField(20, 10) shape.
minor_amounts = st.integers(min_value=-(2**63 - 1), max_value=2**63 - 1)
weights = st.one_of(
    st.integers(min_value=0, max_value=10**12),
    st.builds(
        lambda digits, scale: Decimal(digits).scaleb(-scale),
        st.integers(min_value=0, max_value=10**20 - 1),
        st.integers(min_value=0, max_value=10),
    ),
)
weight_lists = st.lists(weights, min_size=1, max_size=12).filter(lambda ws: any(w > 0 for w in ws))


def half_up_oracle(amount: Decimal | Fraction, exponent: int = 2) -> int:
    """ROUND_HALF_UP as the finance books define it (ties away from zero), in exact rational arithmetic."""
    scaled = Fraction(amount) * 10**exponent
    sign = -1 if scaled < 0 else 1
    magnitude = abs(scaled)
    return sign * int(magnitude + Fraction(1, 2))  # int() floors a non-negative Fraction


# --- to_minor / from_minor -------------------------------------------------------------------------


@given(amount=amounts, currency=CURRENCIES)
@example(amount=Decimal("0.005"), currency="CNY")
@example(amount=Decimal("-0.005"), currency="USD")
@example(amount=Decimal("2.675"), currency="CNY")  # 2.675 as a float is 2.67499..., exact Decimal must give 268
@example(amount=Decimal("0.0049999999"), currency="CNY")
def test_to_minor_is_round_half_up_exactly(amount, currency):
    assert to_minor(amount, currency) == half_up_oracle(amount)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("0.005", 1),
        ("0.015", 2),  # half-up, not banker's rounding (which would give 2 here but 0 for 0.005)
        ("0.025", 3),
        ("-0.005", -1),  # ties go away from zero
        ("12.344999", 1234),
        ("12.345", 1235),
        ("1e3", 100000),
        (7, 700),
    ],
)
def test_to_minor_examples(amount, expected):
    assert to_minor(amount, "CNY") == expected
    assert to_minor(amount, "USD") == expected


@given(amount_minor=minor_amounts, currency=CURRENCIES)
def test_from_minor_to_minor_round_trip(amount_minor, currency):
    major = from_minor(amount_minor, currency)
    assert isinstance(major, Decimal)
    assert Fraction(major) == Fraction(amount_minor, 100)
    assert to_minor(major, currency) == amount_minor


@given(
    amount=st.builds(lambda digits: Decimal(digits).scaleb(-2), st.integers(min_value=-(10**17), max_value=10**17)),
    currency=CURRENCIES,
)
def test_amounts_with_two_decimals_survive_to_minor_and_back(amount, currency):
    assert from_minor(to_minor(amount, currency), currency) == amount


def test_from_minor_renders_cents():
    assert str(from_minor(12345, "CNY")) == "123.45"
    assert str(from_minor(-5, "USD")) == "-0.05"


@pytest.mark.parametrize("func", [lambda: to_minor(1.5, "CNY"), lambda: to_minor(0.1, "USD")])
def test_to_minor_refuses_float(func):
    with pytest.raises(TypeError):
        func()


def test_float_and_bool_are_refused_everywhere():
    with pytest.raises(TypeError):
        from_minor(1.0, "CNY")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        from_minor(True, "CNY")
    with pytest.raises(TypeError):
        to_minor(True, "CNY")
    with pytest.raises(TypeError):
        line_amount_minor(1.5, Decimal("2"), "CNY")
    with pytest.raises(TypeError):
        line_amount_minor(Decimal("3"), 0.1, "CNY")
    with pytest.raises(TypeError):
        allocate_minor(100, [0.5, 0.5])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        allocate_minor(100.0, [1, 1])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        allocate_minor(100.5, [1])  # type: ignore[arg-type]


def test_unsupported_currency_is_refused():
    with pytest.raises(CurrencyError):
        to_minor(Decimal("1"), "XYZ")
    with pytest.raises(CurrencyError):
        from_minor(1, "cny")


# --- line_amount_minor: one rounding per line ------------------------------------------------------


@given(
    # accelerator-seconds or tokens, and a unit price with the DecimalField(20, 10) shape
    quantity=st.integers(min_value=0, max_value=10**13),
    unit_price=st.builds(
        lambda digits: Decimal(digits).scaleb(-10), st.integers(min_value=-(10**20) + 1, max_value=10**20 - 1)
    ),
    currency=CURRENCIES,
)
# The exact product is ...547.4649997612: Decimal's 28-digit context would round it to ...547.465000 first, then up.
@example(quantity=7751264997191, unit_price=Decimal("315158336.8237212532"), currency="CNY")
def test_line_amount_rounds_once_from_the_exact_product(quantity, unit_price, currency):
    exact = Fraction(quantity) * Fraction(unit_price)
    assert line_amount_minor(quantity, unit_price, currency) == half_up_oracle(exact)


@given(
    amount=st.decimals(min_value=-(10**40), max_value=10**40, allow_nan=False, allow_infinity=False),
    currency=CURRENCIES,
)
def test_to_minor_is_exact_for_any_size(amount, currency):
    assert to_minor(amount, currency) == half_up_oracle(amount)


@pytest.mark.parametrize("amount", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), "abc"])
def test_to_minor_refuses_what_is_not_an_amount(amount):
    with pytest.raises(ArithmeticError if amount == "abc" else ValueError):
        to_minor(amount, "CNY")


def test_line_amount_does_not_round_the_unit_price_first():
    # 3 accelerator-hours at ¥0.335: rounding the price first would give ¥1.02 (3 x 0.34); exact is ¥1.005 -> ¥1.01
    assert line_amount_minor(3, Decimal("0.335"), "CNY") == 101


# --- allocate_minor --------------------------------------------------------------------------------


@given(amount=minor_amounts, parts=weight_lists)
def test_allocation_sums_exactly_and_is_proportional_within_one_minor_unit(amount, parts):
    result = allocate_minor(amount, parts)
    assert len(result) == len(parts)
    assert all(isinstance(p, int) for p in result)
    assert sum(result) == amount
    total = sum(Fraction(w) for w in parts)
    for share, weight in zip(result, parts, strict=True):
        exact = Fraction(amount) * Fraction(weight) / total
        assert abs(share - exact) < 1
        if weight == 0:
            assert share == 0


@given(amount=st.integers(min_value=0, max_value=2**63 - 1), parts=weight_lists)
def test_allocation_of_a_positive_amount_has_no_negative_part(amount, parts):
    assert all(p >= 0 for p in allocate_minor(amount, parts))


@given(amount=minor_amounts, parts=weight_lists)
# Remainders 0.49999999999975 and 0.50000000000025: equal to 28 significant digits, not equal.
@example(amount=10**18 + 1, parts=[10**30, 10**30 + 1])
def test_allocation_is_largest_remainder(amount, parts):
    """The units left over after flooring go to the largest exact remainders, ties to the earlier weight."""
    result = allocate_minor(abs(amount), parts)
    total = sum(Fraction(w) for w in parts)
    exact = [Fraction(abs(amount)) * Fraction(w) / total for w in parts]
    floors = [int(x) for x in exact]
    bumped = [i for i, (r, f) in enumerate(zip(result, floors, strict=True)) if r == f + 1]
    kept = [i for i, (r, f) in enumerate(zip(result, floors, strict=True)) if r == f]
    assert len(bumped) + len(kept) == len(parts)
    remainder = [x - f for x, f in zip(exact, floors, strict=True)]
    for b in bumped:
        for k in kept:
            assert remainder[b] > remainder[k] or (remainder[b] == remainder[k] and b < k)


@given(amount=minor_amounts, parts=weight_lists, factor=st.integers(min_value=1, max_value=10**6))
def test_allocation_is_deterministic_and_depends_only_on_proportions(amount, parts, factor):
    result = allocate_minor(amount, parts)
    assert allocate_minor(amount, list(parts)) == result
    assert allocate_minor(amount, [Decimal(w) * factor for w in parts]) == result
    assert allocate_minor(-amount, parts) == [-p for p in result]


@pytest.mark.parametrize(
    ("amount", "parts", "expected"),
    [
        (100, [1, 1, 1], [34, 33, 33]),  # the tie goes to the earlier weight
        (200, [1, 1, 1], [67, 67, 66]),
        (-100, [1, 1, 1], [-34, -33, -33]),
        (1, [Decimal("0.5"), Decimal("0.5")], [1, 0]),
        (10000, [Decimal("33.333"), Decimal("33.333"), Decimal("33.334")], [3333, 3333, 3334]),
        (5, [0, 1], [0, 5]),
        (0, [1, 2], [0, 0]),
    ],
)
def test_allocation_examples(amount, parts, expected):
    assert allocate_minor(amount, parts) == expected


@pytest.mark.parametrize("parts", [[], [0, 0], [1, -1]])
def test_allocation_refuses_meaningless_weights(parts):
    with pytest.raises(ValueError):  # noqa: PT011
        allocate_minor(100, parts)


# --- format_money ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount_minor", "currency", "expected"),
    [
        (123450, "CNY", "¥1,234.50"),
        (-5, "USD", "-$0.05"),
        (0, "CNY", "¥0.00"),
        (100000000, "USD", "$1,000,000.00"),
    ],
)
def test_format_money(amount_minor, currency, expected):
    assert format_money(amount_minor, currency) == expected

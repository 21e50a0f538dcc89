"""Rating is exact to the fen: one rounding per line, totals = sum of lines, VAT and subsidy on top."""

from __future__ import annotations

import uuid
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing import rating

prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("500"), places=4)
ratios = st.sampled_from([Decimal(0), Decimal("0.10"), Decimal("0.25"), Decimal("0.50")])


def _charge(seconds: int, price: Decimal, ratio: Decimal = Decimal(0), dispute: int = 0) -> rating.LeaseCharge:
    return rating.LeaseCharge(
        lease_public_id=uuid.uuid4(),
        provider_id=1,
        pool_id=1,
        pool_name="宁夏 910B",
        accelerator_model="Ascend 910B",
        chip_domestic=True,
        currency="CNY",
        price_per_accelerator_hour=price,
        scu_per_accelerator_hour=Decimal("0.376"),
        contracted_accelerator_seconds=seconds,
        sla_credit_ratio=ratio,
        dispute_credit_accelerator_seconds=dispute,
    )


def test_a_lease_is_charged_for_its_contracted_hours_at_its_price():
    lines = rating.rate_lease(_charge(8 * 24 * 3600, Decimal("12.5")))
    assert [(line.kind, line.amount_minor) for line in lines] == [("capacity", 8 * 24 * 1250)]
    assert lines[0].accelerator_hours == 192
    assert lines[0].scu_hours == Decimal("72.192")


def test_sla_credit_is_one_rounding_of_the_exact_product():
    # 1 accelerator-second at ¥0.0001/h, 10% credit: capacity rounds to 0 fen and so does the credit.
    lines = rating.rate_lease(_charge(3601, Decimal("3.3333"), Decimal("0.10")))
    capacity, credit = lines
    assert capacity.amount_minor == 333  # 1.000278 h x 3.3333 = 3.3342 -> 333 fen
    assert credit.amount_minor == -33  # 0.1 x 3.3342 = 0.33342 -> 33 fen


@given(
    seconds=st.integers(0, 10_000_000),
    price=prices,
    ratio=ratios,
    dispute=st.integers(0, 1_000_000),
)
def test_lease_lines_equal_usage_times_price_less_credits_to_the_fen(seconds, price, ratio, dispute):
    lines = rating.rate_lease(_charge(seconds, price, ratio, dispute))
    hours = Fraction(seconds, 3600)
    expected_capacity = round_half_up(hours * Fraction(price) * 100)
    total = sum(line.amount_minor for line in lines)
    if seconds == 0:
        assert lines == []
        return
    credit_sla = min(round_half_up(Fraction(ratio) * hours * Fraction(price) * 100), expected_capacity)
    credit_dispute = round_half_up(Fraction(min(dispute, seconds), 3600) * Fraction(price) * 100)
    assert total == expected_capacity - credit_sla - credit_dispute


def round_half_up(value: Fraction) -> int:
    return int((2 * value.numerator + value.denominator) // (2 * value.denominator))


@given(
    charges=st.lists(st.tuples(st.integers(1, 2_000_000), prices, ratios), min_size=1, max_size=8),
    vat=st.sampled_from([Decimal("0.06"), Decimal("0.13"), Decimal(0)]),
    subsidy_share=st.fractions(0, 1),
)
def test_invoice_total_is_the_sum_of_its_lines_plus_vat_less_subsidy(charges, vat, subsidy_share):
    lines = rating.rate_period([_charge(s, p, r) for s, p, r in charges])
    subtotal = sum(line.amount_minor for line in lines)
    subsidy = int(max(subtotal, 0) * subsidy_share)
    totals = rating.invoice_totals(lines, vat_rate=vat, currency="CNY", subsidy_deducted_minor=subsidy)
    assert totals.subtotal_minor == subtotal
    assert totals.vat_minor == round_half_up(Fraction(subtotal) * Fraction(vat))
    assert totals.total_minor == subtotal + totals.vat_minor
    assert totals.amount_due_minor == totals.total_minor - subsidy


def test_tokens_are_priced_per_million():
    charge = rating.TokenCharge(
        contract_public_id=uuid.uuid4(),
        provider_id=1,
        pool_id=None,
        model_name="DeepSeek-V3",
        chip_domestic=True,
        currency="CNY",
        price_per_million_in=Decimal("2"),
        price_per_million_out=Decimal("8"),
        tokens_in=1_234_567,
        tokens_out=45_678,
    )
    lines = rating.rate_tokens(charge)
    assert [(line.kind, line.amount_minor) for line in lines] == [("tokens_in", 247), ("tokens_out", 37)]


@given(amount=st.integers(0, 10**12), rate=st.decimals(min_value=0, max_value=Decimal("0.9999"), places=4))
def test_fee_and_net_add_up_to_the_gross(amount, rate):
    fee, net = rating.fee_split(amount, rate, "CNY")
    assert fee + net == amount
    assert 0 <= fee <= amount


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="negative"):
        rating.rate_lease(_charge(-1, Decimal(1)))
    with pytest.raises(ValueError, match="fraction"):
        rating.rate_lease(_charge(3600, Decimal(1), Decimal(2)))
    with pytest.raises(ValueError, match="subsidy"):
        rating.invoice_totals([], vat_rate=Decimal("0.06"), currency="CNY", subsidy_deducted_minor=1)

"""Properties of the standard-unit normalisation (marketplace/units.py): exact, monotone, provenance kept."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace import units

tflops = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(20000), places=3, allow_nan=False)
tbps = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(100), places=4, allow_nan=False)
maybe_tflops = st.none() | tflops
maybe_tbps = st.none() | tbps
counts = st.integers(min_value=1, max_value=100_000)


def test_the_design_examples():
    # An H100 SXM attested at 900 TFLOPS delivers 0.9 SCU per hour.
    n = units.normalise(datasheet_tflops=Decimal(989), datasheet_tbps=Decimal("3.35"), attested_tflops=Decimal(900))
    assert n.scu == units.Figure(Decimal("0.9"), units.Unit.SCU, units.Basis.ATTESTED, units.FORMULA_VERSION)
    assert n.bwu is not None
    assert n.bwu.value == Decimal("3.35")
    assert n.bwu.basis is units.Basis.DATASHEET
    # The H20 has ~15% of an H100's FLOPS but ~119% of its bandwidth.
    h20 = units.normalise(datasheet_tflops=Decimal(148), datasheet_tbps=Decimal("4.0"))
    h100 = units.normalise(datasheet_tflops=Decimal(989), datasheet_tbps=Decimal("3.35"))
    assert units.ratio(h20.scu.value, h100.scu.value) == Decimal("0.1496")
    assert units.ratio(h20.bwu.value, h100.bwu.value) == Decimal("1.1940")
    assert h100.h100e is not None
    assert h100.h100e.value == Decimal("1.0000")


def test_unknown_stays_unknown():
    n = units.normalise(datasheet_tflops=None, datasheet_tbps=None)
    assert n.scu is None
    assert n.bwu is None
    assert n.h100e is None
    assert not n.verified


def test_floats_are_refused():
    with pytest.raises(TypeError):
        units.normalise(datasheet_tflops=989.0, datasheet_tbps=None)  # type: ignore[arg-type]


def test_dense_peak_takes_the_larger_known_half_precision_figure():
    assert units.dense_half_precision_peak(bf16_tflops=None, fp16_tflops=Decimal(280)) == Decimal(280)
    assert units.dense_half_precision_peak(bf16_tflops=Decimal(1024), fp16_tflops=None) == Decimal(1024)
    assert units.dense_half_precision_peak(bf16_tflops=None, fp16_tflops=None) is None


@given(tflops)
def test_scu_is_exact(value):
    assert units.scu_per_hour(value) * 1000 == value
    assert units.scu_per_hour(value) == value / Decimal(1000)


@given(tflops, tflops)
def test_scu_and_h100e_are_monotone_in_measured_tflops(a, b):
    low, high = sorted((a, b))
    n_low = units.normalise(datasheet_tflops=None, datasheet_tbps=None, attested_tflops=low)
    n_high = units.normalise(datasheet_tflops=None, datasheet_tbps=None, attested_tflops=high)
    assert n_low.scu.value <= n_high.scu.value
    assert n_low.h100e.value <= n_high.h100e.value
    if low < high:
        assert n_low.scu.value < n_high.scu.value


@given(tbps, tbps)
def test_bwu_is_monotone_and_exact_in_measured_bandwidth(a, b):
    low, high = sorted((a, b))
    n_low = units.normalise(datasheet_tflops=None, datasheet_tbps=None, attested_tbps=low)
    n_high = units.normalise(datasheet_tflops=None, datasheet_tbps=None, attested_tbps=high)
    assert n_low.bwu.value == low
    assert n_high.bwu.value == high
    assert n_low.bwu.value <= n_high.bwu.value


@given(maybe_tflops, maybe_tbps, maybe_tflops, maybe_tbps)
def test_every_figure_states_basis_and_version(ds_tflops, ds_tbps, at_tflops, at_tbps):
    n = units.normalise(
        datasheet_tflops=ds_tflops, datasheet_tbps=ds_tbps, attested_tflops=at_tflops, attested_tbps=at_tbps
    )
    for figure, attested, datasheet in ((n.scu, at_tflops, ds_tflops), (n.bwu, at_tbps, ds_tbps)):
        if attested is None and datasheet is None:
            assert figure is None
            continue
        assert figure.formula_version == units.FORMULA_VERSION
        assert figure.basis is (units.Basis.ATTESTED if attested is not None else units.Basis.DATASHEET)
        assert isinstance(figure.value, Decimal)


@given(maybe_tflops, maybe_tbps, counts)
def test_pool_totals_are_exact_multiples(ds_tflops, ds_tbps, count):
    n = units.normalise(datasheet_tflops=ds_tflops, datasheet_tbps=ds_tbps)
    total = n.for_count(count)
    if n.scu:
        assert total.scu.value == n.scu.value * count
        assert total.scu.basis is n.scu.basis
    if n.bwu:
        assert total.bwu.value == n.bwu.value * count


@given(tflops, tflops)
def test_implausible_is_exactly_above_one_and_a_half_times_the_datasheet(measured, declared):
    assert units.is_implausible(measured, declared) == (measured > declared * Decimal("1.5"))
    assert not units.is_implausible(measured, None)


@given(tflops)
def test_micro_units_round_trip_within_half_a_micro(value):
    scu = units.scu_per_hour(value)
    assert abs(Decimal(units.to_micro(scu)) / 1_000_000 - scu) <= Decimal("0.0000005")

"""Reconciliation arithmetic (pure): contracted vs delivered, availability, SLA tiers, energy estimates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.timeutils import HOUR, Window
from metering import reconcile

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_contracted_seconds_is_the_overlap_times_accelerators():
    lease = Window(T0, T0 + timedelta(hours=10))
    assert reconcile.contracted_seconds(4, lease, Window(T0 - HOUR, T0 + 2 * HOUR)) == 4 * 2 * 3600
    assert reconcile.contracted_seconds(4, lease, Window(T0 + timedelta(hours=20), T0 + timedelta(hours=21))) == 0


@pytest.mark.parametrize(
    ("availability", "credit"),
    [
        ("1", "0"),
        ("0.99", "0"),
        ("0.989999", "0.10"),
        ("0.95", "0.10"),
        ("0.949", "0.25"),
        ("0.90", "0.25"),
        ("0.8999", "0.50"),
        ("0", "0.50"),
    ],
)
def test_sla_tiers(availability, credit):
    assert reconcile.sla_credit_ratio(Decimal(availability)) == Decimal(credit)


def test_unknown_availability_earns_no_credit():
    assert reconcile.sla_credit_ratio(None) == 0
    assert reconcile.availability(0, 0) is None


def test_tiers_from_settings_are_validated():
    assert reconcile.parse_tiers([("0.99", "0.1")]) == ((Decimal("0.99"), Decimal("0.1")),)
    with pytest.raises(ValueError, match="within"):
        reconcile.parse_tiers([("0.99", "1.5")])


def test_energy_estimate_from_tdp_and_utilisation():
    assert reconcile.estimate_energy_wh(700, 5_000, 3600) == 350  # 700 W at 50 % for an hour
    assert reconcile.estimate_energy_wh(700, None, 3600) == 700  # unknown utilisation: full TDP
    assert reconcile.estimate_energy_wh(None, 5_000, 3600) == 0
    assert reconcile.estimate_energy_wh(400, 10_000, 9) == 1  # 1.0 Wh


def test_hour_flags():
    lease = Window(T0, T0 + timedelta(hours=4))
    over = reconcile.reconcile_hour(
        hour_start=T0, accelerators=2, lease=lease, usage=reconcile.HourUsage(7300, 0, 7300, 5000, 2), tdp_w=700
    )
    assert over.over_reported
    assert not over.missing
    assert over.energy_estimated_wh == over.energy_wh == reconcile.estimate_energy_wh(700, 5000, 7300)
    missing = reconcile.reconcile_hour(hour_start=T0 + HOUR, accelerators=2, lease=lease, usage=None, tdp_w=700)
    assert missing.missing
    assert missing.shortfall_accelerator_seconds == 7200


def test_period_with_missing_hours_earns_a_credit():
    lease = Window(T0, T0 + timedelta(hours=100))
    full = reconcile.HourUsage(3600, 300, 0, 8000, 1)
    usage = {T0 + i * HOUR: full for i in range(100) if i not in (10, 11, 12)}
    summary, hours = reconcile.reconcile_period(
        accelerators=1, lease=lease, window=lease, usage_by_hour=usage, tdp_w=700, now=T0 + timedelta(hours=100)
    )
    assert len(hours) == 100
    assert summary.availability == Decimal("0.97")
    assert summary.sla_credit_ratio == Decimal("0.10")
    assert summary.missing_hours == 3
    assert summary.energy_estimated_wh == 0
    assert summary.energy_wh == 97 * 300


def test_hours_not_yet_elapsed_do_not_count_against_availability():
    lease = Window(T0, T0 + timedelta(hours=10))
    usage = {T0: reconcile.HourUsage(3600), T0 + HOUR: reconcile.HourUsage(3600)}
    summary, _hours = reconcile.reconcile_period(
        accelerators=1,
        lease=lease,
        window=lease,
        usage_by_hour=usage,
        tdp_w=None,
        now=T0 + timedelta(hours=2, minutes=5),
    )
    assert summary.availability == 1
    assert summary.missing_hours == 0
    assert summary.contracted_accelerator_seconds == 36000
    nothing, _ = reconcile.reconcile_period(
        accelerators=1, lease=lease, window=lease, usage_by_hour={}, tdp_w=None, now=T0
    )
    assert nothing.availability is None
    assert nothing.sla_credit_ratio == 0


@st.composite
def periods(draw):
    accelerators = draw(st.integers(1, 16))
    hours = draw(st.integers(1, 48))
    lease = Window(T0, T0 + hours * HOUR)
    usage = {}
    for i in range(hours):
        if draw(st.booleans()):
            seconds = draw(st.integers(0, accelerators * 3600 + 500))
            without = draw(st.integers(0, seconds))
            usage[T0 + i * HOUR] = reconcile.HourUsage(
                seconds, draw(st.integers(0, 10**6)), without, draw(st.none() | st.integers(0, 10_000)), 1
            )
    now = T0 + draw(st.integers(0, hours + 2)) * HOUR
    split = draw(st.integers(1, hours))
    return accelerators, lease, usage, now, split, draw(st.none() | st.integers(1, 1000))


@settings(max_examples=200, deadline=None)
@given(periods())
def test_period_invariants(case):
    accelerators, lease, usage, now, split, tdp = case
    summary, hours = reconcile.reconcile_period(
        accelerators=accelerators, lease=lease, window=lease, usage_by_hour=usage, tdp_w=tdp, now=now
    )
    # Availability within 0..1, credit one of the tiers, and the hours add up to the period.
    assert summary.availability is None or 0 <= summary.availability <= 1
    assert summary.sla_credit_ratio in {Decimal(0), *(c for _t, c in reconcile.DEFAULT_SLA_TIERS)}
    assert summary.contracted_accelerator_seconds == accelerators * lease.seconds
    assert summary.delivered_accelerator_seconds == sum(u.accelerator_seconds for u in usage.values())
    assert summary.energy_wh == sum(h.energy_wh for h in hours)
    assert 0 <= summary.energy_estimated_wh <= summary.energy_wh
    assert summary.elapsed_delivered_accelerator_seconds <= summary.elapsed_contracted_accelerator_seconds
    # Lower availability never earns a smaller credit.
    if summary.availability is not None and summary.availability < 1:
        assert reconcile.sla_credit_ratio(summary.availability) >= reconcile.sla_credit_ratio(Decimal(1))
    # Splitting the window in two: contracted, delivered and energy add up exactly.
    cut = T0 + split * HOUR
    parts = [Window(T0, cut)] + ([Window(cut, lease.end)] if cut < lease.end else [])
    sums = [
        reconcile.reconcile_period(
            accelerators=accelerators, lease=lease, window=w, usage_by_hour=usage, tdp_w=tdp, now=now
        )[0]
        for w in parts
    ]
    assert sum(s.contracted_accelerator_seconds for s in sums) == summary.contracted_accelerator_seconds
    assert sum(s.delivered_accelerator_seconds for s in sums) == summary.delivered_accelerator_seconds
    assert sum(s.energy_wh for s in sums) == summary.energy_wh
    assert sum(s.missing_hours for s in sums) == summary.missing_hours


@given(st.decimals(0, 1, places=6), st.decimals(0, 1, places=6))
def test_credit_is_monotone_in_availability(a, b):
    low, high = min(a, b), max(a, b)
    assert reconcile.sla_credit_ratio(low) >= reconcile.sla_credit_ratio(high)

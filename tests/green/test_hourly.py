"""Hourly matching (pure): never more than the hour's generation, nor than a lease-hour's consumption; exact
integer shares; CFE% from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from green.hourly import HourlyConsumption, cfe_pct, hourly_match, split_pro_rata

H0 = datetime(2026, 10, 1, tzinfo=UTC)


def test_an_hour_matches_up_to_its_generation_shared_in_proportion():
    consumption = [
        HourlyConsumption("a", H0, 300),
        HourlyConsumption("b", H0, 100),
        HourlyConsumption("c", H0 + timedelta(hours=1), 50),
    ]
    matched = hourly_match({H0: 200, H0 + timedelta(hours=1): 80}, consumption)
    assert matched == {"a": 150, "b": 50, "c": 50}
    assert cfe_pct(sum(matched.values()), 450) == Decimal("55.56")


def test_hours_without_generation_match_nothing_and_no_consumption_has_no_cfe():
    assert hourly_match({}, [HourlyConsumption("a", H0, 10)]) == {"a": 0}
    assert cfe_pct(0, 0) is None


def test_duplicates_and_negatives_are_refused():
    with pytest.raises(ValueError, match="twice"):
        hourly_match({}, [HourlyConsumption("a", H0, 1), HourlyConsumption("a", H0, 1)])
    with pytest.raises(ValueError, match="negative"):
        hourly_match({}, [HourlyConsumption("a", H0, -1)])


@given(
    total=st.integers(0, 10**9),
    weights=st.lists(st.integers(0, 10**8), min_size=1, max_size=20),
)
def test_split_is_exact_and_bounded(total, weights):
    keyed = [(f"k{i}", w) for i, w in enumerate(weights)]
    if sum(weights) == 0:
        total = 0
    total = min(total, sum(weights))
    parts = split_pro_rata(total, keyed)
    assert sum(parts.values()) == total
    assert all(0 <= parts[k] <= w for k, w in keyed)


@given(
    items=st.lists(st.tuples(st.integers(0, 23), st.integers(0, 5_000_000)), max_size=60),
    generation=st.dictionaries(st.integers(0, 23), st.integers(0, 20_000_000), max_size=24),
)
def test_property_no_hour_matches_more_than_it_generated_or_consumed(items, generation):
    consumption = [HourlyConsumption(f"lh{i}", H0 + timedelta(hours=h), wh) for i, (h, wh) in enumerate(items)]
    gen = {H0 + timedelta(hours=h): wh for h, wh in generation.items()}
    matched = hourly_match(gen, consumption)
    assert set(matched) == {c.key for c in consumption}
    for c in consumption:
        assert 0 <= matched[c.key] <= c.facility_wh
    for hour in {c.hour for c in consumption}:
        in_hour = [c for c in consumption if c.hour == hour]
        got = sum(matched[c.key] for c in in_hour)
        assert got == min(gen.get(hour, 0), sum(c.facility_wh for c in in_hour))  # as much as possible, no more
    total = sum(c.facility_wh for c in consumption)
    pct = cfe_pct(sum(matched.values()), total)
    assert pct is None if total == 0 else Decimal(0) <= pct <= Decimal(100)

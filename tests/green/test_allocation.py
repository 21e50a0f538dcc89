"""The pure allocation module: invariants as Hypothesis properties, plus the rules by example."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from green.allocation import AllocationSlice, ConsumptionInput, LotInput, allocate, eligible

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def _month(offset: int) -> date:
    index = 2026 * 12 + 2 + offset
    return date(index // 12, index % 12 + 1, 1)


lots_strategy = st.lists(
    st.builds(
        LotInput,
        id=st.integers(1, 10_000),
        remaining_wh=st.integers(0, 3_000),
        production_month=st.integers(-15, 2).map(_month),
        expires_on=st.integers(-3, 40).map(lambda d: (BASE + timedelta(days=d)).date()),
        market=st.sampled_from(["CN", "EU"]),
        province=st.sampled_from(["64", "15"]),
        site_id=st.integers(1, 3),
    ),
    max_size=12,
    unique_by=lambda lot: lot.id,
)
consumption_strategy = st.lists(
    st.builds(
        ConsumptionInput,
        id=st.integers(1, 10_000).map(lambda n: f"lh-{n}"),
        hour=st.integers(0, 24 * 40).map(lambda h: BASE + timedelta(hours=h)),
        facility_wh=st.integers(0, 2_000),
        site_id=st.integers(1, 3),
        province=st.sampled_from(["64", "15"]),
        market=st.sampled_from(["CN", "EU"]),
        site_rule=st.sampled_from(["same_site", "same_province"]),
    ),
    max_size=25,
    unique_by=lambda c: c.id,
)


@settings(max_examples=300, deadline=None)
@given(lots=lots_strategy, consumption=consumption_strategy, vintage=st.integers(0, 12))
def test_allocation_invariants(lots, consumption, vintage):
    slices = allocate(lots, consumption, vintage_months=vintage)
    lot_by_id = {lot.id: lot for lot in lots}
    use_by_id = {c.id: c for c in consumption}
    per_lot: dict[int, int] = defaultdict(int)
    per_use: dict[str, int] = defaultdict(int)
    for item in slices:
        assert item.energy_wh > 0
        lot, use = lot_by_id[item.lot_id], use_by_id[item.consumption_id]
        # Never outside market, site rule or vintage, never after expiry.
        assert eligible(lot, use, vintage)
        assert lot.market == use.market
        assert use.hour.date() < lot.expires_on
        assert lot.production_month <= use.hour.date()
        per_lot[item.lot_id] += item.energy_wh
        per_use[item.consumption_id] += item.energy_wh
    for lot_id, total in per_lot.items():
        assert total <= lot_by_id[lot_id].remaining_wh  # no lot over-allocated
    for use_id, total in per_use.items():
        assert total <= use_by_id[use_id].facility_wh  # one consumed Wh covered at most once
    assert len({(s.lot_id, s.consumption_id) for s in slices}) == len(slices)
    # Deterministic, whatever order the inputs come in.
    assert allocate(list(reversed(lots)), list(reversed(consumption)), vintage_months=vintage) == slices


@settings(max_examples=200, deadline=None)
@given(lots=lots_strategy, consumption=consumption_strategy)
def test_allocation_is_greedy_no_eligible_wh_left_idle(lots, consumption):
    """If a consumption is left partly grey, every lot eligible for it is used up."""
    slices = allocate(lots, consumption)
    used: dict[int, int] = defaultdict(int)
    covered: dict[str, int] = defaultdict(int)
    for item in slices:
        used[item.lot_id] += item.energy_wh
        covered[item.consumption_id] += item.energy_wh
    for use in consumption:
        if covered[use.id] < use.facility_wh:
            for lot in lots:
                if eligible(lot, use):
                    assert used[lot.id] == lot.remaining_wh


def _lot(lot_id: int, wh: int, produced: date, expires: date, **kw) -> LotInput:
    values = {"market": "CN", "province": "64", "site_id": 1}
    values.update(kw)
    return LotInput(lot_id, wh, produced, expires, **values)  # type: ignore[arg-type]


def _use(key: str, hour: datetime, wh: int, **kw) -> ConsumptionInput:
    values = {"site_id": 1, "province": "64"}
    values.update(kw)
    return ConsumptionInput(key, hour, wh, **values)  # type: ignore[arg-type]


def test_oldest_expiry_first_then_production_then_id():
    lots = [
        _lot(3, 100, date(2026, 2, 1), date(2028, 2, 1)),
        _lot(2, 100, date(2026, 1, 1), date(2028, 1, 1)),
        _lot(1, 100, date(2026, 1, 1), date(2028, 1, 1)),
    ]
    slices = allocate(lots, [_use("a", BASE, 250)])
    assert slices == [
        AllocationSlice(1, "a", 100),
        AllocationSlice(2, "a", 100),
        AllocationSlice(3, "a", 50),
    ]


def test_rules_by_example():
    hour = BASE
    other_market = _lot(1, 100, date(2026, 1, 1), date(2028, 1, 1), market="EU")
    future_vintage = _lot(2, 100, date(2026, 4, 1), date(2028, 4, 1))
    too_old = _lot(3, 100, date(2024, 1, 1), date(2026, 5, 1))
    expired = _lot(4, 100, date(2025, 1, 1), date(2026, 3, 1))
    other_province = _lot(5, 100, date(2026, 1, 1), date(2028, 1, 1), province="15", site_id=3)
    other_site = _lot(6, 100, date(2026, 1, 1), date(2028, 1, 1), site_id=2)
    lots = [other_market, future_vintage, too_old, expired, other_province, other_site]
    assert allocate(lots, [_use("a", hour, 100, site_rule="same_site")]) == []
    # Same province: the other site's lot is fine.
    assert allocate(lots, [_use("a", hour, 100)]) == [AllocationSlice(6, "a", 100)]

"""Allocation of certificate Wh to metered consumption: pure, no ORM (DESIGN.md §4.7, issue 8).

Monthly matching (the default): a consumption slice (one lease-hour's facility Wh) may draw on a lot when

- the lot is in the same market (country) as the consumption;
- the site rule holds: ``same_site`` (the lot belongs to the consuming site) or ``same_province``;
- the production month lies inside the vintage rule: not after the consumption's month, and at most
  ``vintage_months`` months before it;
- the consumption hour falls before the lot's expiry date (never past expiry).

Consumption is served in (hour, id) order; each slice draws from its eligible lots oldest expiry first, ties broken by
production month and then lot id, so the same input always gives the same output. Hourly matching against a
generation profile is
reported separately (green/hourly.py): certificates are matched monthly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

SiteRule = Literal["same_site", "same_province"]
DEFAULT_VINTAGE_MONTHS = 12


@dataclass(frozen=True)
class LotInput:
    id: int
    remaining_wh: int
    production_month: date  # first day of the month
    expires_on: date  # usable for consumption strictly before this date
    market: str
    province: str
    site_id: int


@dataclass(frozen=True)
class ConsumptionInput:
    id: str  # the lease-hour key
    hour: datetime  # UTC start of the hour
    facility_wh: int  # still to cover (facility energy minus what is already green)
    site_id: int
    province: str
    market: str = "CN"
    site_rule: SiteRule = "same_province"


@dataclass(frozen=True)
class AllocationSlice:
    lot_id: int
    consumption_id: str
    energy_wh: int


def _month_index(value: date) -> int:
    return value.year * 12 + value.month - 1


def eligible(lot: LotInput, consumption: ConsumptionInput, vintage_months: int = DEFAULT_VINTAGE_MONTHS) -> bool:
    """Whether the lot may cover the consumption at all (market, site rule, vintage, expiry)."""
    if lot.market != consumption.market:
        return False
    if consumption.site_rule == "same_site":
        if lot.site_id != consumption.site_id:
            return False
    elif lot.province != consumption.province:
        return False
    consumed = _month_index(consumption.hour.date())
    produced = _month_index(lot.production_month)
    if not (consumed - vintage_months <= produced <= consumed):
        return False
    return consumption.hour.date() < lot.expires_on


def _lot_order(lot: LotInput) -> tuple[date, date, int]:
    return (lot.expires_on, lot.production_month, lot.id)


def allocate(
    lots: Iterable[LotInput],
    consumption: Iterable[ConsumptionInput],
    *,
    vintage_months: int = DEFAULT_VINTAGE_MONTHS,
) -> list[AllocationSlice]:
    """Greedy monthly matching; returns the slices in a deterministic order (the same as ``allocate_reference``).

    Consumption is served in hour order, so a lot that is used up, expired (the hour is on or after its expiry) or
    too old for the vintage rule stays out for every later slice: such lots are dropped from the candidate lists
    as the scan meets them, so a slice scans only live lots (the lists stay sorted; lots produced after the
    slice's month are skipped but kept)."""
    ordered_lots = sorted((lot for lot in lots if lot.remaining_wh > 0), key=_lot_order)
    remaining = {lot.id: lot.remaining_wh for lot in ordered_lots}
    produced_at = {lot.id: _month_index(lot.production_month) for lot in ordered_lots}
    by_province: dict[tuple[str, str], list[LotInput]] = {}
    by_site: dict[tuple[str, int], list[LotInput]] = {}
    for lot in ordered_lots:
        by_province.setdefault((lot.market, lot.province), []).append(lot)
        by_site.setdefault((lot.market, lot.site_id), []).append(lot)

    slices: list[AllocationSlice] = []
    seen: set[str] = set()
    for item in sorted(consumption, key=lambda c: (c.hour, c.id)):
        if item.id in seen:
            raise ValueError(f"consumption {item.id!r} appears twice")
        seen.add(item.id)
        need = item.facility_wh
        if need <= 0:
            continue
        candidates = (
            by_site.get((item.market, item.site_id))
            if item.site_rule == "same_site"
            else by_province.get((item.market, item.province))
        )
        if not candidates:
            continue
        day = item.hour.date()
        consumed = _month_index(day)
        oldest = consumed - vintage_months
        dead = 0
        for lot in candidates:
            left = remaining[lot.id]
            produced = produced_at[lot.id]
            if left <= 0 or produced < oldest or day >= lot.expires_on:
                dead += 1
                continue
            if produced > consumed:
                continue
            take = min(left, need)
            remaining[lot.id] = left - take
            need -= take
            slices.append(AllocationSlice(lot_id=lot.id, consumption_id=item.id, energy_wh=take))
            if need == 0:
                break
        if dead:
            candidates[:] = [
                lot
                for lot in candidates
                if remaining[lot.id] > 0 and produced_at[lot.id] >= oldest and day < lot.expires_on
            ]
    return slices


def allocate_reference(
    lots: Iterable[LotInput],
    consumption: Iterable[ConsumptionInput],
    *,
    vintage_months: int = DEFAULT_VINTAGE_MONTHS,
) -> list[AllocationSlice]:
    """The plain greedy matching, kept as the specification: ``allocate`` must return exactly its slices (a property
    test checks it). It scans every candidate lot for every slice, which is quadratic at scale."""
    ordered_lots = sorted((lot for lot in lots if lot.remaining_wh > 0), key=_lot_order)
    remaining = {lot.id: lot.remaining_wh for lot in ordered_lots}
    # Lots grouped by (market, province) and by site, so each slice scans only its candidates.
    by_province: dict[tuple[str, str], list[LotInput]] = {}
    by_site: dict[tuple[str, int], list[LotInput]] = {}
    for lot in ordered_lots:
        by_province.setdefault((lot.market, lot.province), []).append(lot)
        by_site.setdefault((lot.market, lot.site_id), []).append(lot)

    slices: list[AllocationSlice] = []
    seen: set[str] = set()
    for item in sorted(consumption, key=lambda c: (c.hour, c.id)):
        if item.id in seen:
            raise ValueError(f"consumption {item.id!r} appears twice")
        seen.add(item.id)
        need = item.facility_wh
        if need <= 0:
            continue
        candidates = (
            by_site.get((item.market, item.site_id), [])
            if item.site_rule == "same_site"
            else by_province.get((item.market, item.province), [])
        )
        for lot in candidates:
            left = remaining[lot.id]
            if left <= 0 or not eligible(lot, item, vintage_months):
                continue
            take = min(left, need)
            remaining[lot.id] = left - take
            need -= take
            slices.append(AllocationSlice(lot_id=lot.id, consumption_id=item.id, energy_wh=take))
            if need == 0:
                break
    return slices

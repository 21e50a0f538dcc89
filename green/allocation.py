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

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

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

    Sorts the consumption by (hour, id), refuses an id given twice and hands the columns to ``allocate_ordered``."""
    items = sorted(consumption, key=lambda c: (c.hour, c.id))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"consumption {item.id!r} appears twice")
        seen.add(item.id)
    rows = allocate_ordered(
        lots,
        [c.hour for c in items],
        [
            candidate_group(c.market, site_id=c.site_id)
            if c.site_rule == "same_site"
            else candidate_group(c.market, province=c.province)
            for c in items
        ],
        [c.facility_wh for c in items],
        vintage_months=vintage_months,
    )
    return [AllocationSlice(lot_id=lot_id, consumption_id=items[i].id, energy_wh=wh) for lot_id, i, wh in rows]


def candidate_group(market: str, *, province: str | None = None, site_id: int | None = None) -> tuple[str, str, object]:
    """The lots a consumption may draw on: its market's lots of one province (``same_province``) or of one site
    (``same_site``)."""
    return ("site", market, site_id) if province is None else ("province", market, province)


def allocate_ordered(
    lots: Iterable[LotInput],
    hours: Sequence[datetime],
    groups: Sequence[Hashable],
    needs: Sequence[int],
    *,
    vintage_months: int = DEFAULT_VINTAGE_MONTHS,
) -> list[tuple[int, int, int]]:
    """The greedy matching over consumption given as columns, already in (hour, id) order: consumption ``i`` is
    ``needs[i]`` Wh in the hour ``hours[i]`` drawing on the lots of ``groups[i]`` (a ``candidate_group``). Returns
    (lot id, i, Wh) in the order of ``allocate``. For callers holding a million rows, which would rather not build
    a million ``ConsumptionInput`` objects.

    Consumption is served in hour order, so a lot that is used up, expired (the hour is on or after its expiry) or
    too old for the vintage rule stays out for every later consumption: such lots are dropped from the candidate
    lists as the scan meets them (a slice of the list's head when they are all there, as lots are used up in list
    order), so a consumption scans only live lots; lots produced after the consumption's month are skipped but
    kept."""
    ordered_lots = sorted((lot for lot in lots if lot.remaining_wh > 0), key=_lot_order)
    # Per lot, one mutable list: [Wh left, production month index, expiry date, id] (shared by its two groups).
    state = {
        lot.id: [lot.remaining_wh, _month_index(lot.production_month), lot.expires_on, lot.id] for lot in ordered_lots
    }
    by_group: dict[Hashable, list[list[Any]]] = {}
    for lot in ordered_lots:
        by_group.setdefault(candidate_group(lot.market, province=lot.province), []).append(state[lot.id])
        by_group.setdefault(candidate_group(lot.market, site_id=lot.site_id), []).append(state[lot.id])

    rows: list[tuple[int, int, int]] = []
    append = rows.append
    last_hour: datetime | None = None
    day = date.min
    consumed = oldest = 0
    for i, need in enumerate(needs):
        if need <= 0:
            continue
        candidates = by_group.get(groups[i])
        if not candidates:
            continue
        hour = hours[i]
        if hour is not last_hour:
            last_hour = hour
            day = hour.date()
            consumed = day.year * 12 + day.month - 1
            oldest = consumed - vintage_months
        dead = 0
        scanned = 0
        for entry in candidates:
            scanned += 1
            left, produced, expires_on, lot_id = entry
            if left <= 0 or produced < oldest or day >= expires_on:
                dead += 1
                continue
            if produced > consumed:
                continue
            take = left if left < need else need
            entry[0] = left - take
            need -= take
            append((lot_id, i, take))
            if need == 0:
                break
        if dead:
            if dead == scanned or all(e[0] <= 0 or e[1] < oldest or day >= e[2] for e in candidates[:dead]):
                # The dead lots are the head of the list (the usual case: used up in list order).
                del candidates[:dead]
            else:
                candidates[:] = [e for e in candidates if e[0] > 0 and e[1] >= oldest and day < e[2]]
    return rows


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

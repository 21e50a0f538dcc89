"""Hourly matching of consumption to a site's green generation profile: pure, no ORM (issue 8).

Monthly matching (green/allocation.py) asks whether a month's certificates cover a month's consumption. Hourly
matching (carbon-free energy, CFE%, as in EnergyTag's granular certificates or Google's 24/7 CFE) asks it hour by
hour: in each hour, the green energy the site's contract or meter produced covers at most that hour's consumption.

For an hour with generation ``g`` and lease-hours consuming ``c_1 .. c_n`` (facility Wh, total ``C``):

- the hour's matched energy is ``min(g, C)``;
- it is shared among the lease-hours in proportion to their consumption, in whole Wh, by largest remainder
  (ties to the earlier key), so the shares add up exactly to the hour's matched energy;
- an hour without a generation figure matches nothing (unknown is not green).

CFE% of a set of lease-hours = their matched Wh / their facility Wh x 100.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class HourlyConsumption:
    key: str  # the lease-hour key
    hour: datetime  # UTC start of the hour
    facility_wh: int


def split_pro_rata(total: int, weights: list[tuple[str, int]]) -> dict[str, int]:
    """Split ``total`` whole units over the keys in proportion to their weights (largest remainder).

    The parts add up to ``total`` exactly and none exceeds its weight when ``total`` <= the sum of the weights."""
    weight_sum = sum(w for _k, w in weights)
    if total < 0 or any(w < 0 for _k, w in weights):
        raise ValueError("total and weights must not be negative")
    if weight_sum == 0:
        if total:
            raise ValueError("nothing to split over")
        return {k: 0 for k, _w in weights}
    parts: dict[str, int] = {}
    remainders: list[tuple[int, int, str]] = []
    given = 0
    for index, (key, weight) in enumerate(weights):
        quotient, remainder = divmod(total * weight, weight_sum)
        parts[key] = quotient
        given += quotient
        remainders.append((-remainder, index, key))
    for _neg, _index, key in sorted(remainders)[: total - given]:
        parts[key] += 1
    return parts


def hourly_match(generation: Mapping[datetime, int], consumption: Iterable[HourlyConsumption]) -> dict[str, int]:
    """Matched (hourly carbon-free) Wh per lease-hour key."""
    by_hour: dict[datetime, list[tuple[str, int]]] = defaultdict(list)
    seen: set[str] = set()
    for item in consumption:
        if item.key in seen:
            raise ValueError(f"consumption {item.key!r} appears twice")
        if item.facility_wh < 0:
            raise ValueError("facility_wh must not be negative")
        seen.add(item.key)
        by_hour[item.hour].append((item.key, item.facility_wh))
    matched: dict[str, int] = {}
    for hour, items in by_hour.items():
        items.sort()
        total = sum(wh for _k, wh in items)
        available = max(0, generation.get(hour, 0))
        matched.update(split_pro_rata(min(available, total), items))
    return matched


def cfe_pct(matched_wh: int, facility_wh: int) -> Decimal | None:
    """Hourly-matched share in percent with two decimals (None when nothing was consumed)."""
    if facility_wh <= 0:
        return None
    return (Decimal(matched_wh) * 100 / Decimal(facility_wh)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

"""Hourly rollup of usage records. Pure: no ORM.

Each record's integer measures are split between the UTC hours its window touches in proportion to the seconds
it spends in each (largest remainder, so the parts sum exactly to the record's figure). The rollup of an hour
is then a plain sum, independent of the order, batching or replay of the records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from core.money import allocate_minor
from core.timeutils import Window

SPLIT_MEASURES = ("accelerator_seconds", "energy_wh", "tokens_in", "tokens_out", "requests")


@dataclass(frozen=True, slots=True)
class RawUsage:
    window_start: datetime
    window_end: datetime
    accelerator_seconds: int
    utilization_bp: int | None
    energy_wh: int | None
    tokens_in: int
    tokens_out: int
    requests: int


@dataclass(slots=True)
class HourTotals:
    record_count: int = 0
    accelerator_seconds: int = 0
    energy_wh: int = 0
    records_without_energy: int = 0
    accelerator_seconds_without_energy: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    requests: int = 0
    # Σ utilisation x accelerator-seconds, for the weighted average.
    _utilization_weight: int = field(default=0, repr=False)
    _utilization_seconds: int = field(default=0, repr=False)

    @property
    def utilization_bp(self) -> int | None:
        if not self._utilization_seconds:
            return None
        return round(self._utilization_weight / self._utilization_seconds)


def rollup(records: Iterable[RawUsage]) -> dict[datetime, HourTotals]:
    hours: dict[datetime, HourTotals] = {}
    for record in records:
        pieces = list(Window(record.window_start, record.window_end).hours())
        weights = [piece.seconds for piece in pieces]
        splits = {
            name: allocate_minor(getattr(record, name) or 0, weights)
            if len(pieces) > 1
            else [getattr(record, name) or 0]
            for name in SPLIT_MEASURES
        }
        for index, piece in enumerate(pieces):
            totals = hours.setdefault(piece.start.replace(minute=0, second=0, microsecond=0), HourTotals())
            totals.record_count += 1
            seconds = splits["accelerator_seconds"][index]
            totals.accelerator_seconds += seconds
            totals.tokens_in += splits["tokens_in"][index]
            totals.tokens_out += splits["tokens_out"][index]
            totals.requests += splits["requests"][index]
            if record.energy_wh is None:
                totals.records_without_energy += 1
                totals.accelerator_seconds_without_energy += seconds
            else:
                totals.energy_wh += splits["energy_wh"][index]
            if record.utilization_bp is not None and seconds:
                totals._utilization_weight += record.utilization_bp * seconds
                totals._utilization_seconds += seconds
    return hours

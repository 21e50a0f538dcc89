"""Reconciliation of delivered usage against the lease contract. Pure: no ORM, no Django.

Per lease-hour: contracted accelerator-seconds (the lease's accelerators x the seconds of the hour inside the
lease), delivered accelerator-seconds (the hourly rollup), over-report flag (delivered > contracted), missing
flag (an elapsed hour with nothing delivered), and energy: measured where the records carried ``energy_wh``,
otherwise estimated as accelerator TDP x utilisation x time (flagged as estimated; utilisation unknown counts
as 100 %, the conservative upper bound).

SLA policy (``METERING_SLA_CREDIT_TIERS``, default ``DEFAULT_SLA_TIERS``): availability over a period is
delivered / contracted accelerator-seconds of its elapsed hours (delivered capped at contracted, so an
over-report cannot hide an outage). The credit is a fraction of the period's capacity charge, by the lowest
tier the availability falls below:

    availability >= 99 %   no credit
    availability <  99 %   10 %
    availability <  95 %   25 %
    availability <  90 %   50 %
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from core.timeutils import HOUR, Window

# (availability strictly below this, credit ratio), any order; the largest matching credit applies.
DEFAULT_SLA_TIERS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal("0.99"), Decimal("0.10")),
    (Decimal("0.95"), Decimal("0.25")),
    (Decimal("0.90"), Decimal("0.50")),
)
FULL_UTILISATION_BP = 10_000
AVAILABILITY_PLACES = Decimal("0.000001")


def parse_tiers(raw: Iterable[Sequence[object]]) -> tuple[tuple[Decimal, Decimal], ...]:
    """Tiers from settings (pairs of strings or numbers), validated: thresholds and credits within 0..1."""
    tiers = tuple((Decimal(str(threshold)), Decimal(str(credit))) for threshold, credit in raw)
    for threshold, credit in tiers:
        if not (0 <= threshold <= 1 and 0 <= credit <= 1):
            raise ValueError(f"SLA tier ({threshold}, {credit}) must lie within 0..1")
    return tiers


def contracted_seconds(accelerators: int, lease: Window, window: Window) -> int:
    """Accelerators x seconds of the lease inside the window."""
    overlap = lease.intersection(window)
    return accelerators * overlap.seconds if overlap else 0


def availability(delivered: int, contracted: int) -> Decimal | None:
    """delivered / contracted in 0..1 (6 places), None when nothing was contracted."""
    if contracted <= 0:
        return None
    ratio = Decimal(min(delivered, contracted)) / Decimal(contracted)
    return ratio.quantize(AVAILABILITY_PLACES, rounding=ROUND_HALF_UP)


def sla_credit_ratio(avail: Decimal | None, tiers: Iterable[tuple[Decimal, Decimal]] = DEFAULT_SLA_TIERS) -> Decimal:
    """The fraction of the capacity charge credited for this availability (0 when unknown)."""
    if avail is None:
        return Decimal(0)
    return max((credit for threshold, credit in tiers if avail < threshold), default=Decimal(0))


def estimate_energy_wh(tdp_w: int | None, utilization_bp: int | None, accelerator_seconds: int) -> int:
    """TDP (W) x utilisation x accelerator-seconds, in whole Wh (half up); 0 without a TDP."""
    if not tdp_w or accelerator_seconds <= 0:
        return 0
    util = FULL_UTILISATION_BP if utilization_bp is None else utilization_bp
    watt_seconds_bp = tdp_w * util * accelerator_seconds  # W x bp x s
    denominator = FULL_UTILISATION_BP * 3600
    return (watt_seconds_bp * 2 + denominator) // (2 * denominator)


@dataclass(frozen=True, slots=True)
class HourUsage:
    """The rollup of one lease-hour, as metering stored it."""

    accelerator_seconds: int = 0
    energy_wh: int = 0
    accelerator_seconds_without_energy: int = 0
    utilization_bp: int | None = None
    record_count: int = 0


@dataclass(frozen=True, slots=True)
class HourReconciliation:
    hour_start: datetime
    contracted_accelerator_seconds: int
    delivered_accelerator_seconds: int
    energy_wh: int  # measured + estimated
    energy_estimated_wh: int
    over_reported: bool
    missing: bool  # an elapsed hour of the lease with nothing delivered
    utilization_bp: int | None
    elapsed: bool = True

    @property
    def shortfall_accelerator_seconds(self) -> int:
        return max(0, self.contracted_accelerator_seconds - self.delivered_accelerator_seconds)


def reconcile_hour(
    *,
    hour_start: datetime,
    accelerators: int,
    lease: Window,
    usage: HourUsage | None,
    tdp_w: int | None,
    elapsed: bool = True,
) -> HourReconciliation:
    usage = usage or HourUsage()
    contracted = contracted_seconds(accelerators, lease, Window(hour_start, hour_start + HOUR))
    estimated = estimate_energy_wh(tdp_w, usage.utilization_bp, usage.accelerator_seconds_without_energy)
    return HourReconciliation(
        hour_start=hour_start,
        contracted_accelerator_seconds=contracted,
        delivered_accelerator_seconds=usage.accelerator_seconds,
        energy_wh=usage.energy_wh + estimated,
        energy_estimated_wh=estimated,
        over_reported=usage.accelerator_seconds > contracted,
        missing=elapsed and contracted > 0 and usage.accelerator_seconds == 0,
        utilization_bp=usage.utilization_bp,
        elapsed=elapsed,
    )


@dataclass(frozen=True, slots=True)
class PeriodSummary:
    contracted_accelerator_seconds: int  # whole window
    delivered_accelerator_seconds: int
    elapsed_contracted_accelerator_seconds: int
    elapsed_delivered_accelerator_seconds: int  # capped per hour at the contract
    energy_wh: int
    energy_estimated_wh: int
    availability: Decimal | None
    sla_credit_ratio: Decimal
    missing_hours: int
    over_reported_hours: int


def reconcile_period(
    *,
    accelerators: int,
    lease: Window,
    window: Window,
    usage_by_hour: dict[datetime, HourUsage],
    tdp_w: int | None,
    now: datetime,
    tiers: Iterable[tuple[Decimal, Decimal]] = DEFAULT_SLA_TIERS,
) -> tuple[PeriodSummary, list[HourReconciliation]]:
    """Every lease-hour of the window, and the period's totals; hours ending after ``now`` are not elapsed."""
    span = lease.intersection(window)
    hours: list[HourReconciliation] = []
    if span is not None:
        cursor = span.start.replace(minute=0, second=0, microsecond=0)
        while cursor < span.end:
            hours.append(
                reconcile_hour(
                    hour_start=cursor,
                    accelerators=accelerators,
                    lease=span,
                    usage=usage_by_hour.get(cursor),
                    tdp_w=tdp_w,
                    elapsed=cursor + HOUR <= now,
                )
            )
            cursor += HOUR
    elapsed = [h for h in hours if h.elapsed]
    elapsed_contracted = sum(h.contracted_accelerator_seconds for h in elapsed)
    elapsed_delivered = sum(min(h.delivered_accelerator_seconds, h.contracted_accelerator_seconds) for h in elapsed)
    avail = availability(elapsed_delivered, elapsed_contracted)
    summary = PeriodSummary(
        contracted_accelerator_seconds=sum(h.contracted_accelerator_seconds for h in hours),
        delivered_accelerator_seconds=sum(h.delivered_accelerator_seconds for h in hours),
        elapsed_contracted_accelerator_seconds=elapsed_contracted,
        elapsed_delivered_accelerator_seconds=elapsed_delivered,
        energy_wh=sum(h.energy_wh for h in hours),
        energy_estimated_wh=sum(h.energy_estimated_wh for h in hours),
        availability=avail,
        sla_credit_ratio=sla_credit_ratio(avail, tiers),
        missing_hours=sum(1 for h in elapsed if h.missing),
        over_reported_hours=sum(1 for h in hours if h.over_reported),
    )
    return summary, hours

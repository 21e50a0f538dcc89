"""The demo world, green part: certificate lots for the western-hub sites (one lot close to expiry, to show the
warning), an hourly generation profile for the Ningxia site, an allocation of the demo leases' metered usage and
the demo buyers' statements. Runs after the supply, metering and vouchers demos; tolerates none of their leases or
usage existing (then only lots and the profile are created). Idempotent: lots are found by their serials, the
profile replaces its hours, allocation is idempotent and unchanged statements are kept."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

from django.db import transaction

from accounts.models import Organization, OrganizationKind
from core.timeutils import floor_hour, utcnow
from green import services
from green.models import CertificateLot, ConsumptionAccount
from marketplace.models import Site

# (months before now, certificates, source, bundled with green power)
LOT_PLAN = [(2, 1, "wind", True), (6, 1, "solar", False), (21, 2, "hydro", False)]
SERIAL_BASE = 7_310_000_000  # demo GEC serials, far from anything a test or a user registers
PROFILE_SITE = "中卫云谷一号数据中心"
PROFILE_DAYS = 35


def _west_sites() -> list[Site]:
    return list(
        Site.objects.filter(hub__side="west", organization__memberships__user__email__endswith=".demo")
        .select_related("organization")
        .distinct()
        .order_by("id")
    )


def _lots(today: date) -> None:
    for site_index, site in enumerate(_west_sites()):
        for lot_index, (months_back, count, source, bundled) in enumerate(LOT_PLAN):
            first = SERIAL_BASE + site_index * 10_000 + lot_index * 100
            if CertificateLot.objects.filter(registry="GEC", serial_first=first).exists():
                continue
            production = services.add_months(today.replace(day=1), -months_back)
            services.lot_create(
                organization=site.organization,
                site_id=site.public_id,
                registry="GEC",
                serial_first=first,
                serial_last=first + count - 1,
                certificate_count=count,
                production_month=production,
                source=source,
                province=site.province,
                bundled_with_power=bundled,
                evidence_text=f"绿证核发交易系统 消费声明 {production:%Y-%m} / declared for consumption (demo)",
                actor_label="demo",
                today=today,
            )


def _profile(now: datetime) -> None:
    """A wind-plus-solar contract for the Ningxia site: solar peaks at noon Beijing time (04:00 UTC)."""
    site = Site.objects.filter(name=PROFILE_SITE).select_related("organization").first()
    if site is None:
        return
    start = floor_hour(now) - timedelta(days=PROFILE_DAYS)
    lines = ["hour_start,energy_wh"]
    for i in range(PROFILE_DAYS * 24):
        hour = start + timedelta(hours=i)
        local = (hour.hour + 8) % 24
        solar = max(0.0, math.sin(math.pi * (local - 6) / 12)) * 9000 if 6 <= local <= 18 else 0.0
        wind = 2500 + 1500 * math.sin(i / 17)
        lines.append(f"{hour:%Y-%m-%dT%H:00:00Z},{int(solar + wind)}")
    services.generation_profile_upload(
        organization=site.organization, site_id=site.public_id, content="\n".join(lines).encode()
    )


def _allocate_and_state(now: datetime) -> None:
    """Allocate the demo usage so far (its month is usually still open, so the monthly job has not run yet) and
    issue each demo buyer's month-to-date statement."""
    end = floor_hour(now)
    start = end - timedelta(days=62)
    consumption = services.consumption_for_period(start=start, end=end)
    if not consumption:
        return
    services.allocation_run(run_key="demo", consumption=consumption)
    buyers = Organization.objects.filter(
        kind=OrganizationKind.BUYER, pk__in={c.buyer_id for c in consumption if c.buyer_id}
    )
    months = sorted({date(c.hour_start.year, c.hour_start.month, 1) for c in consumption})
    for buyer in buyers:
        for month in months:
            period_end = min(services.add_months(month, 1), end.date())
            has_usage = ConsumptionAccount.objects.filter(
                buyer=buyer,
                hour_start__gte=datetime(month.year, month.month, 1, tzinfo=UTC),
                hour_start__lt=datetime(period_end.year, period_end.month, period_end.day, tzinfo=UTC),
            ).exists()
            if period_end > month and has_usage:
                services.statement_issue(organization=buyer, period_start=month, period_end=period_end)


def seed() -> None:
    now = utcnow()
    with transaction.atomic():
        _lots(now.date())
        _profile(now)
    _allocate_and_state(now)

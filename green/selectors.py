"""Reads of the green app; every tenant read takes the organisation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from django.db.models import Count, F, Max, Min, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from core.errors import ApplicationError
from green import emissions
from green.models import (
    ALLOCATABLE_STATUSES,
    CertificateLot,
    ConsumptionAccount,
    EmissionFactor,
    FactorKind,
    FactorScope,
    GenerationHour,
    Statement,
)
from marketplace.models import AcceleratorModel, Hub, Lease, Pool, Site
from metering.models import UsageHour


def lot_list(organization: Organization) -> QuerySet[CertificateLot]:
    return CertificateLot.objects.filter(organization=organization).select_related("site")


def lot_get(organization: Organization, public_id: UUID) -> CertificateLot:
    return get_object_or_404(lot_list(organization), public_id=public_id)


def _as_factor(row: EmissionFactor) -> emissions.Factor:
    return emissions.Factor(
        kgco2_per_kwh=row.kgco2_per_kwh,
        year=row.year,
        region_code=row.region_code,
        scope=row.scope,
        kind=row.kind,
        source=row.source,
    )


def _latest(scope: str, region_code: str, kind: str, year: int) -> EmissionFactor | None:
    return (
        EmissionFactor.objects.filter(scope=scope, region_code=region_code, kind=kind, year__lte=year)
        .order_by("-year")
        .first()
    )


def location_factor(*, province: str, grid_region: str, year: int) -> emissions.Factor:
    """The location-based factor: the province's, else the grid region's, else the national average, each of the
    latest year available at or before ``year``."""
    for scope, code in (
        (FactorScope.PROVINCE, province),
        (FactorScope.GRID_REGION, grid_region),
        (FactorScope.NATIONAL, "CN"),
    ):
        row = _latest(scope, code, FactorKind.AVERAGE, year)
        if row is not None:
            return _as_factor(row)
    raise ApplicationError("no_emission_factor", _("No grid emission factor is known for %(year)s.") % {"year": year})


def residual_factor(*, year: int) -> emissions.Factor:
    """The market-based residual: the national factor excluding market-traded non-fossil power."""
    row = _latest(FactorScope.NATIONAL, "CN", FactorKind.EXCLUDING_MARKET_TRADED_NON_FOSSIL, year)
    if row is None:
        raise ApplicationError(
            "no_emission_factor", _("No residual emission factor is known for %(year)s.") % {"year": year}
        )
    return _as_factor(row)


# --- Consumption from metering and leases ----------------------------------------------------------

# When some records of a lease-hour reported no energy, their share of the hour's accelerator-seconds is estimated
# at the accelerator's TDP (full power: an estimate never makes consumption smaller, so it never inflates the
# green share), and the hour is flagged as estimated. A model without a TDP counts at this many watts.
DEFAULT_ACCELERATOR_W = 700


@dataclass(frozen=True)
class LeaseSite:
    """What the allocation job needs of a lease: who bought it, where it ran and how to estimate energy."""

    public_id: str
    buyer_id: int
    site_id: int
    pue: Decimal
    accelerator_w: int | None  # the accelerator model's TDP, for hours whose records lacked energy


def lease_usage_hours(*, start: datetime, end: datetime) -> Iterator[tuple[str, datetime, int, int, int, int]]:
    """Every lease's usage hours in [start, end): (lease public id, hour, measured IT Wh, records, records without
    energy, accelerator-seconds).

    Reads metering's hourly rollups read-only: metering.selectors has no reader of rollups over a period for all
    providers (this platform job runs across tenants), so the query lives here."""
    rows = (
        UsageHour.objects.filter(subject_kind="lease", hour_start__gte=start, hour_start__lt=end)
        .order_by("hour_start", "subject_id")
        .values_list(
            "subject_id", "hour_start", "energy_wh", "record_count", "records_without_energy", "accelerator_seconds"
        )
    )
    for subject_id, hour, energy_wh, records, without, seconds in rows.iterator(chunk_size=20_000):
        yield str(subject_id), hour, energy_wh, records, without, seconds


def lease_usage_exists(*, start: datetime, end: datetime, updated_after: datetime | None = None) -> bool:
    """Whether leases used anything in [start, end) (rolled up after ``updated_after``, when given)."""
    rows = UsageHour.objects.filter(subject_kind="lease", hour_start__gte=start, hour_start__lt=end)
    if updated_after is not None:
        rows = rows.filter(updated_at__gt=updated_after)
    return rows.exists()


def lease_consumption_sql(*, start: datetime, end: datetime) -> tuple[str, list[Any]]:
    """A SELECT of every lease-hour of [start, end) as the allocation job stages it: n (the usage hour's id, a
    number unique in the run), consumption_key, site_id,
    hour_start, facility_wh, lease_public_id, buyer_id, it_energy_wh, pue, estimated. The same figures as
    ``lease_usage_hours`` + ``lease_sites`` + green.services.it_energy_wh / facility_wh (a test compares them), in
    SQL so that a month's million lease-hours never travel through Python: IT energy plus, for records without
    energy, their share of the accelerator-seconds at the model's TDP (700 W without one); facility Wh = IT Wh x
    the site's PUE rounded half up; usage of unknown subjects is skipped. A cross-tenant platform read."""
    usage = UsageHour._meta.db_table
    lease = Lease._meta.db_table
    pool = Pool._meta.db_table
    site = Site._meta.db_table
    model = AcceleratorModel._meta.db_table
    estimated = "u.records_without_energy > 0 AND u.record_count > 0"
    it_wh = (
        f"CASE WHEN {estimated} THEN u.energy_wh + ((u.accelerator_seconds * u.records_without_energy"
        f" / u.record_count) * COALESCE(NULLIF(m.tdp_w, 0), {DEFAULT_ACCELERATOR_W}) + 1800) / 3600"
        " ELSE u.energy_wh END"
    )
    sql = (
        "SELECT u.id AS n, u.subject_id::text || ':' || to_char(u.hour_start AT TIME ZONE 'UTC',"  # noqa: S608 (names are ours)
        ' \'YYYY-MM-DD"T"HH24:MI:SS"+00:00"\') AS consumption_key,'
        f" p.site_id, u.hour_start, round(({it_wh}) * s.pue)::bigint AS facility_wh, u.subject_id AS lease_public_id,"
        f" l.buyer_id, ({it_wh}) AS it_energy_wh, s.pue, ({estimated}) AS estimated"
        f" FROM {usage} u JOIN {lease} l ON l.public_id = u.subject_id JOIN {pool} p ON p.id = l.pool_id"
        f" JOIN {site} s ON s.id = p.site_id LEFT JOIN {model} m ON m.id = p.accelerator_model_id"
        " WHERE u.subject_kind = 'lease' AND u.hour_start >= %s AND u.hour_start < %s"
    )
    return sql, [start, end]


def lease_sites(public_ids: Iterable[str]) -> dict[str, LeaseSite]:
    """The leases' buyers and sites (with the site's PUE) by lease public id: a cross-tenant platform read."""
    wanted = list(set(public_ids))
    found: dict[str, LeaseSite] = {}
    for start in range(0, len(wanted), 5000):
        rows = Lease.objects.filter(public_id__in=wanted[start : start + 5000]).values_list(
            "public_id", "buyer_id", "pool__site_id", "pool__site__pue", "pool__accelerator_model__tdp_w"
        )
        for public_id, buyer_id, site_id, pue, tdp in rows:
            found[str(public_id)] = LeaseSite(str(public_id), buyer_id, site_id, pue, tdp)
    return found


def lease_labels(public_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """Pool, site and province of leases, for statements."""
    rows = Lease.objects.filter(public_id__in=list(set(public_ids))).select_related("pool__site")
    return {
        str(lease.public_id): {
            "pool": lease.pool.name,
            "site": lease.pool.site.name,
            "province": lease.pool.site.province,
            "grid_region": lease.pool.site.grid_region,
            "start": lease.start.isoformat(),
            "end": lease.end.isoformat(),
        }
        for lease in rows
    }


def buyer_lease_choices(organization: Organization) -> list[tuple[str, str]]:
    """The buyer's leases that have metered green accounting, for the statement form."""
    ids = ConsumptionAccount.objects.filter(buyer=organization).values_list("lease_public_id", flat=True).distinct()
    labels = lease_labels(str(i) for i in ids if i)
    return sorted(
        ((key, f"{v['pool']} · {v['site']} · {v['start'][:10]}") for key, v in labels.items()), key=lambda x: x[1]
    )


# --- Shares, statements, dashboards --------------------------------------------------------------


def share_pct(green_wh: int, facility_wh: int) -> Decimal | None:
    if facility_wh <= 0:
        return None
    return (Decimal(green_wh) * 100 / Decimal(facility_wh)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def site_shares(*, start: datetime, end: datetime) -> dict[int, tuple[int, int]]:
    """(facility Wh, green Wh) per site over [start, end), from the consumption accounts."""
    rows = (
        ConsumptionAccount.objects.filter(hour_start__gte=start, hour_start__lt=end)
        .values("site_id")
        .annotate(facility=Sum("facility_wh"), green=Sum("allocated_wh"))
    )
    return {r["site_id"]: (r["facility"] or 0, r["green"] or 0) for r in rows}


def sites_by_id(ids: Iterable[int]) -> dict[int, Site]:
    return {s.pk: s for s in Site.objects.filter(pk__in=list(ids)).select_related("hub", "organization")}


@dataclass(frozen=True)
class HubShare:
    code: str
    name: str
    side: str
    sites: int
    facility_wh: int
    green_wh: int
    share_pct: Decimal | None
    meets_target: bool


GREEN_TARGET_PCT = Decimal(80)


def hub_shares(*, start: datetime, end: datetime) -> list[HubShare]:
    """Green share per national hub over [start, end) against the 80% target (all hubs, also those without
    metered consumption)."""
    rows = (
        ConsumptionAccount.objects.filter(hour_start__gte=start, hour_start__lt=end, site__hub__isnull=False)
        .values("site__hub_id")
        .annotate(facility=Sum("facility_wh"), green=Sum("allocated_wh"), sites=Count("site_id", distinct=True))
    )
    by_hub: dict[int, dict[str, Any]] = {r["site__hub_id"]: dict(r) for r in rows}
    result = []
    for hub in Hub.objects.order_by("side", "code"):
        row: dict[str, Any] = by_hub.get(hub.pk, {})
        facility, green = row.get("facility") or 0, row.get("green") or 0
        share = share_pct(green, facility)
        result.append(
            HubShare(
                code=hub.code,
                name=hub.name_zh,
                side=hub.side,
                sites=row.get("sites") or 0,
                facility_wh=facility,
                green_wh=green,
                share_pct=share,
                meets_target=share is not None and share >= GREEN_TARGET_PCT,
            )
        )
    return result


def buyer_accounts(
    organization: Organization, *, start: datetime, end: datetime, lease_public_id: str | None = None
) -> QuerySet[ConsumptionAccount]:
    accounts = ConsumptionAccount.objects.filter(buyer=organization, hour_start__gte=start, hour_start__lt=end)
    if lease_public_id:
        accounts = accounts.filter(lease_public_id=lease_public_id)
    return accounts


def site_accounts_in_hours(site_id: int, hours: Iterable[datetime]) -> list[tuple[str, datetime, int]]:
    """Every lease-hour of a site in the given hours (all buyers: generation is shared by the whole site)."""
    return list(
        ConsumptionAccount.objects.filter(site_id=site_id, hour_start__in=list(hours)).values_list(
            "consumption_key", "hour_start", "facility_wh"
        )
    )


def generation_for(site_id: int, *, start: datetime, end: datetime) -> dict[datetime, int]:
    return dict(
        GenerationHour.objects.filter(site_id=site_id, hour_start__gte=start, hour_start__lt=end).values_list(
            "hour_start", "energy_wh"
        )
    )


def generation_summary(organization: Organization) -> list[dict[str, Any]]:
    """Per site of the provider: hours of profile uploaded, their span and total."""
    rows = (
        GenerationHour.objects.filter(organization=organization)
        .values("site__name", "site__public_id")
        .annotate(hours=Count("id"), first=Min("hour_start"), last=Max("hour_start"), total=Sum("energy_wh"))
        .order_by("site__name")
    )
    return [dict(r) for r in rows]


def buyer_monthly(organization: Organization, *, months: int = 12) -> list[dict[str, Any]]:
    """The buyer's last ``months`` months with consumption: facility and green kWh, share, and CO2 both ways
    (location-based with each site's factor, market-based with the residual factor), for the dashboard chart."""
    rows = list(
        ConsumptionAccount.objects.filter(buyer=organization)
        .annotate(month=TruncMonth("hour_start", tzinfo=UTC))
        .values("month", "site_id", "site__province", "site__grid_region")
        .annotate(facility=Sum("facility_wh"), green=Sum("allocated_wh"))
        .order_by("month")
    )
    by_month: dict[datetime, dict[str, Any]] = {}
    for r in rows:
        entry = by_month.setdefault(
            r["month"], {"month": r["month"], "facility_wh": 0, "green_wh": 0, "location_kg": Decimal(0)}
        )
        facility, green = r["facility"] or 0, r["green"] or 0
        entry["facility_wh"] += facility
        entry["green_wh"] += green
        factor = location_factor(province=r["site__province"], grid_region=r["site__grid_region"], year=r["month"].year)
        entry["location_kg"] += emissions.location_based(facility, factor).kgco2
    series = [by_month[m] for m in sorted(by_month)][-months:]
    for entry in series:
        residual = residual_factor(year=entry["month"].year)
        entry["market_kg"] = emissions.market_based(entry["facility_wh"], entry["green_wh"], residual).kgco2
        entry["share_pct"] = share_pct(entry["green_wh"], entry["facility_wh"])
    return series


def statement_list(organization: Organization) -> QuerySet[Statement]:
    return Statement.objects.filter(organization=organization)


def statement_get(organization: Organization, public_id: UUID) -> Statement:
    return get_object_or_404(statement_list(organization), public_id=public_id)


def statement_by_code(code: str) -> Statement:
    """Public: the statement a verification code names (404 for any other code)."""
    return get_object_or_404(Statement.objects.select_related("superseded_by"), verification_code=code)


def lots_expiring(organization: Organization, *, today: date, within_days: int = 90) -> QuerySet[CertificateLot]:
    """Active or partly allocated lots with green Wh left that expire within ``within_days``: allocate or lose them."""
    return (
        lot_list(organization)
        .filter(
            status__in=ALLOCATABLE_STATUSES, expires_on__gt=today, expires_on__lte=today + timedelta(days=within_days)
        )
        .filter(allocated_wh__lt=F("energy_wh"))
    )

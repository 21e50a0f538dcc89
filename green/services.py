"""Writes of the green app: certificate lots (one, or a CSV of many), withdrawal, allocation runs."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, OrganizationKind
from accounts.regions import PROVINCE_EN_BY_CODE
from core.audit import audit_record
from core.errors import ApplicationError, FieldError, ValidationFailed
from core.timeutils import utcnow
from green import allocation, emissions, selectors
from green.models import (
    WH_PER_CERTIFICATE,
    Allocation,
    CertificateLot,
    ConsumptionAccount,
    EnergySource,
    LotStatus,
    Registry,
)
from marketplace.models import Site
from metering.models import UsageHour

# Validity from the production month, in months. GEC: two years (DESIGN.md §4.7). GO: 12 months (EU RED II).
# I-REC has no registry-wide expiry; we apply the GEC rule so a lot is never counted indefinitely.
VALIDITY_MONTHS = {Registry.GEC: 24, Registry.IREC: 24, Registry.GO: 12}
# The Chinese certificate market covers the mainland; Taiwan, Hong Kong and Macao are other markets.
OUTSIDE_CN_MARKET = {"71", "81", "82"}
MAX_CSV_LINES = 5000
MAX_SERIAL = 10**18  # fits int8 with room for serial_last + 1
MAX_CERTIFICATES = 10_000_000  # 10 TWh in one lot: far beyond any real declaration


def add_months(value: date, months: int) -> date:
    index = value.year * 12 + value.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def lot_expiry(registry: str, production_month: date) -> date:
    return add_months(production_month.replace(day=1), VALIDITY_MONTHS[Registry(registry)])


def _require_provider(organization: Organization) -> None:
    if organization.kind != OrganizationKind.PROVIDER:
        raise ApplicationError("not_a_provider", _("Only providers upload green certificates."), status_code=403)


def _overlap_error() -> FieldError:
    return FieldError(
        "serials_overlap",
        _("These serials overlap a certificate lot already registered in this registry."),
        "serial_first",
    )


def _validate_lot(
    organization: Organization,
    *,
    site_id: UUID | str | None,
    registry: str,
    serial_first: int | None,
    serial_last: int | None,
    certificate_count: int | None,
    energy_wh: int | None,
    production_month: date | None,
    source: str,
    province: str,
    evidence_text: str,
    evidence_file: Any,
    today: date,
) -> tuple[list[FieldError], Site | None, date | None]:
    errors: list[FieldError] = []
    site = None
    try:
        site = Site.objects.get(organization=organization, public_id=site_id) if site_id else None
    except (Site.DoesNotExist, ValueError, TypeError):
        site = None
    if site is None:
        errors.append(FieldError("unknown_site", _("Choose one of your own sites."), "site_id"))
    if registry not in Registry.values:
        errors.append(FieldError("unknown_registry", _("Unknown registry: use GEC, I-REC or GO."), "registry"))
    if source not in EnergySource.values:
        errors.append(FieldError("unknown_source", _("Unknown energy source."), "source"))
    if province not in PROVINCE_EN_BY_CODE:
        errors.append(FieldError("unknown_province", _("Unknown province code (GB/T 2260)."), "province"))
    elif province in OUTSIDE_CN_MARKET:
        errors.append(
            FieldError("province_outside_market", _("This province is outside the site's market (CN)."), "province")
        )
    if serial_first is not None and serial_first > MAX_SERIAL:
        serial_first = None
    if serial_last is not None and serial_last > MAX_SERIAL:
        serial_last = None
    too_large = certificate_count is not None and certificate_count > MAX_CERTIFICATES
    if too_large:
        errors.append(
            FieldError(
                "lot_too_large",
                _("A lot holds at most %(n)s certificates.") % {"n": MAX_CERTIFICATES},
                "certificate_count",
            )
        )
        certificate_count = None
    if serial_first is None or serial_first < 0:
        errors.append(
            FieldError("invalid_serial", _("The first serial is a whole number from 0 to 10^18."), "serial_first")
        )
    if serial_last is None or serial_last < 0:
        errors.append(
            FieldError("invalid_serial", _("The last serial is a whole number from 0 to 10^18."), "serial_last")
        )
    if serial_first is not None and serial_last is not None and serial_first >= 0 and serial_last >= 0:
        if serial_last < serial_first:
            errors.append(FieldError("serial_order", _("The last serial must not be below the first."), "serial_last"))
        elif certificate_count is not None and certificate_count != serial_last - serial_first + 1:
            errors.append(
                FieldError(
                    "count_mismatch",
                    _("The range %(first)s–%(last)s holds %(n)s certificates, not %(count)s.")
                    % {
                        "first": serial_first,
                        "last": serial_last,
                        "n": serial_last - serial_first + 1,
                        "count": certificate_count,
                    },
                    "certificate_count",
                )
            )
    if too_large:
        pass
    elif certificate_count is None or certificate_count <= 0:
        errors.append(FieldError("invalid_count", _("Give a positive number of certificates."), "certificate_count"))
    elif energy_wh is not None and energy_wh != certificate_count * WH_PER_CERTIFICATE:
        errors.append(
            FieldError(
                "energy_mismatch",
                _("One certificate is 1 MWh: %(count)s certificates are %(wh)s Wh.")
                % {"count": certificate_count, "wh": certificate_count * WH_PER_CERTIFICATE},
                "energy_wh",
            )
        )
    if not (evidence_text or "").strip() and not evidence_file:
        errors.append(
            FieldError(
                "evidence_required",
                _("Attach the declared-for-consumption evidence (text or a file)."),
                "evidence_text",
            )
        )
    expires_on = None
    if production_month is None:
        errors.append(FieldError("invalid_month", _("Give the production month (YYYY-MM)."), "production_month"))
    elif production_month.replace(day=1) > today:
        errors.append(FieldError("future_production", _("The production month is in the future."), "production_month"))
    elif registry in Registry.values:
        expires_on = lot_expiry(registry, production_month)
        if expires_on <= today:
            errors.append(
                FieldError(
                    "lot_expired",
                    _("These certificates expired on %(date)s.") % {"date": expires_on.isoformat()},
                    "production_month",
                )
            )
    return errors, site, expires_on


def _lock_registry(registry: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"green.lot.serials:{registry}"])


def lot_create(
    *,
    organization: Organization,
    site_id: UUID | str | None,
    registry: str,
    serial_first: int | None,
    serial_last: int | None,
    certificate_count: int | None,
    production_month: date | None,
    source: str,
    province: str,
    energy_wh: int | None = None,
    bundled_with_power: bool = False,
    evidence_text: str = "",
    evidence_file: Any = None,
    actor: Any = None,
    actor_label: str | None = None,
    today: date | None = None,
) -> CertificateLot:
    """Register a lot. Every mistake comes back as a field error and nothing is saved.

    Overlaps are checked under a per-registry advisory lock (for a clear message) and refused by the database's
    exclusion constraint too (for the race the lock does not cover, e.g. a withdrawn lot's serials)."""
    _require_provider(organization)
    today = today or utcnow().date()
    errors, site, expires_on = _validate_lot(
        organization,
        site_id=site_id,
        registry=registry,
        serial_first=serial_first,
        serial_last=serial_last,
        certificate_count=certificate_count,
        energy_wh=energy_wh,
        production_month=production_month,
        source=source,
        province=province,
        evidence_text=evidence_text,
        evidence_file=evidence_file,
        today=today,
    )
    if errors:
        raise ValidationFailed(errors)
    assert site is not None
    assert expires_on is not None
    assert production_month is not None
    assert serial_first is not None
    assert serial_last is not None
    assert certificate_count is not None
    try:
        with transaction.atomic():
            _lock_registry(registry)
            clash = (
                CertificateLot.objects.filter(
                    registry=registry, serial_first__lte=serial_last, serial_last__gte=serial_first
                )
                .exclude(status=LotStatus.WITHDRAWN)
                .exists()
            )
            if clash:
                raise ValidationFailed([_overlap_error()])
            lot = CertificateLot.objects.create(
                organization=organization,
                site=site,
                registry=registry,
                serial_first=serial_first,
                serial_last=serial_last,
                certificate_count=certificate_count,
                energy_wh=certificate_count * WH_PER_CERTIFICATE,
                production_month=production_month.replace(day=1),
                source=source,
                province=province,
                bundled_with_power=bundled_with_power,
                expires_on=expires_on,
                evidence_text=(evidence_text or "").strip(),
                evidence_file=evidence_file or "",
            )
            audit_record(
                action="green.lot.create",
                target=lot,
                actor=actor,
                actor_label=actor_label,
                organization=organization,
                after={"registry": registry, "serials": f"{serial_first}-{serial_last}", "energy_wh": lot.energy_wh},
            )
    except IntegrityError as exc:
        if "lot_serials_disjoint" in str(exc):
            raise ValidationFailed([_overlap_error()]) from exc
        raise
    return lot


CSV_COLUMNS = [
    "site_id",
    "registry",
    "serial_first",
    "serial_last",
    "certificate_count",
    "production_month",
    "source",
    "province",
    "bundled_with_power",
    "evidence",
]


def _int_or_none(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def _month_or_none(text: str | None) -> date | None:
    value = (text or "").strip()
    try:
        return date.fromisoformat(f"{value[:7]}-01") if len(value) in (7, 10) else None
    except ValueError:
        return None


def lots_upload_csv(
    *,
    organization: Organization,
    content: bytes,
    actor: Any = None,
    actor_label: str | None = None,
    today: date | None = None,
) -> list[CertificateLot]:
    """Register every lot of a CSV (columns CSV_COLUMNS, optional energy_wh) or none: errors name their line."""
    _require_provider(organization)
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApplicationError("csv_encoding", _("The file must be UTF-8 text."), field="file") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ApplicationError(
            "csv_columns", _("Missing columns: %(columns)s.") % {"columns": ", ".join(missing)}, field="file"
        )
    errors: list[FieldError] = []
    lots: list[CertificateLot] = []
    with transaction.atomic():
        for line_no, row in enumerate(reader, start=2):
            if line_no - 1 > MAX_CSV_LINES:
                raise ApplicationError(
                    "csv_too_long", _("Upload at most %(n)s lots at once.") % {"n": MAX_CSV_LINES}, field="file"
                )
            try:
                with transaction.atomic():
                    lots.append(
                        lot_create(
                            organization=organization,
                            site_id=(row.get("site_id") or "").strip() or None,
                            registry=(row.get("registry") or "").strip(),
                            serial_first=_int_or_none(row.get("serial_first")),
                            serial_last=_int_or_none(row.get("serial_last")),
                            certificate_count=_int_or_none(row.get("certificate_count")),
                            energy_wh=_int_or_none(row.get("energy_wh")) if row.get("energy_wh") else None,
                            production_month=_month_or_none(row.get("production_month")),
                            source=(row.get("source") or "").strip(),
                            province=(row.get("province") or "").strip(),
                            bundled_with_power=(row.get("bundled_with_power") or "").strip().lower()
                            in {"1", "true", "yes", "y"},
                            evidence_text=row.get("evidence") or "",
                            actor=actor,
                            actor_label=actor_label,
                            today=today,
                        )
                    )
            except ApplicationError as exc:
                errors.extend(
                    FieldError(e.code, e.message, f"lines[{line_no}].{e.field}" if e.field else f"lines[{line_no}]")
                    for e in exc.errors
                )
        if not lots and not errors:
            raise ApplicationError("csv_empty", _("The file holds no lots."), field="file")
        if errors:
            raise ValidationFailed(errors)  # leaving the atomic block by an exception rolls every line back
    return lots


def lot_withdraw(
    *, organization: Organization, lot: CertificateLot, actor: Any = None, actor_label: str | None = None
) -> CertificateLot:
    """Withdraw a lot nothing was allocated from (allocations are final)."""
    with transaction.atomic():
        locked = CertificateLot.objects.select_for_update().get(pk=lot.pk, organization=organization)
        if locked.status == LotStatus.WITHDRAWN:
            return locked
        if locked.allocated_wh > 0:
            raise ApplicationError(
                "lot_allocated", _("Green energy of this lot is already allocated: it cannot be withdrawn.")
            )
        before = {"status": locked.status}
        locked.status = LotStatus.WITHDRAWN
        locked.withdrawn_at = utcnow()
        locked.save(update_fields=["status", "withdrawn_at"])
        audit_record(
            action="green.lot.withdraw",
            target=locked,
            actor=actor,
            actor_label=actor_label,
            organization=organization,
            before=before,
            after={"status": locked.status},
        )
    return locked


# --- Consumption and allocation --------------------------------------------------------------------


def facility_wh(energy_wh: int, pue: Decimal) -> int:
    """Facility energy of a lease-hour: IT energy x the site's PUE, rounded half up to whole Wh."""
    return int((Decimal(energy_wh) * pue).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class ConsumptionSlice:
    """One lease-hour's facility energy at a site. Until leases exist (issue 4) callers build these themselves;
    later they come from metering's UsageHour rows (energy_wh x the site's PUE, see ``facility_wh``)."""

    key: str
    site_id: int
    hour_start: datetime
    facility_wh: int


@dataclass(frozen=True)
class RunResult:
    run_key: str
    allocations: int
    energy_wh: int


def allocation_run(
    *,
    run_key: str,
    consumption: Sequence[ConsumptionSlice],
    site_rule: allocation.SiteRule = "same_province",
    vintage_months: int = allocation.DEFAULT_VINTAGE_MONTHS,
) -> RunResult:
    """Allocate the eligible lots' remaining Wh to the consumption, in one transaction.

    The database holds the invariants whatever jobs race or repeat: lots and consumption accounts are locked in
    id order before planning; each slice is written with conditional UPDATEs (``allocated_wh + x <= energy_wh`` on
    the lot, ``<= facility_wh`` on the consumption) backed by CHECK constraints; and (run_key, lot, consumption)
    is unique, so a repeated run writes nothing twice."""
    if not consumption:
        return RunResult(run_key, 0, 0)
    sites = {s.pk: s for s in Site.objects.filter(pk__in={c.site_id for c in consumption})}
    written = 0
    written_wh = 0
    with transaction.atomic():
        ConsumptionAccount.objects.bulk_create(
            [
                ConsumptionAccount(
                    consumption_key=c.key, site_id=c.site_id, hour_start=c.hour_start, facility_wh=c.facility_wh
                )
                for c in sorted(consumption, key=lambda c: c.key)  # one insert order: racing runs cannot deadlock
            ],
            ignore_conflicts=True,
        )
        accounts = list(
            ConsumptionAccount.objects.select_for_update()
            .filter(consumption_key__in=[c.key for c in consumption])
            .order_by("id")
        )
        provinces = {s.province for s in sites.values()}
        first_hour = min(c.hour_start for c in consumption)
        lots = list(
            CertificateLot.objects.select_for_update()
            .filter(status=LotStatus.ACTIVE, province__in=provinces, expires_on__gt=first_hour.date())
            .filter(allocated_wh__lt=F("energy_wh"))
            .order_by("id")
        )
        plan = allocation.allocate(
            [
                allocation.LotInput(
                    id=lot.pk,
                    remaining_wh=lot.remaining_wh,
                    production_month=lot.production_month,
                    expires_on=lot.expires_on,
                    market=lot.market,
                    province=lot.province,
                    site_id=lot.site_id,
                )
                for lot in lots
            ],
            [
                allocation.ConsumptionInput(
                    id=account.consumption_key,
                    hour=account.hour_start,
                    facility_wh=account.facility_wh - account.allocated_wh,
                    site_id=account.site_id,
                    province=sites[account.site_id].province,
                    site_rule=site_rule,
                )
                for account in accounts
            ],
            vintage_months=vintage_months,
        )
        hours = {a.consumption_key: a.hour_start for a in accounts}
        for item in plan:
            if not _apply_slice(run_key, item, hours[item.consumption_id]):
                continue
            written += 1
            written_wh += item.energy_wh
        CertificateLot.objects.filter(pk__in=[lot.pk for lot in lots], allocated_wh=F("energy_wh")).update(
            status=LotStatus.ALLOCATED
        )
    return RunResult(run_key, written, written_wh)


class _SliceRefused(Exception):
    pass


def _apply_slice(run_key: str, item: allocation.AllocationSlice, hour: datetime) -> bool:
    """Write one slice, or nothing (a savepoint: a refused slice leaves the run's other slices intact)."""
    try:
        with transaction.atomic():
            Allocation.objects.create(
                lot_id=item.lot_id,
                consumption_key=item.consumption_id,
                hour_start=hour,
                energy_wh=item.energy_wh,
                run_key=run_key,
            )
            lot_ok = CertificateLot.objects.filter(
                pk=item.lot_id, status=LotStatus.ACTIVE, allocated_wh__lte=F("energy_wh") - item.energy_wh
            ).update(allocated_wh=F("allocated_wh") + item.energy_wh)
            account_ok = ConsumptionAccount.objects.filter(
                consumption_key=item.consumption_id, allocated_wh__lte=F("facility_wh") - item.energy_wh
            ).update(allocated_wh=F("allocated_wh") + item.energy_wh)
            if not (lot_ok and account_ok):
                raise _SliceRefused
    except (IntegrityError, _SliceRefused):
        return False
    return True


def allocation_reverse(*, allocation_row: Allocation, actor: Any = None) -> Allocation:
    """Correct an allocation: a reversal row gives its Wh back to the lot and the consumption."""
    with transaction.atomic():
        original = Allocation.objects.select_for_update().get(pk=allocation_row.pk)
        if original.reversal_of_id is not None or Allocation.objects.filter(reversal_of=original).exists():
            raise ApplicationError("already_reversed", _("This allocation is already reversed."))
        reversal = Allocation.objects.create(
            lot_id=original.lot_id,
            consumption_key=original.consumption_key,
            hour_start=original.hour_start,
            energy_wh=-original.energy_wh,
            run_key=f"reversal:{original.pk}",
            reversal_of=original,
        )
        CertificateLot.objects.filter(pk=original.lot_id).update(allocated_wh=F("allocated_wh") - original.energy_wh)
        CertificateLot.objects.filter(pk=original.lot_id, status=LotStatus.ALLOCATED).update(status=LotStatus.ACTIVE)
        ConsumptionAccount.objects.filter(consumption_key=original.consumption_key).update(
            allocated_wh=F("allocated_wh") - original.energy_wh
        )
        audit_record(
            action="green.allocation.reverse",
            target=reversal,
            actor=actor,
            after={"reversal_of": original.pk, "energy_wh": reversal.energy_wh},
        )
    return reversal


def allocations_total_wh(keys: Iterable[str]) -> int:
    return Allocation.objects.filter(consumption_key__in=list(keys)).aggregate(s=Sum("energy_wh"))["s"] or 0


def consumption_from_usage_hours(rows: Iterable[UsageHour], site: Site) -> list[ConsumptionSlice]:
    """Consumption slices of a site's lease-hours: facility_wh = metered IT energy_wh x the site's PUE.

    The caller names the site: until leases exist (issue 4), a usage hour's subject cannot be tied to a site here.
    """
    return [
        ConsumptionSlice(
            key=f"{row.subject_id}:{row.hour_start.isoformat()}",
            site_id=site.pk,
            hour_start=row.hour_start,
            facility_wh=facility_wh(row.energy_wh, site.pue),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class SiteEmissions:
    location: emissions.Emissions
    market: emissions.Emissions


def site_emissions(*, site: Site, year: int, facility_wh: int, green_wh: int) -> SiteEmissions:
    """Both CO2 figures of a site's consumption in a year, with the factors (and sources) used."""
    location_factor = selectors.location_factor(province=site.province, grid_region=site.grid_region, year=year)
    return SiteEmissions(
        location=emissions.location_based(facility_wh, location_factor),
        market=emissions.market_based(facility_wh, green_wh, selectors.residual_factor(year=year)),
    )

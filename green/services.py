"""Writes of the green app: certificate lots (one, or a CSV of many), withdrawal, allocation runs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Sum, Value, When
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, OrganizationKind
from accounts.regions import PROVINCE_EN_BY_CODE
from core.audit import audit_record
from core.errors import ApplicationError, FieldError, ValidationFailed
from core.outbox import outbox_enqueue
from core.timeutils import parse_rfc3339, utcnow
from green import allocation, emissions, hourly, selectors
from green.models import (
    ALLOCATABLE_STATUSES,
    WH_PER_CERTIFICATE,
    Allocation,
    AllocationPeriod,
    AllocationPeriodStatus,
    CertificateLot,
    ConsumptionAccount,
    EnergySource,
    GenerationHour,
    LotStatus,
    Registry,
    Statement,
    StatementStatus,
)
from marketplace import services as market_services
from marketplace.models import Site
from metering import selectors as metering_selectors
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
    """One lease-hour's facility energy at a site: metering's hourly IT energy x the site's PUE (see
    ``consumption_for_period``); tests and benchmarks may build them by hand."""

    key: str
    site_id: int
    hour_start: datetime
    facility_wh: int
    lease_public_id: str | None = None
    buyer_id: int | None = None
    it_energy_wh: int | None = None
    pue: Decimal | None = None
    estimated: bool = False


@dataclass(frozen=True)
class RunResult:
    run_key: str
    allocations: int
    energy_wh: int


_STAGING_COLUMNS = [
    "consumption_key",
    "site_id",
    "hour_start",
    "facility_wh",
    "lease_public_id",
    "buyer_id",
    "it_energy_wh",
    "pue",
    "estimated",
]
_STAGING = "green_account_staging"
_PLAN = "green_plan"
_ACCOUNTS = "green_consumptionaccount"
_LOTS = "green_certificatelot"
_ALLOCATIONS = "green_allocation"
MAX_ATTEMPTS = 5
ANALYZE_AFTER_HOURS = 50_000  # a month job staging at least this many lease-hours refreshes the accounts' statistics


class _Refused(Exception):
    """The database refused a write of the plan (a condition or a row count failed): the attempt is rolled back."""


def _staging_create(cursor: Any) -> None:
    """The run's staging tables (temporary, emptied at commit and at the start of each run): the consumption of
    the run (``n`` numbers its rows: the usage hour's id, or the position) and the allocator's plan."""
    cursor.execute(
        f'CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (n bigint, consumption_key varchar(100) COLLATE "C",'
        " site_id bigint, hour_start timestamptz, facility_wh bigint, lease_public_id uuid, buyer_id bigint,"
        " it_energy_wh bigint, pue numeric(4, 2), estimated boolean) ON COMMIT DELETE ROWS"
    )
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_PLAN} (seq bigint, lot_id bigint, n bigint, energy_wh bigint,"
        " existing boolean) ON COMMIT DELETE ROWS"
    )
    cursor.execute(f"TRUNCATE {_STAGING}, {_PLAN}")  # empty even inside an enclosing transaction


def _bulk_settings() -> None:
    """Settings of an allocation run's transaction. Sorts and hashes of a million staged rows in memory rather
    than in temporary files (work_mem). The commit does not wait for the run's WAL to reach the disk
    (asynchronous commit: some hundred MB for a month of a million lease-hours): atomicity and every constraint are
    unchanged; a crash within the next fraction of a second can only lose the whole run, never part of it, and
    the lost run's month is then not completed, so the beat job runs it again."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _analyze(cursor: Any, table: str) -> None:
    """Statistics for a staging table (autovacuum never analyzes temporary tables): row counts and a small sample
    are all the planner needs to choose hash joins."""
    cursor.execute("SET LOCAL default_statistics_target = 10")
    cursor.execute(f"ANALYZE {table}")
    cursor.execute("RESET default_statistics_target")


def _stage_slices(consumption: Sequence[ConsumptionSlice]) -> None:
    """Stage consumption built in Python (tests, benchmarks, callers with their own figures)."""
    columns = ", ".join(_STAGING_COLUMNS)
    ordered = sorted(consumption, key=lambda c: (c.hour_start, c.key))
    if len({c.key for c in ordered}) != len(ordered):
        seen: set[str] = set()
        twice = next(c.key for c in ordered if c.key in seen or seen.add(c.key))  # type: ignore[func-returns-value]
        raise ValueError(f"consumption {twice!r} appears twice")
    with connection.cursor() as cursor:
        _staging_create(cursor)
        with cursor.cursor.copy(f"COPY {_STAGING} (n, {columns}) FROM STDIN") as copy:
            for n, c in enumerate(ordered):
                if any(ch in c.key for ch in "\t\n\r\\"):
                    raise ValueError(f"consumption key {c.key!r} holds a control character")
                copy.write_row(
                    (
                        n,
                        c.key,
                        c.site_id,
                        c.hour_start,
                        c.facility_wh,
                        c.lease_public_id,
                        c.buyer_id,
                        c.it_energy_wh,
                        c.pue,
                        c.estimated,
                    )
                )
        _analyze(cursor, _STAGING)


def _stage_usage(*, start: datetime, end: datetime) -> _Staged:
    """Stage every lease-hour of [start, end) straight from metering's usage hours in one INSERT ... SELECT (the
    same figures as ``consumption_for_period``, which stays the specification). Returns what it staged."""
    select, params = selectors.lease_consumption_sql(start=start, end=end)
    columns = ", ".join(_STAGING_COLUMNS)
    with connection.cursor() as cursor:
        _staging_create(cursor)
        cursor.execute(
            f"INSERT INTO {_STAGING} (n, {columns})"  # noqa: S608 (names are ours)
            f" SELECT c.n, {columns} FROM ({select}) c",
            params,
        )
        _analyze(cursor, _STAGING)
    return _staged_summary()


@dataclass(frozen=True)
class _Staged:
    hours: int  # staged lease-hours
    estimated: int  # of which with estimated energy
    site_ids: list[int]
    first_hour: datetime | None


def _staged_summary() -> _Staged:
    """What the staged consumption covers, in one pass over it (grouped by site: a hash aggregate)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT site_id, min(hour_start), count(*), count(*) FILTER (WHERE estimated) FROM {_STAGING}"  # noqa: S608
            " GROUP BY site_id"
        )
        rows = cursor.fetchall()
    return _Staged(
        hours=sum(r[2] for r in rows),
        estimated=sum(r[3] for r in rows),
        site_ids=sorted(r[0] for r in rows),
        first_hour=min((r[1] for r in rows), default=None),
    )


def _lock_existing_accounts(cursor: Any) -> set[int]:
    """Lock, in key order, the run's existing accounts that the run may change: those with facility Wh still
    uncovered and those whose usage changed since (late usage: the new figures are written now; facility Wh never
    drops below what is already allocated, as allocations are final). Returns the locked accounts' staging
    numbers."""
    changed = (
        "(a.facility_wh, a.it_energy_wh, a.pue, a.estimated) IS DISTINCT FROM"
        " (GREATEST(s.facility_wh, a.allocated_wh), s.it_energy_wh, s.pue, s.estimated)"
    )
    cursor.execute(
        f"SELECT s.n, {changed} FROM {_ACCOUNTS} a"  # noqa: S608 (names are ours)
        f" JOIN {_STAGING} s ON s.consumption_key = a.consumption_key"
        f" WHERE a.allocated_wh < a.facility_wh OR {changed}"
        " ORDER BY a.consumption_key FOR UPDATE OF a"
    )
    rows = cursor.fetchall()
    late = [n for n, is_changed in rows if is_changed]
    if late:
        cursor.execute(
            f"UPDATE {_ACCOUNTS} a SET facility_wh = GREATEST(s.facility_wh, a.allocated_wh),"  # noqa: S608
            " it_energy_wh = s.it_energy_wh, pue = s.pue, estimated = s.estimated"
            f" FROM {_STAGING} s WHERE s.consumption_key = a.consumption_key AND s.n = ANY(%s)",
            [late],
        )
    return {n for n, _is_changed in rows}


@dataclass
class _Planning:
    """What is still uncovered, as columns in (hour, key) order (the allocator's input): consumption ``i`` is the
    staged row ``ns[i]``."""

    ns: list[int]
    hours: list[datetime]
    groups: list[Any]  # allocation.candidate_group of the row's site
    needs: list[int]  # facility Wh still uncovered
    existing: set[int]  # staging numbers whose account exists (locked)
    new_accounts: int  # staged rows without an account (inserted by this run)


def _ints(text: str | None) -> list[int]:
    return list(map(int, text.split(","))) if text else []


def _read_planning(
    cursor: Any, *, locked: set[int], provinces: dict[int, str], site_rule: allocation.SiteRule
) -> _Planning | None:
    """What is still uncovered, per staged lease-hour, in (hour, key) order (the order the allocator serves them in,
    sorted once by the server for all the columns): one row of comma-joined columns (a million lease-hours arrive
    as a few texts that ``map(int, ...)`` reads, rather than a million rows or objects). None when an account
    appeared or changed since the accounts were locked (another run committed it): the caller retries."""
    order = 'ORDER BY s.hour_start, s.consumption_key COLLATE "C"'
    cursor.execute(
        f"SELECT string_agg(s.n::text, ',' {order}),"  # noqa: S608 (names are ours)
        f" string_agg(extract(epoch FROM s.hour_start)::bigint::text, ',' {order}),"
        f" string_agg(s.site_id::text, ',' {order}),"
        " string_agg((CASE WHEN a.id IS NULL THEN s.facility_wh ELSE a.facility_wh - a.allocated_wh END)::text,"
        f" ',' {order}),"
        f" string_agg(CASE WHEN a.id IS NOT NULL THEN s.n::text END, ','), count(*) FILTER (WHERE a.id IS NULL)"
        f" FROM {_STAGING} s LEFT JOIN {_ACCOUNTS} a ON a.consumption_key = s.consumption_key"
        " WHERE a.id IS NULL OR a.allocated_wh < a.facility_wh"
    )
    ns_text, epochs_text, sites_text, needs_text, existing_text, new_accounts = cursor.fetchone()
    existing = set(_ints(existing_text))
    if not existing <= locked:
        return None
    epochs = epochs_text.split(",") if epochs_text else []
    hour_of = {epoch: datetime.fromtimestamp(int(epoch), tz=UTC) for epoch in set(epochs)}
    group_of = {
        str(site_id): allocation.candidate_group("CN", site_id=site_id)
        if site_rule == "same_site"
        else allocation.candidate_group("CN", province=province)
        for site_id, province in provinces.items()
    }
    return _Planning(
        ns=_ints(ns_text),
        hours=[hour_of[epoch] for epoch in epochs],
        groups=[group_of[site] for site in (sites_text.split(",") if sites_text else [])],
        needs=_ints(needs_text),
        existing=existing,
        new_accounts=new_accounts or 0,
    )


def _lock_lots(provinces: set[str], first_day: date) -> list[CertificateLot]:
    """Lock, in id order, the lots that may cover the run's consumption (active or partly allocated, Wh left)."""
    return list(
        CertificateLot.objects.select_for_update()
        .filter(status__in=ALLOCATABLE_STATUSES, province__in=provinces, expires_on__gt=first_day)
        .filter(allocated_wh__lt=F("energy_wh"))
        .order_by("id")
    )


def _write_plan(
    cursor: Any,
    run_key: str,
    planning: _Planning,
    plan: Sequence[tuple[int, int, int]],
    *,
    fresh_run_key: bool = False,
) -> tuple[int, int]:
    """Write the plan (``allocation.allocate_ordered``'s (lot id, consumption position, Wh)) set-based, or raise
    _Refused. Returns the allocation rows and Wh written.

    The plan is COPYed into a staging table; then: the run's new accounts are inserted with their planned Wh (in
    key order: the same lock order in every run, and the key index grows at its end; a count short of the new keys,
    or a unique violation, means another run created one meanwhile); the existing accounts and the lots get
    ``allocated_wh + grouped sum`` under a condition that refuses any over-allocation (``<= facility_wh``,
    ``<= energy_wh``, lot still allocatable), checked by the row count; the allocation rows are inserted by lot and,
    within a lot, in plan order (a lot's serials are drawn in the order of its allocation ids). CHECK constraints
    back every condition. A run key used before (by a caller running the same job again) writes nothing twice: the
    (lot, consumption) pairs it already wrote are dropped from the plan (``fresh_run_key`` skips that look-up for a
    key no committed run can hold, as the monthly job's numbered runs; the unique constraint holds either way)."""
    ns, existing = planning.ns, planning.existing
    lines = [
        f"{seq}\t{lot_id}\t{ns[i]}\t{wh}\t{'t' if ns[i] in existing else 'f'}\n"
        for seq, (lot_id, i, wh) in enumerate(plan)
    ]
    with cursor.cursor.copy(f"COPY {_PLAN} (seq, lot_id, n, energy_wh, existing) FROM STDIN") as copy:
        copy.write("".join(lines))
    del lines
    existing_keys = len({ns[i] for _lot, i, _wh in plan if ns[i] in existing}) if existing else 0
    lots = len({lot_id for lot_id, _i, _wh in plan})
    energy_wh = sum(wh for _lot, _i, wh in plan)
    if plan:
        _analyze(cursor, _PLAN)
    dropped = 0
    if plan and not fresh_run_key:
        cursor.execute(
            f"DELETE FROM {_PLAN} p USING {_STAGING} s, {_ALLOCATIONS} al"  # noqa: S608 (names are ours)
            " WHERE s.n = p.n AND al.consumption_key = s.consumption_key AND al.lot_id = p.lot_id AND al.run_key = %s",
            [run_key],
        )
        dropped = cursor.rowcount
    if dropped:
        cursor.execute(
            f"SELECT count(DISTINCT n) FILTER (WHERE existing), count(DISTINCT lot_id), COALESCE(sum(energy_wh), 0)"  # noqa: S608
            f" FROM {_PLAN}"
        )
        existing_keys, lots, energy_wh = cursor.fetchone()
    columns = ", ".join(f"s.{c}" for c in _STAGING_COLUMNS)
    cursor.execute(
        f"INSERT INTO {_ACCOUNTS} ({', '.join(_STAGING_COLUMNS)}, allocated_wh)"  # noqa: S608 (names are ours)
        f" SELECT {columns}, COALESCE(p.wh, 0) FROM {_STAGING} s"
        f" LEFT JOIN (SELECT n, sum(energy_wh) AS wh FROM {_PLAN} WHERE NOT existing GROUP BY n) p ON p.n = s.n"
        f" WHERE NOT EXISTS (SELECT 1 FROM {_ACCOUNTS} a WHERE a.consumption_key = s.consumption_key)"
        ' ORDER BY s.consumption_key COLLATE "C"'
    )
    if cursor.rowcount != planning.new_accounts:
        raise _Refused
    if existing_keys:
        cursor.execute(
            f"UPDATE {_ACCOUNTS} a SET allocated_wh = a.allocated_wh + p.wh"  # noqa: S608 (names are ours)
            f" FROM (SELECT s.consumption_key, sum(p.energy_wh) AS wh FROM {_PLAN} p"
            f" JOIN {_STAGING} s ON s.n = p.n WHERE p.existing GROUP BY s.consumption_key) p"
            " WHERE a.consumption_key = p.consumption_key AND a.allocated_wh + p.wh <= a.facility_wh"
        )
        if cursor.rowcount != existing_keys:
            raise _Refused
    if lots:
        cursor.execute(
            f"UPDATE {_LOTS} l SET allocated_wh = l.allocated_wh + p.wh,"  # noqa: S608 (names are ours)
            f" status = CASE WHEN l.allocated_wh + p.wh = l.energy_wh THEN '{LotStatus.ALLOCATED}'"
            f" ELSE '{LotStatus.RESERVED}' END"
            f" FROM (SELECT lot_id, sum(energy_wh) AS wh FROM {_PLAN} GROUP BY lot_id) p"
            f" WHERE l.id = p.lot_id AND l.status IN ('{LotStatus.ACTIVE}', '{LotStatus.RESERVED}')"
            " AND l.allocated_wh + p.wh <= l.energy_wh"
        )
        if cursor.rowcount != lots:
            raise _Refused
    cursor.execute(
        f"INSERT INTO {_ALLOCATIONS} (lot_id, consumption_key, hour_start, energy_wh, run_key, created_at)"  # noqa: S608
        f" SELECT p.lot_id, s.consumption_key, s.hour_start, p.energy_wh, %s, %s FROM {_PLAN} p"
        f" JOIN {_STAGING} s ON s.n = p.n ORDER BY p.lot_id, p.seq",
        [run_key, utcnow()],
    )
    return cursor.rowcount, energy_wh


def _allocate_staged(
    *,
    staged: _Staged,
    run_key: str,
    site_rule: allocation.SiteRule,
    vintage_months: int,
    fresh_run_key: bool = False,
) -> RunResult:
    """Allocate the staged consumption (inside the caller's transaction). Lock order, the same in every run so racing
    runs wait instead of deadlocking: existing accounts (key order), lots (id order), new accounts (key order, by
    their insert). An attempt the database refused (another run committed some of the same accounts meanwhile) is
    rolled back to its savepoint and planned again from what is now committed."""
    if not staged.site_ids or staged.first_hour is None:
        return RunResult(run_key, 0, 0)
    first_hour = staged.first_hour
    provinces = dict(Site.objects.filter(pk__in=staged.site_ids).values_list("pk", "province"))
    for _attempt in range(MAX_ATTEMPTS):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"TRUNCATE {_PLAN}")
                locked = _lock_existing_accounts(cursor)
                lots = _lock_lots(set(provinces.values()), first_hour.date())
                planning = _read_planning(cursor, locked=locked, provinces=provinces, site_rule=site_rule)
                if planning is None:
                    raise _Refused
                plan = allocation.allocate_ordered(
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
                    planning.hours,
                    planning.groups,
                    planning.needs,
                    vintage_months=vintage_months,
                )
                rows, energy_wh = _write_plan(cursor, run_key, planning, plan, fresh_run_key=fresh_run_key)
                return RunResult(run_key, rows, energy_wh)
        except _Refused:
            continue
        except IntegrityError:
            # A racing run inserted one of the same new accounts (or, with the same run key, the same allocation
            # row) first; after the last attempt the database's refusal itself is raised.
            if _attempt == MAX_ATTEMPTS - 1:
                raise
            continue
    raise ApplicationError(
        "allocation_contended",
        _("Other allocation runs kept changing the same consumption: try again."),
        status_code=409,
    )


def allocation_run(
    *,
    run_key: str,
    consumption: Sequence[ConsumptionSlice],
    site_rule: allocation.SiteRule = "same_province",
    vintage_months: int = allocation.DEFAULT_VINTAGE_MONTHS,
) -> RunResult:
    """Allocate the eligible lots' remaining Wh to the consumption, in one transaction, set-based.

    The consumption is COPYed into a staging table and its accounts are created or updated (late usage) from it;
    the pure allocator plans from what is still uncovered; the plan is written with a few statements (see
    ``_write_plan``). The database holds the invariants whatever jobs race or repeat: row locks in one global order,
    conditional grouped updates checked by row count, CHECK constraints (a lot's allocated Wh within its energy,
    an account's within its facility Wh) and (run_key, lot, consumption) unique, so a repeated run writes nothing
    twice and a forced run allocates only what is still uncovered."""
    if not consumption:
        return RunResult(run_key, 0, 0)
    with transaction.atomic():
        _bulk_settings()
        _stage_slices(consumption)
        return _allocate_staged(
            staged=_staged_summary(), run_key=run_key, site_rule=site_rule, vintage_months=vintage_months
        )


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
        # Account before lot: the order allocation runs lock them in.
        ConsumptionAccount.objects.filter(consumption_key=original.consumption_key).update(
            allocated_wh=F("allocated_wh") - original.energy_wh
        )
        CertificateLot.objects.filter(pk=original.lot_id).update(allocated_wh=F("allocated_wh") - original.energy_wh)
        CertificateLot.objects.filter(pk=original.lot_id, status__in=[LotStatus.ALLOCATED, LotStatus.RESERVED]).update(
            status=Case(When(allocated_wh=0, then=Value(LotStatus.ACTIVE)), default=Value(LotStatus.RESERVED))
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


# --- The monthly allocation job --------------------------------------------------------------------

DEFAULT_ACCELERATOR_W = selectors.DEFAULT_ACCELERATOR_W  # see there


def it_energy_wh(
    *,
    energy_wh: int,
    record_count: int,
    records_without_energy: int,
    accelerator_seconds: int,
    accelerator_w: int | None,
) -> tuple[int, bool]:
    """IT energy of a lease-hour: the measured Wh, plus an estimate for the records that lacked energy."""
    if records_without_energy <= 0 or record_count <= 0:
        return energy_wh, False
    seconds = accelerator_seconds * records_without_energy // record_count
    watts = accelerator_w or DEFAULT_ACCELERATOR_W
    return energy_wh + (seconds * watts + 1800) // 3600, True


def month_bounds(month: date) -> tuple[datetime, datetime]:
    first = month.replace(day=1)
    nxt = add_months(first, 1)
    return datetime(first.year, first.month, 1, tzinfo=UTC), datetime(nxt.year, nxt.month, 1, tzinfo=UTC)


def consumption_for_period(*, start: datetime, end: datetime) -> list[ConsumptionSlice]:
    """Every lease-hour of [start, end) with facility energy = IT energy (measured, or estimated and flagged) x the
    site's PUE. Usage of unknown subjects (token contracts, deleted leases) is skipped."""
    rows = list(selectors.lease_usage_hours(start=start, end=end))
    leases = selectors.lease_sites(r[0] for r in rows)
    slices = []
    for lease_id, hour, energy, records, without, seconds in rows:
        lease = leases.get(lease_id)
        if lease is None:
            continue
        it_wh, estimated = it_energy_wh(
            energy_wh=energy,
            record_count=records,
            records_without_energy=without,
            accelerator_seconds=seconds,
            accelerator_w=lease.accelerator_w,
        )
        slices.append(
            ConsumptionSlice(
                key=f"{lease_id}:{hour.isoformat()}",
                site_id=lease.site_id,
                hour_start=hour,
                facility_wh=facility_wh(it_wh, lease.pue),
                lease_public_id=lease_id,
                buyer_id=lease.buyer_id,
                it_energy_wh=it_wh,
                pue=lease.pue,
                estimated=estimated,
            )
        )
    return slices


def last_closed_month(now: datetime | None = None) -> date:
    closed_before = metering_selectors.usage_closed_before(now or utcnow())
    return add_months(closed_before.date(), -1)


def _lock(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])


def allocation_month_run(
    *, month: date, force: bool = False, now: datetime | None = None, issue_statements: bool = True
) -> AllocationPeriod:
    """Allocate a closed month's lease-hours (the monthly job; on demand with ``force`` to run a month again).

    Jobs for one month run one at a time (an advisory lock held for the run's transaction); a completed month is
    skipped unless forced. A run reads the month's usage again: usage that arrived late updates the consumption
    accounts and only the additional facility Wh are allocated (what is allocated stays; allocation_run is
    idempotent). Lots whose validity is over are moved to expired first. Afterwards each site's 12-month green
    share is written back to the market and the month's buyer statements are issued (an unchanged statement is
    kept, a changed one superseded)."""
    now = now or utcnow()
    month = month.replace(day=1)
    start, end = month_bounds(month)
    if end > metering_selectors.usage_closed_before(now):
        raise ApplicationError(
            "month_not_closed",
            _("%(month)s is not closed yet: metering still accepts its records.") % {"month": f"{month:%Y-%m}"},
            field="month",
        )
    lots_expire(now=now)  # its own transaction: it locks lots, which a run locks only after accounts
    with transaction.atomic():
        _lock(f"green.allocation.month:{month:%Y-%m}")
        period, _created = AllocationPeriod.objects.select_for_update().get_or_create(
            month=month, defaults={"status": AllocationPeriodStatus.RUNNING}
        )
        if period.status == AllocationPeriodStatus.COMPLETED and not force:
            return period
        period.runs += 1
        period.started_at = utcnow()
        _bulk_settings()
        staged = _stage_usage(start=start, end=end)
        lease_hours, estimated_hours = staged.hours, staged.estimated
        if lease_hours:
            _allocate_staged(
                staged=staged,
                run_key=f"month:{month:%Y-%m}:{period.runs}",
                site_rule="same_province",
                vintage_months=allocation.DEFAULT_VINTAGE_MONTHS,
                fresh_run_key=True,  # numbered under the month's lock: no committed run holds it
            )
        if lease_hours >= ANALYZE_AFTER_HOURS:
            # A month's accounts just arrived at once: the totals, site shares and statements read them next, and
            # with the statistics of the table before the run the planner would expect a few rows (sorts that
            # spill to disk instead of a hash aggregate). Autovacuum would analyze only later.
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {_ACCOUNTS}")
        totals = ConsumptionAccount.objects.filter(hour_start__gte=start, hour_start__lt=end).aggregate(
            facility=Sum("facility_wh"), green=Sum("allocated_wh")
        )
        period.lease_hours = lease_hours
        period.estimated_hours = estimated_hours
        period.facility_wh = totals["facility"] or 0
        period.allocated_wh = totals["green"] or 0
        period.status = AllocationPeriodStatus.COMPLETED
        period.completed_at = utcnow()
        period.save()
        audit_record(
            action="green.allocation.month",
            target=period,
            target_id=f"{month:%Y-%m}",
            actor_label="green allocation job",
            after={"runs": period.runs, "facility_wh": period.facility_wh, "allocated_wh": period.allocated_wh},
        )
    site_green_shares_refresh(now=now)
    if issue_statements:
        statements_issue_for_month(month=month)
    return period


def allocation_due(*, now: datetime | None = None, months_back: int = 3) -> list[date]:
    """The beat job: run every closed month of the last ``months_back`` that has lease usage and no completed run.
    Cheap when nothing is due (one query per month), so beat may call it hourly."""
    now = now or utcnow()
    latest = last_closed_month(now)
    done = []
    for back in range(months_back - 1, -1, -1):
        month = add_months(latest, -back)
        start, end = month_bounds(month)
        period = AllocationPeriod.objects.filter(month=month, status=AllocationPeriodStatus.COMPLETED).first()
        if period is not None:
            # Late usage (rolled up after the month's run) runs the month again: only the new Wh get allocated.
            assert period.completed_at is not None
            if not selectors.lease_usage_exists(start=start, end=end, updated_after=period.completed_at):
                continue
            allocation_month_run(month=month, now=now, force=True)
        elif selectors.lease_usage_exists(start=start, end=end):
            allocation_month_run(month=month, now=now)
        else:
            continue
        done.append(month)
    lots_expire(now=now)
    return done


def lots_expire(*, now: datetime | None = None) -> int:
    """Move active and reserved lots whose validity is over to expired: those whose expiry date is no later than
    the start of the last closed month, so every month they could still cover (consumption before the expiry date)
    is closed and was allocated by the beat job. Fully allocated lots keep their status. Returns how many."""
    cutoff = last_closed_month(now)
    with transaction.atomic():
        expired = list(
            CertificateLot.objects.select_for_update()
            .filter(status__in=ALLOCATABLE_STATUSES, expires_on__lte=cutoff)
            .order_by("id")
            .values_list("pk", flat=True)
        )
        if expired:
            CertificateLot.objects.filter(pk__in=expired).update(status=LotStatus.EXPIRED)
            audit_record(
                action="green.lots.expire",
                target_type="green.CertificateLot",
                target_id=f"{len(expired)} lots",
                actor_label="green allocation job",
                after={"lots": expired[:200], "cutoff": cutoff.isoformat()},
            )
    return len(expired)


def allocation_month_request(*, month: date, actor: Any = None, now: datetime | None = None) -> None:
    """Ask for a month's allocation to run again (staff, on demand): checked now, run by a worker via the outbox."""
    month = month.replace(day=1)
    _start, end = month_bounds(month)
    if end > metering_selectors.usage_closed_before(now or utcnow()):
        raise ApplicationError(
            "month_not_closed", _("%(month)s is not closed yet.") % {"month": f"{month:%Y-%m}"}, field="month"
        )
    with transaction.atomic():
        outbox_enqueue("green.tasks.allocation_month", kwargs={"month": f"{month:%Y-%m}", "force": True})
        audit_record(
            action="green.allocation.request",
            target_type="green.AllocationPeriod",
            target_id=f"{month:%Y-%m}",
            actor=actor,
        )


def site_green_shares_refresh(*, now: datetime | None = None) -> int:
    """Write each site's green share of the last 12 closed months (allocated Wh / facility Wh) to the market.
    Sites without metered consumption keep the share their operator declared."""
    end_month = add_months(last_closed_month(now), 1)
    start, _ = month_bounds(add_months(end_month, -12))
    end, _ = month_bounds(end_month)
    shares = selectors.site_shares(start=start, end=end)
    sites = selectors.sites_by_id(shares)
    with transaction.atomic():  # one commit for all sites
        for site_id, (facility, green) in sorted(shares.items()):
            share = selectors.share_pct(green, facility)
            if share is not None and site_id in sites:
                market_services.site_green_share_record(site=sites[site_id], share_pct=share)
    return len(shares)


# --- Hourly generation profiles -------------------------------------------------------------------

MAX_PROFILE_LINES = 24 * 366


def _hour_or_none(text: str) -> datetime | None:
    try:
        value = parse_rfc3339(text.strip())
    except (ValueError, ApplicationError):
        return None
    if value.minute or value.second or value.microsecond:
        return None
    return value


def generation_profile_upload(
    *, organization: Organization, site_id: UUID | str | None, content: bytes, actor: Any = None
) -> int:
    """Upload a site's hourly green generation (CSV: hour_start in RFC 3339, energy_wh). All lines or none; an hour
    uploaded again replaces its figure. Returns the number of hours saved."""
    _require_provider(organization)
    try:
        site = Site.objects.get(organization=organization, public_id=site_id) if site_id else None
    except (Site.DoesNotExist, ValueError, TypeError):
        site = None
    if site is None:
        raise ApplicationError("unknown_site", _("Choose one of your own sites."), field="site_id")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApplicationError("csv_encoding", _("The file must be UTF-8 text."), field="file") from None
    reader = csv.DictReader(io.StringIO(text))
    if not {"hour_start", "energy_wh"} <= set(reader.fieldnames or []):
        raise ApplicationError(
            "csv_columns", _("Missing columns: %(columns)s.") % {"columns": "hour_start, energy_wh"}, field="file"
        )
    errors: list[FieldError] = []
    hours: dict[datetime, int] = {}
    for line_no, row in enumerate(reader, start=2):
        if line_no - 1 > MAX_PROFILE_LINES:
            raise ApplicationError(
                "csv_too_long", _("Upload at most %(n)s hours at once.") % {"n": MAX_PROFILE_LINES}, field="file"
            )
        hour = _hour_or_none(row.get("hour_start") or "")
        energy = _int_or_none(row.get("energy_wh"))
        if hour is None:
            errors.append(
                FieldError(
                    "invalid_hour",
                    _("Give a whole UTC hour, e.g. 2026-10-01T08:00:00Z."),
                    f"lines[{line_no}].hour_start",
                )
            )
        if energy is None or energy < 0:
            errors.append(FieldError("invalid_energy", _("Give whole Wh, 0 or more."), f"lines[{line_no}].energy_wh"))
        if hour is not None and hour in hours:
            errors.append(FieldError("duplicate_hour", _("This hour appears twice."), f"lines[{line_no}].hour_start"))
        if hour is not None and energy is not None and energy >= 0:
            hours[hour] = energy
    if errors:
        raise ValidationFailed(errors[:50])
    if not hours:
        raise ApplicationError("csv_empty", _("The file holds no hours."), field="file")
    with transaction.atomic():
        GenerationHour.objects.bulk_create(
            [
                GenerationHour(organization=organization, site=site, hour_start=h, energy_wh=wh)
                for h, wh in sorted(hours.items())
            ],
            update_conflicts=True,
            unique_fields=["site", "hour_start"],
            update_fields=["energy_wh", "updated_at"],
        )
        audit_record(
            action="green.generation_profile.upload",
            target=site,
            actor=actor,
            organization=organization,
            after={"hours": len(hours), "first": min(hours).isoformat(), "last": max(hours).isoformat()},
        )
    return len(hours)


# --- Statements ----------------------------------------------------------------------------------

KG = Decimal("0.001")
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off paper without mistakes


def new_verification_code() -> str:
    """25 characters of a 32-letter alphabet (125 bits) in groups: unguessable, and easy to type from paper."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(25))
    return "-".join(raw[i : i + 5] for i in range(0, 25, 5))


def _kg(value: Decimal) -> str:
    return str(value.quantize(KG, rounding=ROUND_HALF_UP))


def _pct(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _factor_json(factor: emissions.Factor) -> dict[str, Any]:
    return {
        "kgco2_per_kwh": str(factor.kgco2_per_kwh),
        "year": factor.year,
        "scope": factor.scope,
        "region_code": factor.region_code,
        "kind": factor.kind,
        "source": factor.source,
    }


def _serials_drawn(lot_id: int, keys: set[str]) -> list[tuple[int, int, int]]:
    """Certificate serials behind the given consumption keys' allocations of a lot: each allocation takes the next
    Wh of the lot in allocation order (a reversal gives the last ones back), so Wh n of the lot is certificate
    serial_first + n // 1 MWh. Returns (first serial, last serial, Wh) per allocation of those keys."""
    lot = CertificateLot.objects.get(pk=lot_id)
    drawn = []
    used = 0
    for key, wh in Allocation.objects.filter(lot_id=lot_id).order_by("id").values_list("consumption_key", "energy_wh"):
        if wh > 0 and key in keys:
            first = lot.serial_first + used // WH_PER_CERTIFICATE
            last = min(lot.serial_last, lot.serial_first + (used + wh - 1) // WH_PER_CERTIFICATE)
            drawn.append((first, last, wh))
        used += wh
    return drawn


def _merge_ranges(ranges: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for first, last, _wh in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [(a, b) for a, b in merged]


def statement_content(
    *, organization: Organization, period_start: date, period_end: date, lease_public_id: str | None = None
) -> dict[str, Any] | None:
    """The figures of a statement, computed now from the consumption accounts, allocations, generation profiles and
    emission factors (None when the buyer consumed nothing in scope). JSON-ready: Decimals as strings."""
    start = datetime(period_start.year, period_start.month, period_start.day, tzinfo=UTC)
    end = datetime(period_end.year, period_end.month, period_end.day, tzinfo=UTC)
    accounts = list(
        selectors.buyer_accounts(organization, start=start, end=end, lease_public_id=lease_public_id).values(
            "consumption_key",
            "lease_public_id",
            "site_id",
            "hour_start",
            "facility_wh",
            "allocated_wh",
            "it_energy_wh",
            "pue",
            "estimated",
        )
    )
    if not accounts:
        return None
    labels = selectors.lease_labels(str(a["lease_public_id"]) for a in accounts if a["lease_public_id"])
    sites = selectors.sites_by_id({a["site_id"] for a in accounts})
    # Hourly matching, per site with a generation profile in the period (shared by all of the site's consumers).
    matched: dict[str, int] = {}
    profiled_keys: set[str] = set()
    for site_id in sites:
        generation = selectors.generation_for(site_id, start=start, end=end)
        if not generation:
            continue
        mine = [a for a in accounts if a["site_id"] == site_id]
        hours = {a["hour_start"] for a in mine}
        everyone = [hourly.HourlyConsumption(k, h, wh) for k, h, wh in selectors.site_accounts_in_hours(site_id, hours)]
        site_matched = hourly.hourly_match(generation, everyone)
        for a in mine:
            profiled_keys.add(a["consumption_key"])
            matched[a["consumption_key"]] = site_matched.get(a["consumption_key"], 0)
    # Per lease.
    per_lease: dict[str, dict[str, Any]] = {}
    for a in accounts:
        lease_id = str(a["lease_public_id"] or "")
        row = per_lease.setdefault(
            lease_id,
            {
                "hours": 0,
                "estimated_hours": 0,
                "it_wh": 0,
                "facility_wh": 0,
                "green_wh": 0,
                "pue": set(),
                "site_id": a["site_id"],
                "hourly_facility_wh": 0,
                "hourly_matched_wh": 0,
                "profiled": False,
            },
        )
        row["hours"] += 1
        row["estimated_hours"] += int(a["estimated"])
        row["it_wh"] += a["it_energy_wh"] or 0
        row["facility_wh"] += a["facility_wh"]
        row["green_wh"] += a["allocated_wh"]
        if a["pue"] is not None:
            row["pue"].add(str(a["pue"]))
        if a["consumption_key"] in profiled_keys:
            row["profiled"] = True
            row["hourly_facility_wh"] += a["facility_wh"]
            row["hourly_matched_wh"] += matched[a["consumption_key"]]
    leases = []
    for lease_id, row in sorted(per_lease.items(), key=lambda kv: (labels.get(kv[0], {}).get("start", ""), kv[0])):
        site = sites[row["site_id"]]
        label = labels.get(lease_id, {})
        leases.append(
            {
                "id": lease_id,
                "pool": label.get("pool", ""),
                "site": site.name,
                "province": site.province,
                "lease_start": label.get("start"),
                "lease_end": label.get("end"),
                "pue": ", ".join(sorted(row["pue"])) or str(site.pue),
                "hours": row["hours"],
                "estimated_hours": row["estimated_hours"],
                "it_wh": row["it_wh"],
                "facility_wh": row["facility_wh"],
                "green_wh": row["green_wh"],
                "share_pct": _pct(selectors.share_pct(row["green_wh"], row["facility_wh"])),
                "hourly_matched_wh": row["hourly_matched_wh"] if row["profiled"] else None,
                "hourly_cfe_pct": _pct(hourly.cfe_pct(row["hourly_matched_wh"], row["hourly_facility_wh"]))
                if row["profiled"]
                else None,
            }
        )
    facility = sum(r["facility_wh"] for r in per_lease.values())
    green = sum(r["green_wh"] for r in per_lease.values())
    hourly_facility = sum(r["hourly_facility_wh"] for r in per_lease.values())
    hourly_matched = sum(r["hourly_matched_wh"] for r in per_lease.values())
    # Certificates drawn on (net of reversals), with the serials behind this buyer's Wh.
    keys = {a["consumption_key"] for a in accounts}
    by_lot = (
        Allocation.objects.filter(consumption_key__in=keys)
        .values("lot_id")
        .annotate(wh=Sum("energy_wh"))
        .filter(wh__gt=0)
        .order_by("lot_id")
    )
    certificates = []
    lots = {
        lot.pk: lot
        for lot in CertificateLot.objects.filter(pk__in=[r["lot_id"] for r in by_lot]).select_related("site")
    }
    for lot_row in by_lot:
        lot = lots[lot_row["lot_id"]]
        ranges = _merge_ranges(_serials_drawn(lot.pk, keys))
        certificates.append(
            {
                "registry": lot.registry,
                "serials": [f"{a}-{b}" if a != b else str(a) for a, b in ranges],
                "lot_serials": f"{lot.serial_first}-{lot.serial_last}",
                "source": lot.source,
                "province": lot.province,
                "production_month": f"{lot.production_month:%Y-%m}",
                "expires_on": lot.expires_on.isoformat(),
                "bundled_with_power": lot.bundled_with_power,
                "site": lot.site.name,
                "energy_wh": lot_row["wh"],
            }
        )
    # Emissions: location-based per site (its province's factor, else grid region, else national), market-based
    # with green Wh at zero and the rest at the national residual factor; factors of the period's year or earlier.
    year = period_start.year
    location_lines = []
    location_total = Decimal(0)
    for site_id in sorted(sites, key=lambda i: sites[i].name):
        site = sites[site_id]
        site_facility = sum(r["facility_wh"] for r in per_lease.values() if r["site_id"] == site_id)
        factor = selectors.location_factor(province=site.province, grid_region=site.grid_region, year=year)
        result = emissions.location_based(site_facility, factor)
        location_total += result.kgco2
        location_lines.append(
            {
                "site": site.name,
                "facility_wh": site_facility,
                "kgco2": _kg(result.kgco2),
                "factor": _factor_json(factor),
            }
        )
    residual = selectors.residual_factor(year=year)
    market = emissions.market_based(facility, green, residual)
    return {
        "version": 1,
        "buyer": organization.name,
        "period": {"start": period_start.isoformat(), "end": period_end.isoformat()},
        "lease": lease_public_id,
        "leases": leases,
        "totals": {
            "hours": sum(r["hours"] for r in per_lease.values()),
            "estimated_hours": sum(r["estimated_hours"] for r in per_lease.values()),
            "it_wh": sum(r["it_wh"] for r in per_lease.values()),
            "facility_wh": facility,
            "green_wh": green,
            "share_pct": _pct(selectors.share_pct(green, facility)),
            "hourly_facility_wh": hourly_facility if profiled_keys else None,
            "hourly_matched_wh": hourly_matched if profiled_keys else None,
            "hourly_cfe_pct": _pct(hourly.cfe_pct(hourly_matched, hourly_facility)) if profiled_keys else None,
        },
        "certificates": certificates,
        "emissions": {
            "year": year,
            "location": {"kgco2": _kg(location_total), "lines": location_lines},
            "market": {
                "kgco2": _kg(market.kgco2),
                "green_wh": green,
                "residual_wh": market.energy_wh,
                "factor": _factor_json(residual),
            },
        },
    }


def _content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def statement_issue(
    *,
    organization: Organization,
    period_start: date,
    period_end: date,
    lease_public_id: str | None = None,
    actor: Any = None,
) -> Statement:
    """Issue the buyer's statement for a period (or one lease in it), content frozen now. The same figures again
    return the valid statement; changed figures supersede it (its verify page then says so)."""
    if organization.kind != OrganizationKind.BUYER:
        raise ApplicationError("not_a_buyer", _("Statements are issued to buyers."), status_code=403)
    if period_end <= period_start:
        raise ApplicationError("period_order", _("The period must end after it starts."), field="period_end")
    lease_public_id = str(lease_public_id) if lease_public_id else None
    content = statement_content(
        organization=organization, period_start=period_start, period_end=period_end, lease_public_id=lease_public_id
    )
    if content is None:
        raise ApplicationError(
            "no_consumption", _("No allocated consumption in this period: nothing to state yet."), field="period_start"
        )
    digest = _content_hash(content)
    scope_key = f"{period_start.isoformat()}/{period_end.isoformat()}/{lease_public_id or 'all'}"
    with transaction.atomic():
        _lock(f"green.statement:{organization.pk}:{scope_key}")
        current = (
            Statement.objects.select_for_update()
            .filter(organization=organization, scope_key=scope_key, status=StatementStatus.VALID)
            .first()
        )
        if current is not None and current.content_sha256 == digest:
            return current
        if current is not None:
            current.status = StatementStatus.SUPERSEDED
            current.status_changed_at = utcnow()
            current.save(update_fields=["status", "status_changed_at"])
        statement = Statement.objects.create(
            organization=organization,
            period_start=period_start,
            period_end=period_end,
            lease_public_id=lease_public_id,
            scope_key=scope_key,
            verification_code=new_verification_code(),
            content=content,
            content_sha256=digest,
        )
        if current is not None:
            current.superseded_by = statement
            current.save(update_fields=["superseded_by"])
        audit_record(
            action="green.statement.issue",
            target=statement,
            actor=actor,
            actor_label=None if actor else "green allocation job",
            organization=organization,
            after={"scope": scope_key, "sha256": digest, "supersedes": str(current.public_id) if current else None},
        )
    return statement


def statement_revoke(*, statement: Statement, actor: Any = None, reason: str = "") -> Statement:
    """Revoke a statement (staff): its verify page says it is no longer valid."""
    with transaction.atomic():
        locked = Statement.objects.select_for_update().get(pk=statement.pk)
        if locked.status == StatementStatus.REVOKED:
            return locked
        before = {"status": locked.status}
        locked.status = StatementStatus.REVOKED
        locked.status_changed_at = utcnow()
        locked.save(update_fields=["status", "status_changed_at"])
        audit_record(
            action="green.statement.revoke",
            target=locked,
            actor=actor,
            organization=locked.organization,
            before=before,
            after={"status": locked.status, "reason": reason},
        )
    return locked


def statements_issue_for_month(*, month: date) -> int:
    """Issue (or keep) each buyer's statement for a month the job allocated."""
    start, end = month_bounds(month)
    buyer_ids = (
        ConsumptionAccount.objects.filter(hour_start__gte=start, hour_start__lt=end, buyer__isnull=False)
        .values_list("buyer_id", flat=True)
        .distinct()
    )
    issued = 0
    for organization in Organization.objects.filter(pk__in=list(buyer_ids), kind=OrganizationKind.BUYER):
        statement_issue(organization=organization, period_start=start.date(), period_end=end.date())
        issued += 1
    return issued

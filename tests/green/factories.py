"""Green objects for tests."""

from __future__ import annotations

import itertools
from datetime import date

from accounts.models import Organization
from green.models import WH_PER_CERTIFICATE, CertificateLot
from green.services import lot_expiry
from marketplace.models import Site

_serials = itertools.count(1_000_000, 1000)


def make_lot(
    site: Site,
    *,
    count: int = 1,
    production_month: date = date(2026, 6, 1),
    registry: str = "GEC",
    organization: Organization | None = None,
    **fields: object,
) -> CertificateLot:
    first = next(_serials)
    values: dict[str, object] = {
        "organization": organization or site.organization,
        "site": site,
        "registry": registry,
        "serial_first": first,
        "serial_last": first + count - 1,
        "certificate_count": count,
        "energy_wh": count * WH_PER_CERTIFICATE,
        "production_month": production_month,
        "source": "wind",
        "province": site.province,
        "expires_on": lot_expiry(registry, production_month),
        "evidence_text": "declared 2026-07",
    }
    values.update(fields)
    return CertificateLot.objects.create(**values)


def make_usage_hour(
    lease: object,
    hour: object,
    energy_wh: int,
    *,
    records: int = 1,
    without_energy: int = 0,
    accelerator_seconds: int = 7200,
):
    """An hourly rollup of a lease as metering would write it (written directly: fast)."""
    from metering.models import UsageHour

    return UsageHour.objects.create(
        provider=lease.provider,  # type: ignore[attr-defined]
        subject_kind="lease",
        subject_id=lease.public_id,  # type: ignore[attr-defined]
        hour_start=hour,
        record_count=records,
        accelerator_seconds=accelerator_seconds,
        energy_wh=energy_wh,
        records_without_energy=without_energy,
        utilization_bp=None,
        tokens_in=0,
        tokens_out=0,
        requests=0,
    )


def make_statement(organization: Organization, **fields: object):
    """A statement written directly (for the tenancy matrix and page tests)."""
    from green.models import Statement
    from green.services import new_verification_code

    values: dict[str, object] = {
        "period_start": date(2026, 10, 1),
        "period_end": date(2026, 11, 1),
        "scope_key": f"2026-10-01/2026-11-01/{next(_serials)}",
        "verification_code": new_verification_code(),
        "content": {"buyer": organization.name, "period": {"start": "2026-10-01", "end": "2026-11-01"}, "totals": {}},
        "content_sha256": "0" * 64,
    }
    values.update(fields)
    return Statement.objects.create(organization=organization, **values)

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

"""Reads of the green app; every tenant read takes the organisation."""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from core.errors import ApplicationError
from green import emissions
from green.models import CertificateLot, EmissionFactor, FactorKind, FactorScope


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

"""CO2 of consumption, both ways (GHG Protocol Scope 2): pure, Decimal, with the factor and its source named."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

WH_PER_KWH = Decimal(1000)


@dataclass(frozen=True)
class Factor:
    kgco2_per_kwh: Decimal
    year: int
    region_code: str
    scope: str
    kind: str
    source: str


@dataclass(frozen=True)
class Emissions:
    method: str  # "location" or "market"
    energy_wh: int  # the Wh the factor applies to
    kgco2: Decimal
    factor: Factor


def location_based(facility_wh: int, factor: Factor) -> Emissions:
    """All facility kWh at the grid factor of the site's province (or grid region, or nation)."""
    if facility_wh < 0:
        raise ValueError("facility_wh must not be negative")
    return Emissions("location", facility_wh, Decimal(facility_wh) / WH_PER_KWH * factor.kgco2_per_kwh, factor)


def market_based(facility_wh: int, green_wh: int, residual: Factor) -> Emissions:
    """Green (certificate-backed) Wh at zero, the rest at the residual factor (national, excluding traded
    non-fossil power)."""
    if not 0 <= green_wh <= facility_wh:
        raise ValueError("green_wh must lie between 0 and facility_wh")
    grey_wh = facility_wh - green_wh
    return Emissions("market", grey_wh, Decimal(grey_wh) / WH_PER_KWH * residual.kgco2_per_kwh, residual)

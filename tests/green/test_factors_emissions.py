from decimal import Decimal

import pytest

from core.errors import ApplicationError
from green import emissions, selectors
from green.models import EmissionFactor
from green.reference_data import factor_rows, load
from green.services import facility_wh


@pytest.fixture
def factors(db):
    load(EmissionFactor)  # idempotent; transactional tests flush the migration's rows


def test_data_migration_loads_every_row_with_its_source(factors):
    rows = factor_rows()
    assert EmissionFactor.objects.count() == len(rows) == 33
    assert not EmissionFactor.objects.filter(source="").exists()
    sichuan = EmissionFactor.objects.get(scope="province", region_code="51", year=2022)  # Sichuan
    assert sichuan.kgco2_per_kwh == Decimal("0.1404")


def test_location_factor_province_first(factors):
    factor = selectors.location_factor(province="51", grid_region="southwest", year=2025)
    assert (factor.scope, factor.region_code, factor.year, factor.kgco2_per_kwh) == (
        "province",
        "51",
        2022,
        Decimal("0.1404"),
    )
    assert factor.source == "MEE/NBS announcement of 2024-12-20"


def test_location_factor_falls_back_to_grid_then_national(factors):
    ningxia = selectors.location_factor(province="64", grid_region="northwest", year=2025)
    assert (ningxia.scope, ningxia.year, ningxia.kgco2_per_kwh) == ("grid_region", 2023, Decimal("0.5543"))
    old = selectors.location_factor(province="64", grid_region="northwest", year=2021)
    assert (old.scope, old.year, old.kgco2_per_kwh) == ("national", 2021, Decimal("0.5568"))


def test_residual_factor_latest_at_or_before_year(factors):
    assert selectors.residual_factor(year=2030).kgco2_per_kwh == Decimal("0.6096")
    assert selectors.residual_factor(year=2022).kgco2_per_kwh == Decimal("0.5856")
    with pytest.raises(ApplicationError) as caught:
        selectors.residual_factor(year=2021)
    assert caught.value.code == "no_emission_factor"


def test_emissions_both_ways_by_hand():
    grid = emissions.Factor(Decimal("0.5543"), 2023, "northwest", "grid_region", "average", "MEE/NBS")
    residual = emissions.Factor(Decimal("0.6096"), 2023, "CN", "national", "excl", "MEE/NBS")
    it_wh = 700_000
    facility = facility_wh(it_wh, Decimal("1.20"))
    assert facility == 840_000
    location = emissions.location_based(facility, grid)
    assert location.kgco2 == Decimal("465.612")  # 840 kWh x 0.5543
    market = emissions.market_based(facility, 600_000, residual)
    assert market.energy_wh == 240_000
    assert market.kgco2 == Decimal("146.304")  # 240 kWh x 0.6096
    assert market.factor.source == "MEE/NBS"
    assert emissions.market_based(facility, facility, residual).kgco2 == 0
    with pytest.raises(ValueError, match="green_wh"):
        emissions.market_based(facility, facility + 1, residual)


def test_facility_wh_rounds_half_up():
    assert facility_wh(5, Decimal("1.50")) == 8  # 7.5 -> 8


def test_usage_hours_become_consumption_with_pue(make_org):
    import uuid
    from datetime import UTC, datetime

    from green.services import consumption_from_usage_hours
    from metering.models import UsageHour
    from tests.marketplace.factories import make_site

    site = make_site(make_org("provider"), pue=Decimal("1.25"))
    lease = uuid.uuid4()
    hour = datetime(2026, 10, 1, 8, tzinfo=UTC)
    rows = [UsageHour(subject_id=lease, hour_start=hour, energy_wh=5_601)]
    (item,) = consumption_from_usage_hours(rows, site)
    assert item.facility_wh == 7_001  # 7,001.25 rounded half up
    assert item.key == f"{lease}:{hour.isoformat()}"
    assert item.site_id == site.pk


def test_site_emissions_name_their_factors(factors, make_org):
    from green.services import site_emissions
    from tests.marketplace.factories import make_site

    site = make_site(make_org("provider"), province="64", grid_region="northwest")
    result = site_emissions(site=site, year=2026, facility_wh=1_000_000, green_wh=800_000)
    assert result.location.kgco2 == Decimal("554.3")  # 1,000 kWh x 0.5543 (northwest grid, 2023)
    assert result.location.factor.source == "MEE/NBS announcement reported January 2026"
    assert result.market.kgco2 == Decimal("121.92")  # 200 kWh x 0.6096

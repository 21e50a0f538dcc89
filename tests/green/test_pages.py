"""Portal pages of the green app: the buyer's overview and statements, the provider's lots page (expiry warnings,
generation profiles), the public hub view."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.errors import ApplicationError
from green import services
from green.models import EmissionFactor, GenerationHour, Statement
from green.reference_data import load
from tests.green.factories import make_lot, make_statement, make_usage_hour
from tests.marketplace.factories import make_lease, make_site

HOUR = datetime(2026, 10, 5, 8, tzinfo=UTC)
NOW = datetime(2026, 11, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _factors(db):
    load(EmissionFactor)


def _allocated(make_org):
    provider = make_org("provider")
    buyer = make_org("buyer")
    site = make_site(provider, pue=Decimal("1.20"))
    lease = make_lease(provider, buyer)
    make_lot(site, production_month=date(2026, 8, 1))
    make_usage_hour(lease, HOUR, 200_000)
    services.allocation_month_run(month=date(2026, 10, 1), now=NOW)
    return provider, buyer, site, lease


def test_buyer_overview_shows_share_chart_and_statements(make_org, client_for):
    _provider, buyer, _site, _lease = _allocated(make_org)
    page = client_for(buyer.owner).get("/green/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="green-chart"' in html
    assert "green-data" in html
    assert 'data-testid="latest-share"' in html
    assert "100.00%" in html
    statement = Statement.objects.get(organization=buyer)
    assert str(statement.public_id) in html


def test_buyer_issues_a_statement_for_a_lease_from_the_form(make_org, client_for):
    _provider, buyer, _site, lease = _allocated(make_org)
    client = client_for(buyer.owner)
    response = client.post("/green/", {"month": "2026-10", "lease": str(lease.public_id)})
    assert response.status_code == 302
    statement = Statement.objects.get(organization=buyer, lease_public_id=lease.public_id)
    detail = client.get(response["Location"])
    assert detail.status_code == 200
    html = detail.content.decode()
    assert statement.verification_code in html
    assert f"/verify/green/{statement.verification_code}/" in html
    assert "240.000 kWh" in html  # 200 kWh metered x PUE 1.20
    # A month without consumption is a clear error.
    empty = client.post("/green/", {"month": "2026-07", "lease": ""})
    assert empty.status_code == 200
    assert "nothing to state" in empty.content.decode().lower() or "没有" in empty.content.decode()


def test_other_buyers_statements_are_404(make_org, client_for):
    statement = make_statement(make_org("buyer"))
    intruder = make_org("buyer")
    assert client_for(intruder.owner).get(f"/green/statements/{statement.public_id}/").status_code == 404
    assert client_for(intruder.owner).get(f"/green/statements/{statement.public_id}/pdf/").status_code == 404


def test_provider_lots_page_shows_remaining_and_expiry_warnings(make_org, client_for):
    from core.timeutils import utcnow

    provider = make_org("provider")
    site = make_site(provider)
    today = utcnow().date()
    soon = make_lot(site, production_month=services.add_months(today.replace(day=1), -22))  # expires in ~2 months
    make_lot(site, production_month=services.add_months(today.replace(day=1), -1))
    html = client_for(provider.owner).get("/provider/green/lots/").content.decode()
    assert 'data-testid="expiry-warning"' in html
    assert f"{soon.serial_first}–{soon.serial_last}" in html
    assert html.count('data-testid="lot-remaining"') == 2


def test_provider_uploads_a_generation_profile(make_org, client_for):
    provider = make_org("provider")
    site = make_site(provider)
    rows = "hour_start,energy_wh\n2026-10-05T08:00:00Z,150000\n2026-10-05T09:00:00+00:00,20000\n"
    response = client_for(provider.owner).post(
        "/provider/green/lots/",
        {"action": "profile", "site": str(site.public_id), "file": SimpleUploadedFile("p.csv", rows.encode())},
    )
    assert response.status_code == 302
    assert dict(GenerationHour.objects.values_list("hour_start", "energy_wh")) == {
        HOUR: 150_000,
        HOUR + timedelta(hours=1): 20_000,
    }
    # Uploading an hour again replaces it.
    services.generation_profile_upload(
        organization=provider, site_id=site.public_id, content=b"hour_start,energy_wh\n2026-10-05T08:00:00Z,1\n"
    )
    assert GenerationHour.objects.get(hour_start=HOUR).energy_wh == 1


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"hour_start,energy_wh\n2026-10-05T08:30:00Z,1\n", "invalid_hour"),
        (b"hour_start,energy_wh\n2026-10-05 08:00,1\n", "invalid_hour"),
        (b"hour_start,energy_wh\n2026-10-05T08:00:00Z,-5\n", "invalid_energy"),
        (b"hour_start,energy_wh\n2026-10-05T08:00:00Z,1\n2026-10-05T08:00:00Z,2\n", "duplicate_hour"),
        (b"hour,wh\n", "csv_columns"),
    ],
)
def test_bad_profiles_save_nothing(make_org, content, code):
    provider = make_org("provider")
    site = make_site(provider)
    with pytest.raises(ApplicationError) as exc:
        services.generation_profile_upload(
            organization=provider,
            site_id=site.public_id,
            content=b"hour_start,energy_wh\n2026-10-05T07:00:00Z,9\n" + content.split(b"\n", 1)[1]
            if code != "csv_columns"
            else content,
        )
    assert code in {e.code for e in exc.value.errors}
    assert not GenerationHour.objects.exists()


def test_a_foreign_site_profile_is_refused(make_org):
    site = make_site(make_org("provider"))
    with pytest.raises(ApplicationError) as exc:
        services.generation_profile_upload(
            organization=make_org("provider"), site_id=site.public_id, content=b"hour_start,energy_wh\n"
        )
    assert exc.value.errors[0].code == "unknown_site"


def test_hub_page_is_public_and_compares_with_the_target(make_org, client):
    _allocated(make_org)
    page = client.get("/green/hubs/")
    assert page.status_code == 200
    assert 'data-testid="hub-shares"' in page.content.decode()

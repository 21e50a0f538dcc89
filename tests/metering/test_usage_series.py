"""The usage overview's chart: an organisation's metered usage per day or hour, its own leases and contracts only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.timeutils import HOUR, floor_hour, month_start, utcnow
from metering import selectors
from metering.models import UsageHour
from tests.marketplace.factories import make_lease
from tests.marketplace.token_factories import make_token_contract


def usage(subject, hour, seconds=0, utilization_bp=None, tokens_in=0, tokens_out=0, energy_wh=0):
    UsageHour.objects.create(
        provider_id=subject.provider_id,
        subject_kind="lease" if seconds else "contract",
        subject_id=subject.public_id,
        hour_start=hour,
        record_count=1,
        accelerator_seconds=seconds,
        energy_wh=energy_wh,
        records_without_energy=0,
        utilization_bp=utilization_bp,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        requests=0,
    )


@pytest.fixture
def world(make_org):
    provider, buyer, stranger = make_org("provider"), make_org("buyer"), make_org("buyer")
    now = floor_hour(utcnow())
    lease = make_lease(provider, buyer, accelerators=4, start=now - 48 * HOUR, end=now + HOUR, status="active")
    foreign = make_lease(provider, stranger, accelerators=4, start=now - 48 * HOUR, end=now + HOUR, status="active")
    contract = make_token_contract(provider, buyer, status="active")
    hour = max(now - 2 * HOUR, month_start(now))  # inside the current month, for the monthly volume
    usage(lease, hour, seconds=3600, utilization_bp=9000, energy_wh=2000)
    usage(foreign, hour, seconds=7200, utilization_bp=3000, energy_wh=4000)
    usage(contract, hour, tokens_in=5_000_000, tokens_out=1_000_000)
    return provider, buyer, stranger, hour


@pytest.mark.django_db
def test_buyer_sees_its_leases_and_contracts_only(world):
    _provider, buyer, _stranger, hour = world
    series = selectors.organization_usage_series(buyer, by="hour")
    assert len(series) == 48
    [bucket] = [b for b in series if b.accelerator_seconds or b.tokens_in]
    assert bucket.start == timezone.localtime(hour)
    assert (bucket.accelerator_seconds, bucket.energy_wh, bucket.utilization_bp) == (3600, 2000, 9000)
    assert (bucket.tokens_in, bucket.tokens_out) == (5_000_000, 1_000_000)


@pytest.mark.django_db
def test_provider_sees_all_it_sold_with_utilisation_weighted_by_seconds(world):
    provider, _buyer, _stranger, _hour = world
    series = selectors.organization_usage_series(provider, by="day")
    assert len(series) == 30
    assert series[-1].start.hour == 0
    [bucket] = [b for b in series if b.accelerator_seconds]
    assert bucket.accelerator_seconds == 3600 + 7200
    assert bucket.utilization_bp == (9000 * 3600 + 3000 * 7200) // 10800  # 5,000 bp, not the plain mean 6,000
    assert series[0].start == series[-1].start - timedelta(days=29)


@pytest.mark.django_db
def test_overview_page_draws_the_chart_and_switches_granularity(world, client_for):
    _provider, buyer, stranger, _hour = world
    client = client_for(buyer.owner)
    page = client.get("/usage/?by=hour")
    assert page.status_code == 200
    assert page.context["by"] == "hour"
    data = page.context["series"]
    assert sum(data["accelerator_hours"]) == 1.0
    assert sum(data["tokens_in"]) == 5.0
    body = page.content.decode()
    assert 'data-testid="org-usage-chart"' in body
    assert 'data-testid="org-token-chart"' in body
    assert client.get("/usage/?by=week").context["by"] == "day"  # unknown spans fall back to days
    assert 'data-testid="org-usage-chart"' in client_for(stranger.owner).get("/usage/").content.decode()
    assert client_for(stranger.owner).get("/usage/?by=hour").context["series"]["accelerator_hours"].count(2.0) == 1


@pytest.mark.django_db
def test_a_token_contract_page_shows_its_tokens_and_the_month_against_the_volume(world, client_for):
    provider, buyer, stranger, _hour = world
    from marketplace.models import TokenContract

    contract = TokenContract.objects.get(buyer=buyer)
    TokenContract.objects.filter(pk=contract.pk).update(monthly_tokens=4_000_000)  # 6 M used this month: over
    for user in (buyer.owner, provider.owner):
        client = client_for(user)
        assert f"/usage/contracts/{contract.public_id}/" in client.get("/usage/").content.decode()
        page = client.get(f"/usage/contracts/{contract.public_id}/?by=hour")
        assert page.status_code == 200
        assert page.context["v"].month_tokens == 6_000_000
        assert page.context["v"].over_volume
        assert 'data-over="true"' in page.content.decode()
        assert sum(page.context["series"]["tokens_out"]) == 1.0
    assert client_for(stranger.owner).get(f"/usage/contracts/{contract.public_id}/").status_code == 404

"""green.demo.seed(): lots for western-hub sites, a generation profile, allocation and statements; tolerates no
demo leases or usage, and a second run changes nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from core.timeutils import floor_hour, utcnow
from green import demo
from green.models import Allocation, CertificateLot, EmissionFactor, GenerationHour, Statement
from green.reference_data import load
from marketplace.models import Hub, Site
from tests.green.factories import make_usage_hour
from tests.marketplace.factories import ensure_reference_data, make_lease, make_site


def _demo_org(make_org, kind: str, email: str):
    organization = make_org(kind)
    user = organization.owner
    user.email = email
    user.save(update_fields=["email"])
    return organization


def test_seed_tolerates_an_empty_world(db):
    demo.seed()
    assert not CertificateLot.objects.exists()
    assert not Statement.objects.exists()


def test_seed_builds_lots_profile_allocation_and_statements_once(make_org):
    load(EmissionFactor)
    provider = _demo_org(make_org, "provider", "ops@test-ningxia.demo")
    buyer = _demo_org(make_org, "buyer", "buyer@test.demo")
    ensure_reference_data()
    west = Hub.objects.filter(side="west").first()
    site = make_site(provider, name=demo.PROFILE_SITE, hub=west, pue=Decimal("1.15"))
    make_site(make_org("provider"), name="not a demo site", hub=west)
    lease = make_lease(provider, buyer)
    start = floor_hour(utcnow()) - timedelta(days=3)
    for i in range(24):
        make_usage_hour(lease, start + timedelta(hours=i), 6_000)
    demo.seed()
    assert CertificateLot.objects.filter(site=site).count() == len(demo.LOT_PLAN)
    assert not CertificateLot.objects.exclude(site=site).exists()
    assert GenerationHour.objects.filter(site=site).count() == demo.PROFILE_DAYS * 24
    assert Allocation.objects.exists()
    statements = list(Statement.objects.filter(organization=buyer))
    assert statements
    assert statements[0].content["totals"]["hourly_cfe_pct"] is not None
    demo.seed()  # again: nothing new
    assert CertificateLot.objects.count() == len(demo.LOT_PLAN)
    assert list(Statement.objects.filter(organization=buyer)) == statements
    assert Site.objects.get(pk=site.pk).green_share_pct >= 0

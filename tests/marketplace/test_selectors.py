"""Supply selectors: tenant reads take the organisation; the public listing shows listed pools, verified first."""

from __future__ import annotations

import pytest
from django.http import Http404

from marketplace import selectors
from marketplace.models import PoolStatus, SiteStatus
from tests.marketplace.factories import accelerator, make_attestation, make_pool, make_site

pytestmark = pytest.mark.django_db


def test_tenant_reads_are_scoped(provider, make_org):
    other = make_org("provider")
    mine, theirs = make_site(provider), make_site(other)
    make_pool(mine)
    foreign_pool = make_pool(theirs)
    assert list(selectors.site_list(provider)) == [mine]
    assert selectors.site_get(provider, mine.public_id) == mine
    with pytest.raises(Http404):
        selectors.site_get(provider, theirs.public_id)
    with pytest.raises(Http404):
        selectors.pool_get(provider, foreign_pool.public_id)
    with pytest.raises(Http404):
        selectors.site_get(provider, "not-a-uuid")
    assert [p.site for p in selectors.pool_list(provider)] == [mine]
    assert selectors.supply_summary(provider) == {"sites": 1, "pools": 1, "listed": 0, "verified": 0}


def test_listing_shows_listed_pools_of_active_sites_verified_first(provider, make_org):
    site = make_site(provider)
    unverified = make_pool(site, name="a-unverified", status=PoolStatus.LISTED)
    verified = make_pool(site, name="z-verified", status=PoolStatus.LISTED)
    verified.current_attestation = make_attestation(verified)
    verified.verified = True
    verified.save()
    make_pool(site, name="draft")
    suspended_site = make_site(make_org("provider"), status=SiteStatus.SUSPENDED)
    make_pool(suspended_site, name="hidden", status=PoolStatus.LISTED)
    assert list(selectors.pool_listing_list()) == [verified, unverified]
    assert list(selectors.pool_listing_list(verified=False)) == [unverified]
    with pytest.raises(Http404):
        selectors.pool_listing_get(make_pool(site, name="draft2").public_id)


def test_catalog_comparison_defaults_and_picks():
    defaults = selectors.accelerator_model_default_comparison()
    assert [m.name.split(" ")[0] for m in defaults] == ["H100", "H20", "Ascend"]
    h20, h100 = accelerator("NVIDIA", "H20"), accelerator()
    assert selectors.accelerator_model_pick([str(h20.public_id), "junk", str(h100.public_id)]) == [h20, h100]
    rows = selectors.accelerator_comparison(defaults)
    assert rows[0].normalised.scu.basis == "datasheet"
    assert selectors.accelerator_model_list(domestic=True).filter(vendor="NVIDIA").count() == 0

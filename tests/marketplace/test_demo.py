"""The supply demo: every hub has a site; NVIDIA, AMD and 3+ domestic vendors; some attested; idempotent."""

from __future__ import annotations

import pytest

from marketplace.models import Attestation, Hub, Pool, PoolStatus, Site

pytestmark = pytest.mark.django_db


def test_seed_covers_every_hub_and_vendor_mix_and_is_idempotent():
    from accounts import demo as accounts_demo
    from marketplace import demo

    accounts_demo.seed()
    demo.seed()
    counts = (Site.objects.count(), Pool.objects.count(), Attestation.objects.count())
    demo.seed()
    assert (Site.objects.count(), Pool.objects.count(), Attestation.objects.count()) == counts
    assert set(Hub.objects.values_list("code", flat=True)) <= set(
        Site.objects.exclude(hub=None).values_list("hub__code", flat=True)
    )
    vendors = set(Pool.objects.values_list("accelerator_model__vendor", flat=True))
    assert {"NVIDIA", "AMD"} <= vendors
    domestic = set(
        Pool.objects.filter(accelerator_model__domestic=True).values_list("accelerator_model__vendor", flat=True)
    )
    assert len(domestic) >= 3
    assert Pool.objects.filter(verified=True).exists()
    assert Pool.objects.filter(verified=False).exists()
    assert Pool.objects.filter(status=PoolStatus.LISTED).count() >= 10
    assert Pool.objects.filter(shares__share_pct__lt=100).exists()  # a 合作分成 split

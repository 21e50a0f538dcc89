"""A provider's listed pool with ``count`` active 8-accelerator leases over [start, end): the metering benchmarks'
common world (not a benchmark itself: the leading underscore keeps it out of `make bench`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any


def provider_with_leases(*, count: int, start: datetime, end: datetime) -> tuple[Any, list[Any]]:
    """(provider, leases), with a buyer, site, pool, offer and bid behind them. Needs Django set up."""
    from accounts.models import Organization, OrganizationKind, OrganizationStatus
    from marketplace.models import AcceleratorModel, Bid, Lease, Offer, Pool, PoolShare, Site

    provider = Organization.objects.create(
        name="bench provider", kind=OrganizationKind.PROVIDER, status=OrganizationStatus.ACTIVE
    )
    buyer = Organization.objects.create(
        name="bench buyer", kind=OrganizationKind.BUYER, status=OrganizationStatus.ACTIVE
    )
    site = Site.objects.create(
        organization=provider,
        name="bench site",
        province="64",
        city="中卫市",
        grid_region="northwest",
        pue=Decimal("1.2"),
        latency_tier="cross_hub",
    )
    pool = Pool.objects.create(
        organization=provider,
        site=site,
        accelerator_model=AcceleratorModel.objects.order_by("id")[0],
        name="bench pool",
        accelerator_count=8 * count,
        status="listed",
    )
    PoolShare.objects.create(pool=pool, organization=provider, share_pct=Decimal(100))
    offer = Offer.objects.create(organization=provider, pool=pool, accelerators=8 * count, start=start, end=end, ask=10)
    bid = Bid.objects.create(
        organization=buyer,
        accelerators=8 * count,
        hours=int((end - start).total_seconds()) // 3600,
        earliest_start=start,
        latest_end=end,
        limit_price=10,
        price_unit="acc_hour",
    )
    leases = Lease.objects.bulk_create(
        Lease(
            bid=bid,
            offer=offer,
            pool=pool,
            buyer=buyer,
            provider=provider,
            accelerators=8,
            start=start,
            end=end,
            price=10,
            status="active",
            confirm_by=start,
        )
        for _ in range(count)
    )
    return provider, leases

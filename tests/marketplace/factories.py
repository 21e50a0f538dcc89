"""Supply-side objects for tests (direct model writes: fast, no audit rows)."""

from __future__ import annotations

from decimal import Decimal

from accounts.models import Organization
from marketplace.models import AcceleratorModel, Attestation, Pool, PoolShare, Site

H100 = ("NVIDIA", "H100 SXM5")


def ensure_reference_data() -> None:
    """Transactional tests flush the rows of the data migration: put them back when they are missing."""
    from marketplace.models import Cluster, Hub
    from marketplace.reference_data import load

    if not AcceleratorModel.objects.exists() or not Hub.objects.exists():
        load(AcceleratorModel, Hub, Cluster)


def accelerator(vendor: str = H100[0], name: str = H100[1]) -> AcceleratorModel:
    ensure_reference_data()
    return AcceleratorModel.objects.get(vendor=vendor, name=name)


def make_site(organization: Organization, name: str = "中卫一号", **fields: object) -> Site:
    ensure_reference_data()
    values: dict[str, object] = {
        "province": "64",
        "city": "中卫市",
        "grid_region": "northwest",
        "pue": Decimal("1.20"),
        "latency_tier": "cross_hub",
    }
    values.update(fields)
    return Site.objects.create(organization=organization, name=name, **values)


def make_pool(site: Site, name: str = "H100 池", model: AcceleratorModel | None = None, **fields: object) -> Pool:
    model = model or accelerator()
    values: dict[str, object] = {"accelerator_count": 8, "software_stack": model.software_stack}
    values.update(fields)
    pool = Pool.objects.create(organization=site.organization, site=site, accelerator_model=model, name=name, **values)
    PoolShare.objects.create(pool=pool, organization=site.organization, share_pct=Decimal(100))
    return pool


def make_attestation(pool: Pool, tflops: str = "900", tbps: str = "3.1") -> Attestation:
    return Attestation.objects.create(
        pool=pool,
        organization=pool.organization,
        measured_tflops=Decimal(tflops),
        measured_bw_tbps=Decimal(tbps),
        raw_output="test",
        source="portal",
        submitted_by_label="test",
    )


def next_hour(hours_ahead: int = 1):
    """A whole UTC hour in the future."""
    from datetime import timedelta

    from core.timeutils import floor_hour, utcnow

    return floor_hour(utcnow()) + timedelta(hours=hours_ahead)


def make_listed_pool(organization: Organization, count: int = 8, name: str = "H100 池", **fields: object) -> Pool:
    site = Site.objects.filter(organization=organization).first() or make_site(organization)
    return make_pool(site, name=name, accelerator_count=count, status="listed", **fields)


def make_offer(pool: Pool, accelerators: int | None = None, hours: int = 24, ask: str = "10", **fields: object):
    from datetime import timedelta

    from marketplace.models import Offer

    start = fields.pop("start", None) or next_hour()
    return Offer.objects.create(
        organization=pool.organization,
        pool=pool,
        accelerators=accelerators or pool.accelerator_count,
        start=start,
        end=start + timedelta(hours=hours),  # type: ignore[operator]
        ask=Decimal(ask),
        **fields,
    )


def make_bid(organization: Organization, accelerators: int = 1, hours: int = 4, limit: str = "20", **fields: object):
    from datetime import timedelta

    from marketplace.models import Bid

    start = fields.pop("earliest_start", None) or next_hour()
    return Bid.objects.create(
        organization=organization,
        accelerators=accelerators,
        hours=hours,
        earliest_start=start,
        latest_end=start + timedelta(hours=hours),  # type: ignore[operator]
        limit_price=Decimal(limit),
        price_unit="acc_hour",
        **fields,
    )


def make_lease(provider: Organization, buyer: Organization, accelerators: int = 2, **fields: object):
    """A pending lease with its allocations, written directly (no matching)."""
    import uuid
    from datetime import timedelta

    from core.timeutils import utcnow
    from marketplace.models import Lease, LeaseAllocation

    pool = make_listed_pool(provider, name=f"池 {uuid.uuid4().hex[:8]}")
    offer = make_offer(pool)
    bid = make_bid(buyer, accelerators=accelerators, earliest_start=offer.start, filled_accelerators=accelerators)
    values: dict[str, object] = {"start": bid.earliest_start, "end": bid.latest_end, "status": "pending"}
    values.update(fields)
    lease = Lease.objects.create(
        bid=bid,
        offer=offer,
        pool=pool,
        buyer=buyer,
        provider=provider,
        accelerators=accelerators,
        price=offer.ask,
        confirm_by=utcnow() + timedelta(hours=2),
        **values,
    )
    for index in range(accelerators):
        LeaseAllocation.objects.create(lease=lease, pool=pool, accelerator_index=index, period=(lease.start, lease.end))
    return lease

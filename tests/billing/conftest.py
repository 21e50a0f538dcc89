from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.models import Organization
from core.timeutils import Window
from marketplace.models import Lease, PoolShare
from metering.models import UsageHour
from tests.marketplace.factories import make_lease
from tests.vouchers import factories as voucher_factories

OCTOBER = Window.month(2026, 10)


def deliver(lease: Lease, *, hours: int | None = None, energy_wh_per_hour: int = 5_600) -> None:
    """Usage rollups as metering writes them: each hour of the lease fully delivered (or the first ``hours``)."""
    count = int((lease.end - lease.start).total_seconds() // 3600)
    UsageHour.objects.bulk_create(
        [
            UsageHour(
                provider=lease.provider,
                subject_kind="lease",
                subject_id=lease.public_id,
                hour_start=lease.start + timedelta(hours=h),
                record_count=1,
                accelerator_seconds=lease.accelerators * 3600,
                energy_wh=energy_wh_per_hour,
                records_without_energy=0,
                accelerator_seconds_without_energy=0,
                utilization_bp=9000,
                tokens_in=0,
                tokens_out=0,
                requests=0,
            )
            for h in range(count if hours is None else hours)
        ]
    )


def october_lease(
    provider: Organization, buyer: Organization, *, day: int = 10, price: str = "12.5", **kw: object
) -> Lease:
    start = datetime(2026, 10, day, tzinfo=UTC)
    lease = make_lease(
        provider, buyer, accelerators=8, start=start, end=start + timedelta(hours=24), status="completed", **kw
    )
    Lease.objects.filter(pk=lease.pk).update(price=Decimal(price))
    lease.refresh_from_db()
    return lease


@dataclass
class BillingWorld:
    issuer: Organization
    buyer: Organization
    provider: Organization
    partner: Organization
    lease: Lease


@pytest.fixture
def billing_world(make_org) -> BillingWorld:
    issuer = make_org("issuer", name="北京市经济和信息化局")
    buyer = make_org("buyer", name="北京灵巧机器人科技有限公司")
    provider = make_org("provider", name="宁夏中卫云谷智算中心")
    partner = make_org("provider", name="中卫数据港投资有限公司")
    voucher_factories.profile(issuer, industry="other", size_class="large")
    voucher_factories.profile(buyer, legal_representative="赵北")
    voucher_factories.profile(provider, province="64", city="中卫市", legal_representative="马云峰")
    voucher_factories.profile(partner, province="64", city="中卫市", legal_representative="马二")
    lease = october_lease(provider, buyer)
    # 合作分成: the pool is 70% the operator's, 30% its partner's.
    PoolShare.objects.filter(pool=lease.pool).update(share_pct=Decimal(70))
    PoolShare.objects.create(pool=lease.pool, organization=partner, share_pct=Decimal(30))
    deliver(lease)
    return BillingWorld(issuer, buyer, provider, partner, lease)

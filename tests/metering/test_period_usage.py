"""What billing reads: lease and contract usage over a window, set-based; reconciliation of closed hours."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from core.timeutils import HOUR, Window, floor_hour, utcnow
from metering import reconcile, selectors, services
from metering.models import Dispute, LeaseHourReconciliation, UsageHour
from tests.marketplace.factories import make_lease


def hour_row(lease, hour, seconds, energy=0, without=0, util=8000, kind="lease", **extra):
    return UsageHour(
        provider_id=lease.provider_id if hasattr(lease, "provider_id") else lease,
        subject_kind=kind,
        subject_id=lease.public_id if hasattr(lease, "public_id") else extra.pop("subject_id"),
        hour_start=hour,
        record_count=1,
        accelerator_seconds=seconds,
        energy_wh=energy,
        records_without_energy=1 if without else 0,
        accelerator_seconds_without_energy=without,
        utilization_bp=util,
        tokens_in=extra.get("tokens_in", 0),
        tokens_out=extra.get("tokens_out", 0),
        requests=extra.get("requests", 0),
    )


@pytest.fixture
def lease(make_org):
    start = floor_hour(utcnow()) - timedelta(hours=10)
    return make_lease(
        make_org("provider"),
        make_org("buyer"),
        accelerators=4,
        start=start,
        end=start + timedelta(hours=20),
        status="active",
    )


@pytest.mark.django_db
def test_lease_period_usage(lease):
    tdp = lease.pool.accelerator_model.tdp_w
    assert tdp
    hours = [lease.start + i * HOUR for i in range(10)]
    rows = [hour_row(lease, h, 4 * 3600, energy=2000) for i, h in enumerate(hours) if i != 2]
    rows[0] = hour_row(lease, hours[0], 4 * 3600, energy=0, without=4 * 3600, util=5000)  # no energy reported
    UsageHour.objects.bulk_create(rows)
    window = Window(lease.start - timedelta(days=1), lease.start + timedelta(days=5))
    usage = selectors.lease_period_usage(lease_public_ids=[lease.public_id, uuid.uuid4()], window=window)
    assert set(usage) == {lease.public_id}  # unknown ids are absent
    u = usage[lease.public_id]
    estimated = reconcile.estimate_energy_wh(tdp, 5000, 4 * 3600)
    assert u.contracted_accelerator_seconds == 4 * 20 * 3600
    assert u.delivered_accelerator_seconds == 9 * 4 * 3600
    assert u.energy_estimated_wh == estimated
    assert u.energy_wh == 8 * 2000 + estimated
    assert u.availability == Decimal("0.9")  # 9 of the 10 elapsed hours
    assert u.sla_credit_ratio == Decimal("0.25")  # below 95 %, not below 90 %
    assert u.dispute_credit_accelerator_seconds == 0


@pytest.mark.django_db
def test_window_cuts_the_contract_and_nothing_elapsed_is_none(lease):
    window = Window(lease.start + timedelta(hours=15), lease.start + timedelta(hours=40))
    u = selectors.lease_period_usage(lease_public_ids=[lease.public_id], window=window)[lease.public_id]
    assert u.contracted_accelerator_seconds == 4 * 5 * 3600
    assert u.availability is None
    assert u.sla_credit_ratio == 0


@pytest.mark.django_db
def test_dispute_credits_count_in_the_window_of_their_resolution(lease):
    now = utcnow()
    Dispute.objects.create(
        lease=lease,
        buyer_id=lease.buyer_id,
        provider_id=lease.provider_id,
        period_start=lease.start,
        period_end=lease.start + HOUR,
        reason="down",
        claimed_accelerator_seconds=3600,
        credited_accelerator_seconds=3600,
        status="resolved_buyer",
        resolved_at=now,
        lease_status_before="active",
    )
    inside = Window(now - HOUR, now + HOUR)
    later = Window(now + HOUR, now + 2 * HOUR)
    assert (
        selectors.lease_period_usage(lease_public_ids=[lease.public_id], window=inside)[
            lease.public_id
        ].dispute_credit_accelerator_seconds
        == 3600
    )
    assert (
        selectors.lease_period_usage(lease_public_ids=[lease.public_id], window=later)[
            lease.public_id
        ].dispute_credit_accelerator_seconds
        == 0
    )


@pytest.mark.django_db
def test_many_leases_in_a_fixed_number_of_queries(make_org, django_assert_max_num_queries):
    provider, buyer = make_org("provider"), make_org("buyer")
    start = floor_hour(utcnow()) - timedelta(hours=4)
    leases = [
        make_lease(provider, buyer, accelerators=1, start=start, end=start + timedelta(hours=8), status="active")
        for _ in range(15)
    ]
    UsageHour.objects.bulk_create([hour_row(lease, start + i * HOUR, 3600) for lease in leases for i in range(4)])
    window = Window(start, start + timedelta(days=1))
    with django_assert_max_num_queries(3):
        usage = selectors.lease_period_usage(lease_public_ids=[lease.public_id for lease in leases], window=window)
    assert len(usage) == 15
    assert all(u.availability == 1 and u.delivered_accelerator_seconds == 4 * 3600 for u in usage.values())


@pytest.mark.django_db
def test_contract_period_usage(make_org):
    provider = make_org("provider")
    contract, other = uuid.uuid4(), uuid.uuid4()
    start = floor_hour(utcnow()) - timedelta(hours=5)
    UsageHour.objects.bulk_create(
        [
            hour_row(
                provider.pk,
                start + i * HOUR,
                0,
                kind="contract",
                subject_id=contract,
                tokens_in=100,
                tokens_out=50,
                requests=3,
            )
            for i in range(5)
        ]
    )
    window = Window(start + HOUR, start + timedelta(hours=3))
    usage = selectors.contract_period_usage(contract_public_ids=[contract, other], window=window)
    assert usage[contract] == selectors.ContractPeriodUsage(contract, 200, 100, 6)
    assert usage[other] == selectors.ContractPeriodUsage(other, 0, 0, 0)


@pytest.mark.django_db
def test_closed_hours_are_reconciled_incrementally_and_idempotently(lease):
    now = utcnow()
    UsageHour.objects.bulk_create(
        [hour_row(lease, lease.start + i * HOUR, 4 * 3600 + (100 if i == 1 else 0)) for i in range(10) if i != 3]
    )
    first = services.lease_hours_reconcile_due(now=now)
    assert first >= 10
    rows = {r.hour_start: r for r in LeaseHourReconciliation.objects.filter(lease_id=lease.public_id)}
    elapsed = [lease.start + i * HOUR for i in range(10)]
    assert set(elapsed) <= set(rows)
    assert rows[elapsed[3]].missing
    assert rows[elapsed[1]].over_reported
    assert not rows[elapsed[0]].missing
    assert rows[elapsed[0]].energy_estimated_wh == 0
    snapshot = list(LeaseHourReconciliation.objects.order_by("id").values_list("id", "delivered_accelerator_seconds"))
    services.lease_hours_reconcile_due(now=now)
    assert (
        list(LeaseHourReconciliation.objects.order_by("id").values_list("id", "delivered_accelerator_seconds"))
        == snapshot
    )
    # A late record for hour 3: the rollup task re-reconciles it.
    UsageHour.objects.filter(subject_id=lease.public_id, hour_start=elapsed[4]).update(accelerator_seconds=1)
    services.lease_hours_reconcile(
        window=Window(elapsed[4], elapsed[4] + HOUR), lease_public_ids=[str(lease.public_id)]
    )
    assert (
        LeaseHourReconciliation.objects.get(
            lease_id=lease.public_id, hour_start=elapsed[4]
        ).delivered_accelerator_seconds
        == 1
    )


@pytest.mark.slow
@pytest.mark.django_db
def test_ten_thousand_leases_in_one_call(make_org, django_assert_max_num_queries):
    """Billing asks for every lease of a month at once: 10,000 leases x 24 hours, three queries, seconds."""
    import time

    from marketplace.models import Lease

    template = make_lease(make_org("provider"), make_org("buyer"), accelerators=2, status="active")
    start = floor_hour(utcnow()) - timedelta(hours=24)
    leases = Lease.objects.bulk_create(
        Lease(
            bid=template.bid,
            offer=template.offer,
            pool=template.pool,
            buyer=template.buyer,
            provider=template.provider,
            accelerators=2,
            start=start,
            end=start + timedelta(hours=24),
            price=template.price,
            status="active",
            confirm_by=start,
        )
        for _ in range(10_000)
    )
    UsageHour.objects.bulk_create(
        (hour_row(lease, start + i * HOUR, 7200 if i else 3600) for lease in leases for i in range(24)),
        batch_size=20_000,
    )
    window = Window(start, start + timedelta(days=30))
    began = time.perf_counter()
    with django_assert_max_num_queries(3):
        usage = selectors.lease_period_usage(lease_public_ids=[lease.public_id for lease in leases], window=window)
    elapsed = time.perf_counter() - began
    assert len(usage) == 10_000
    sample = usage[leases[0].public_id]
    assert sample.delivered_accelerator_seconds == 23 * 7200 + 3600
    assert sample.sla_credit_ratio == Decimal("0.10")  # 97.9 % available
    assert elapsed < 10, f"{elapsed:.1f} s"
    print(f"lease_period_usage: 10,000 leases in {elapsed:.2f} s")

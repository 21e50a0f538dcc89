"""Lot statuses the services set (reserved while partly allocated, expired once no open month can use the lot) and
late usage: a run picks up usage that arrived after the month's first run and allocates only the additional Wh."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db.models import Sum

from core.errors import ApplicationError
from green import selectors, services
from green.models import (
    Allocation,
    AllocationPeriod,
    CertificateLot,
    ConsumptionAccount,
    LotStatus,
    Statement,
    StatementStatus,
)
from tests.green.factories import make_lot, make_usage_hour
from tests.marketplace.factories import make_lease, make_site

OCT = date(2026, 10, 1)
HOUR = datetime(2026, 10, 5, 8, tzinfo=UTC)
NOW = datetime(2026, 11, 15, tzinfo=UTC)  # October is the last closed month


@pytest.fixture(autouse=True)
def _factors(db):
    from green.models import EmissionFactor
    from green.reference_data import load

    load(EmissionFactor)


def _facility(it_wh: int, pue: str = "1.20") -> int:
    return int((Decimal(it_wh) * Decimal(pue)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _invariants() -> None:
    for lot in CertificateLot.objects.all():
        assert (lot.allocations.aggregate(s=Sum("energy_wh"))["s"] or 0) == lot.allocated_wh <= lot.energy_wh
    for account in ConsumptionAccount.objects.all():
        rows = Allocation.objects.filter(consumption_key=account.consumption_key).aggregate(s=Sum("energy_wh"))
        assert (rows["s"] or 0) == account.allocated_wh <= account.facility_wh


def test_a_partly_allocated_lot_is_reserved_and_cannot_be_withdrawn(make_org):
    provider = make_org("provider")
    site = make_site(provider)
    lot = make_lot(site, count=2)
    consumption = [services.ConsumptionSlice("a", site.pk, HOUR, 600_000)]
    services.allocation_run(run_key="r1", consumption=consumption)
    lot.refresh_from_db()
    assert (lot.status, lot.allocated_wh) == (LotStatus.RESERVED, 600_000)
    with pytest.raises(ApplicationError) as exc:
        services.lot_withdraw(organization=provider, lot=lot)
    assert exc.value.errors[0].code == "lot_allocated"
    # A reserved lot keeps serving later consumption until it is used up.
    services.allocation_run(run_key="r2", consumption=[services.ConsumptionSlice("b", site.pk, HOUR, 2_000_000)])
    lot.refresh_from_db()
    assert (lot.status, lot.allocated_wh) == (LotStatus.ALLOCATED, 2_000_000)
    # Reversing one allocation makes it reserved again; reversing all makes it active.
    first, second = Allocation.objects.order_by("id")
    services.allocation_reverse(allocation_row=second)
    lot.refresh_from_db()
    assert (lot.status, lot.allocated_wh) == (LotStatus.RESERVED, 600_000)
    services.allocation_reverse(allocation_row=first)
    lot.refresh_from_db()
    assert (lot.status, lot.allocated_wh) == (LotStatus.ACTIVE, 0)
    _invariants()


def test_lots_expire_once_no_open_month_can_use_them(make_org):
    site = make_site(make_org("provider"))
    gone = make_lot(site, production_month=date(2024, 10, 1))  # expires 2026-10-01: covers September at the latest
    last = make_lot(site, production_month=date(2024, 11, 1))  # expires 2026-11-01: still covers October
    partly = make_lot(site, production_month=date(2024, 9, 1), count=2, allocated_wh=500_000, status="reserved")
    full = make_lot(site, production_month=date(2024, 9, 1), allocated_wh=1_000_000, status="allocated")
    assert services.lots_expire(now=NOW) == 2
    statuses = dict(CertificateLot.objects.values_list("pk", "status"))
    assert statuses == {
        gone.pk: LotStatus.EXPIRED,
        last.pk: LotStatus.ACTIVE,
        partly.pk: LotStatus.EXPIRED,  # its allocated Wh stay allocated; the rest is lost
        full.pk: LotStatus.ALLOCATED,
    }
    # A month later October is no longer the last closed month: the last lot expires too (by the beat job).
    services.allocation_due(now=datetime(2026, 12, 15, tzinfo=UTC))
    last.refresh_from_db()
    assert last.status == LotStatus.EXPIRED
    # Expired lots are never allocated again, even to consumption before their expiry date.
    early = [services.ConsumptionSlice("sep", site.pk, datetime(2026, 9, 3, tzinfo=UTC), 100)]
    assert services.allocation_run(run_key="r", consumption=early).energy_wh == 0


def test_the_month_job_allocates_a_lot_in_its_last_month_then_expires_it(make_org):
    provider, buyer = make_org("provider"), make_org("buyer")
    site = make_site(provider)
    lease = make_lease(provider, buyer)
    assert lease.pool.site_id == site.pk
    # A guarantee of origin is valid 12 months: produced 2025-11 (inside the 12-month vintage rule), it expires
    # 2026-11-01, so October is the last month it covers.
    lot = make_lot(site, production_month=date(2025, 11, 1), registry="GO")
    make_usage_hour(lease, HOUR, 100_000)
    services.allocation_month_run(month=OCT, now=NOW)
    lot.refresh_from_db()
    assert (lot.status, lot.allocated_wh) == (LotStatus.RESERVED, _facility(100_000))
    services.lots_expire(now=datetime(2026, 12, 15, tzinfo=UTC))
    lot.refresh_from_db()
    assert (lot.status, lot.allocated_wh) == (LotStatus.EXPIRED, _facility(100_000))


def test_provider_lots_page_shows_the_statuses(make_org, client_for):
    provider = make_org("provider")
    site = make_site(provider)
    make_lot(site, count=2, allocated_wh=500_000, status="reserved")
    make_lot(site, production_month=date(2024, 10, 1), status="expired")
    html = client_for(provider.owner).get("/provider/green/lots/").content.decode()
    assert 'data-status="reserved"' in html
    assert 'data-status="expired"' in html
    assert 'data-testid="lot-status-legend"' in html


def test_late_usage_is_allocated_by_the_next_run_without_touching_what_is_allocated(make_org):
    provider, buyer = make_org("provider"), make_org("buyer")
    site = make_site(provider)
    lease = make_lease(provider, buyer)
    make_lot(site, count=1, production_month=date(2026, 8, 1))
    usage = make_usage_hour(lease, HOUR, 400_000)
    services.allocation_month_run(month=OCT, now=NOW)
    first_rows = list(Allocation.objects.values_list("id", "lot_id", "consumption_key", "energy_wh"))
    statement = Statement.objects.get(organization=buyer, status=StatementStatus.VALID)
    assert statement.content["totals"]["green_wh"] == _facility(400_000)
    # Records of the hour arrive late (the rollup recomputes the hour), and a new hour appears.
    usage.energy_wh = 600_000
    usage.save()
    make_usage_hour(lease, HOUR + timedelta(hours=1), 300_000)
    # The hourly beat job sees usage rolled up after the month's run and runs the month again.
    assert services.allocation_due(now=NOW) == [OCT]
    period = AllocationPeriod.objects.get()
    assert (period.runs, period.lease_hours) == (2, 2)
    account = ConsumptionAccount.objects.get(hour_start=HOUR)
    assert account.facility_wh == _facility(600_000)
    assert account.it_energy_wh == 600_000
    # What was allocated stays as it was; only the additional Wh were allocated, oldest hour first.
    assert (
        list(
            Allocation.objects.filter(id__in=[r[0] for r in first_rows]).values_list(
                "id", "lot_id", "consumption_key", "energy_wh"
            )
        )
        == first_rows
    )
    assert account.allocated_wh == _facility(600_000)
    later = ConsumptionAccount.objects.get(hour_start=HOUR + timedelta(hours=1))
    assert later.allocated_wh == 1_000_000 - _facility(600_000)
    assert period.allocated_wh == 1_000_000
    _invariants()
    # The statement was superseded by one with the new figures.
    statement.refresh_from_db()
    assert statement.status == StatementStatus.SUPERSEDED
    new = Statement.objects.get(organization=buyer, status=StatementStatus.VALID)
    assert new.content["totals"]["facility_wh"] == _facility(600_000) + _facility(300_000)
    assert new.content["totals"]["green_wh"] == 1_000_000
    # Nothing late any more: the beat job leaves the month alone.
    assert services.allocation_due(now=NOW) == []


def test_usage_corrected_downwards_never_undoes_an_allocation(make_org):
    provider, buyer = make_org("provider"), make_org("buyer")
    site = make_site(provider)
    lease = make_lease(provider, buyer)
    make_lot(site, production_month=date(2026, 8, 1))
    usage = make_usage_hour(lease, HOUR, 400_000)
    services.allocation_month_run(month=OCT, now=NOW)
    usage.energy_wh = 100_000
    usage.save()
    services.allocation_month_run(month=OCT, now=NOW, force=True)
    account = ConsumptionAccount.objects.get()
    # Allocations are final: the facility Wh stay at what is allocated (a correction is a staff reversal).
    assert account.allocated_wh == account.facility_wh == _facility(400_000)
    assert account.it_energy_wh == 100_000
    _invariants()


def test_the_staged_sql_consumption_equals_the_python_specification(make_org):
    """The job stages a month's consumption in SQL; it must give exactly the slices ``consumption_for_period``
    computes in Python (keys, facility Wh rounded half up, estimates at TDP, PUE of each site, unknown subjects
    skipped)."""
    from django.db import connection, transaction

    provider, buyer = make_org("provider"), make_org("buyer")
    site = make_site(provider, pue=Decimal("1.37"))
    lease = make_lease(provider, buyer)
    assert lease.pool.site_id == site.pk
    other_site = make_site(provider, name="second", pue=Decimal("1.05"), province="15")
    other_lease = make_lease(provider, buyer)
    other_lease.pool.site = other_site
    other_lease.pool.save()
    for i in range(6):
        make_usage_hour(lease, HOUR + timedelta(hours=i), 1_001 + 7 * i, records=3, without_energy=i % 3)
        make_usage_hour(other_lease, HOUR + timedelta(hours=i), 333 + i, accelerator_seconds=3599 * i)
    start, end = services.month_bounds(OCT)
    expected = sorted(
        (
            s.key,
            s.site_id,
            s.hour_start,
            s.facility_wh,
            str(s.lease_public_id),
            s.buyer_id,
            s.it_energy_wh,
            s.pue,
            s.estimated,
        )
        for s in services.consumption_for_period(start=start, end=end)
    )
    assert len(expected) == 12
    assert any(row[-1] for row in expected)
    sql, params = selectors.lease_consumption_sql(start=start, end=end)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        staged = sorted((k, si, h, f, str(lp), b, it, p, e) for _n, k, si, h, f, lp, b, it, p, e in cursor.fetchall())
    assert staged == expected

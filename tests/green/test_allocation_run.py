"""Allocation runs against the database: final, idempotent, never over-allocating, also when two race."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum

from core.errors import ApplicationError
from green import services
from green.models import Allocation, CertificateLot, ConsumptionAccount, LotStatus
from tests.green.factories import make_lot
from tests.marketplace.factories import make_site

HOUR = datetime(2026, 10, 5, 8, tzinfo=UTC)


def _slices(site, n: int, wh: int, prefix: str = "lh") -> list[services.ConsumptionSlice]:
    return [services.ConsumptionSlice(f"{prefix}-{i}", site.pk, HOUR + timedelta(hours=i), wh) for i in range(n)]


def _check_invariants() -> None:
    for lot in CertificateLot.objects.all():
        total = lot.allocations.aggregate(s=Sum("energy_wh"))["s"] or 0
        assert total == lot.allocated_wh <= lot.energy_wh
    for account in ConsumptionAccount.objects.all():
        total = Allocation.objects.filter(consumption_key=account.consumption_key).aggregate(s=Sum("energy_wh"))
        assert (total["s"] or 0) == account.allocated_wh <= account.facility_wh


def test_run_allocates_oldest_expiry_first_and_repeats_allocate_nothing(make_org):
    org = make_org("provider")
    site = make_site(org)
    old = make_lot(site, production_month=date(2026, 1, 1))
    new = make_lot(site, production_month=date(2026, 9, 1))
    consumption = _slices(site, 3, 600_000)  # 1.8 MWh against 2 MWh
    result = services.allocation_run(run_key="2026-10", consumption=consumption)
    assert result.energy_wh == 1_800_000
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.allocated_wh, old.status) == (1_000_000, LotStatus.ALLOCATED)
    assert new.allocated_wh == 800_000
    # The same job again, or another job over the same consumption: nothing more.
    assert services.allocation_run(run_key="2026-10", consumption=consumption).energy_wh == 0
    assert services.allocation_run(run_key="retry", consumption=consumption).energy_wh == 0
    _check_invariants()
    # More consumption takes what is left, then runs dry.
    more = services.allocation_run(run_key="2026-10b", consumption=_slices(site, 2, 600_000, "more"))
    assert more.energy_wh == 200_000
    _check_invariants()


def test_expired_withdrawn_and_foreign_province_lots_are_not_used(make_org):
    org = make_org("provider")
    site = make_site(org)
    make_lot(site, production_month=date(2024, 9, 1))  # expired 2026-09-01
    make_lot(site, status=LotStatus.WITHDRAWN)
    make_lot(site, province="15")
    assert services.allocation_run(run_key="r", consumption=_slices(site, 1, 10)).energy_wh == 0


def test_check_constraints_hold_outside_the_service(make_org):
    org = make_org("provider")
    lot = make_lot(make_site(org))
    with pytest.raises(IntegrityError, match="lot_allocated_within_energy"), transaction.atomic():
        CertificateLot.objects.filter(pk=lot.pk).update(allocated_wh=lot.energy_wh + 1)
    with pytest.raises(IntegrityError, match="allocation_sign"), transaction.atomic():
        Allocation.objects.create(lot=lot, consumption_key="x", hour_start=HOUR, energy_wh=0, run_key="r")


def test_reversal_gives_the_wh_back_once(make_org):
    org = make_org("provider")
    site = make_site(org)
    lot = make_lot(site)
    services.allocation_run(run_key="r1", consumption=_slices(site, 1, 1_000_000))
    original = Allocation.objects.get()
    reversal = services.allocation_reverse(allocation_row=original)
    assert reversal.energy_wh == -1_000_000
    lot.refresh_from_db()
    assert (lot.allocated_wh, lot.status) == (0, LotStatus.ACTIVE)
    with pytest.raises(ApplicationError):
        services.allocation_reverse(allocation_row=original)
    _check_invariants()


@pytest.mark.django_db(transaction=True)
def test_two_racing_runs_never_over_or_double_allocate(make_org):
    org = make_org("provider")
    site = make_site(org)
    for _ in range(3):
        make_lot(site, count=1)
    consumption = _slices(site, 40, 100_000)  # 4 MWh of demand against 3 MWh of certificates
    barrier = threading.Barrier(2)
    results: list[services.RunResult] = []
    errors: list[BaseException] = []

    def worker(run_key: str) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(services.allocation_run(run_key=run_key, consumption=consumption))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(f"run-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(r.energy_wh for r in results) == [0, 3_000_000]
    assert Allocation.objects.aggregate(s=Sum("energy_wh"))["s"] == 3_000_000
    _check_invariants()


def test_a_stale_plan_is_refused_by_the_conditional_updates(make_org):
    """A plan made from an outdated snapshot writes nothing: the grouped conditional UPDATEs refuse it (their row
    count falls short) and the savepoint rolls back every statement of the attempt."""
    org = make_org("provider")
    site = make_site(org)
    lot = make_lot(site)
    services.allocation_run(run_key="r1", consumption=_slices(site, 1, 900_000))
    services.allocation_run(run_key="r2", consumption=_slices(site, 1, 50_000, "other"))  # 50,000 Wh left
    stale_plans = [
        # A new account, but the lot has only 50,000 Wh left: the lot's condition refuses.
        ([services.ConsumptionSlice("late-0", site.pk, HOUR, 200_000)], set(), 1, "late-0", 200_000),
        # An account already covered: its condition refuses, though the lot could give 10,000 Wh.
        ([services.ConsumptionSlice("other-0", site.pk, HOUR, 50_000)], {"other-0"}, 0, "other-0", 10_000),
    ]
    for consumption, existing, new_accounts, _key, wh in stale_plans:
        with transaction.atomic():
            services._stage_slices(consumption)
            planning = services._Planning(
                ns=[0],
                hours=[HOUR],
                groups=[None],
                needs=[wh],
                existing={0} if existing else set(),
                new_accounts=new_accounts,
            )
            with pytest.raises(services._Refused), transaction.atomic(), connection.cursor() as cursor:
                services._write_plan(cursor, "r3", planning, [(lot.pk, 0, wh)])
    assert not Allocation.objects.filter(run_key="r3").exists()
    assert not ConsumptionAccount.objects.filter(consumption_key="late-0").exists()
    lot.refresh_from_db()
    assert (lot.allocated_wh, lot.status) == (950_000, LotStatus.RESERVED)
    _check_invariants()


@pytest.mark.django_db(transaction=True)
def test_racing_runs_over_overlapping_consumption(make_org):
    """Two jobs whose consumption overlaps in part: no deadlock, no Wh twice, no lot beyond its energy."""
    org = make_org("provider")
    site = make_site(org)
    for _ in range(2):
        make_lot(site, count=1)
    everything = _slices(site, 40, 60_000)
    batches = [everything[:30], everything[10:]]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            services.allocation_run(run_key=f"job-{index}", consumption=batches[index])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert Allocation.objects.aggregate(s=Sum("energy_wh"))["s"] == 2_000_000  # 2.4 MWh demand, 2 MWh supply
    _check_invariants()


@pytest.mark.django_db
def test_property_repeated_and_interleaved_runs_keep_the_invariants(make_org):
    """Hypothesis picks a sequence of runs (keys that repeat, overlapping consumption subsets, consumption whose
    facility energy differs per slice); after every run no lot or consumption is over-allocated."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    org = make_org("provider")
    site = make_site(org)
    for month in (1, 5, 9):
        make_lot(site, count=1, production_month=date(2026, month, 1))
    pool = [
        services.ConsumptionSlice(f"p-{i}", site.pk, HOUR + timedelta(hours=i), 37_000 + 9_000 * (i % 5))
        for i in range(60)
    ]

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        runs=st.lists(
            st.tuples(st.sampled_from(["a", "b", "c"]), st.lists(st.integers(0, 59), unique=True, max_size=30)),
            max_size=5,
        )
    )
    def check(runs):
        for run_key, indexes in runs:
            services.allocation_run(run_key=run_key, consumption=[pool[i] for i in indexes])
            _check_invariants()

    check()
    assert CertificateLot.objects.aggregate(s=Sum("allocated_wh"))["s"] <= 3_000_000

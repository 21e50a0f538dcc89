"""An allocation's lot and reversed allocation are checked per statement (migration 0006) as strictly as the foreign
keys they replace: no row names a missing lot or allocation, nothing still named can be deleted, also when a deletion
races an allocation on real PostgreSQL connections."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Max

from green import services
from green.models import Allocation, CertificateLot
from tests.green.factories import make_lot
from tests.marketplace.factories import make_site

HOUR = datetime(2026, 10, 5, 8, tzinfo=UTC)


def _insert(cursor, rows: list[tuple[int, str, int]], reversal_of: int | None = None) -> None:
    cursor.execute(
        "INSERT INTO green_allocation (lot_id, consumption_key, hour_start, energy_wh, run_key, created_at,"
        " reversal_of_id) SELECT lot_id, key, %s, wh, 'test', now(), %s"
        " FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS r(lot_id, key, wh)",
        [HOUR, reversal_of, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
    )


def _missing_lot_id() -> int:
    return (CertificateLot.objects.aggregate(m=Max("id"))["m"] or 0) + 1000


def test_a_statement_naming_a_missing_lot_writes_nothing(make_org):
    lot = make_lot(make_site(make_org("provider")))
    with (
        pytest.raises(IntegrityError, match="green_allocation_lot"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        _insert(cursor, [(lot.pk, "a", 10), (_missing_lot_id(), "b", 10)])
    with pytest.raises(IntegrityError, match="green_allocation_lot"), transaction.atomic():
        Allocation.objects.create(
            lot_id=_missing_lot_id(), consumption_key="c", hour_start=HOUR, energy_wh=5, run_key="orm"
        )
    assert not Allocation.objects.exists()
    with connection.cursor() as cursor:
        _insert(cursor, [(lot.pk, "a", 10), (lot.pk, "b", 10)])
    assert Allocation.objects.count() == 2


def test_a_lot_named_by_an_allocation_cannot_be_deleted_or_renumbered(make_org):
    site = make_site(make_org("provider"))
    used, unused = make_lot(site), make_lot(site)
    Allocation.objects.create(lot=used, consumption_key="a", hour_start=HOUR, energy_wh=5, run_key="r")
    with (
        pytest.raises(IntegrityError, match="still named by allocations"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM green_certificatelot WHERE id = %s", [used.pk])
    with (
        pytest.raises(IntegrityError, match="still named by allocations"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE green_certificatelot SET id = id + 100000 WHERE id = %s", [used.pk])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE green_certificatelot SET allocated_wh = 5 WHERE id = %s", [used.pk])  # other columns
        cursor.execute("DELETE FROM green_certificatelot WHERE id = %s", [unused.pk])
    assert list(CertificateLot.objects.values_list("id", flat=True)) == [used.pk]


def test_reversals_name_an_existing_allocation_once_and_keep_it(make_org):
    lot = make_lot(make_site(make_org("provider")))
    original = Allocation.objects.create(lot=lot, consumption_key="a", hour_start=HOUR, energy_wh=5, run_key="r")
    missing = original.pk + 1000
    with (
        pytest.raises(IntegrityError, match="green_allocation_reversal_of"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        _insert(cursor, [(lot.pk, "a", -5)], reversal_of=missing)
    Allocation.objects.create(
        lot=lot, consumption_key="a", hour_start=HOUR, energy_wh=-5, run_key="rev", reversal_of=original
    )
    with pytest.raises(IntegrityError, match="allocation_reversed_once"), transaction.atomic():
        Allocation.objects.create(
            lot=lot, consumption_key="a", hour_start=HOUR, energy_wh=-5, run_key="rev2", reversal_of=original
        )
    with (
        pytest.raises(IntegrityError, match="named by its reversal"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM green_allocation WHERE id = %s", [original.pk])
    assert Allocation.objects.filter(pk=original.pk).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["allocate", "delete"])
def test_a_deletion_racing_an_allocation_never_leaves_a_dangling_lot(make_org, first):
    """Two real connections: one allocates from a lot, the other deletes it; whichever goes first, the other waits
    for its commit and is then refused, so no allocation ever names a missing lot."""
    lot = make_lot(make_site(make_org("provider")))
    started = threading.Event()
    errors: dict[str, BaseException] = {}

    def allocate() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                _insert(cursor, [(lot.pk, "race", 10)])
                started.set()
                time.sleep(0.5)  # hold the lot (FOR KEY SHARE) while the deletion waits
        except BaseException as exc:
            errors["allocate"] = exc
        finally:
            started.set()
            connection.close()

    def delete() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("DELETE FROM green_certificatelot WHERE id = %s", [lot.pk])
                started.set()
                time.sleep(0.5)
        except BaseException as exc:
            errors["delete"] = exc
        finally:
            started.set()
            connection.close()

    second = {"allocate": delete, "delete": allocate}[first]
    threads = [threading.Thread(target={"allocate": allocate, "delete": delete}[first])]
    threads[0].start()
    assert started.wait(timeout=10)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    for thread in threads:
        thread.join(timeout=30)
    loser = "delete" if first == "allocate" else "allocate"
    assert set(errors) == {loser}
    assert isinstance(errors[loser], IntegrityError)
    if first == "allocate":
        assert Allocation.objects.filter(lot_id=lot.pk).count() == 1
        assert CertificateLot.objects.filter(pk=lot.pk).exists()
    else:
        assert not Allocation.objects.exists()
        assert not CertificateLot.objects.filter(pk=lot.pk).exists()


def test_the_month_job_writes_through_the_statement_checks(make_org):
    """A run's bulk insert passes the statement checks (and a repeated run key still writes nothing twice)."""
    site = make_site(make_org("provider"))
    make_lot(site)
    consumption = [services.ConsumptionSlice("k-1", site.pk, HOUR, 300_000)]
    assert services.allocation_run(run_key="x", consumption=consumption).energy_wh == 300_000
    assert services.allocation_run(run_key="x", consumption=consumption).energy_wh == 0
    assert Allocation.objects.count() == 1

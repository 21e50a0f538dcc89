"""Racing reservations on real PostgreSQL with real concurrent connections (DESIGN.md §7)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Sum

from tests.accounts.concurrency import run_concurrently
from tests.vouchers import factories
from vouchers import services
from vouchers.models import FirmYearUsage, Grant, Program, Redemption
from vouchers.services import EligibleLine

NOW = factories.NOW


def _line(provider, amount=100_000):
    return EligibleLine(
        amount_minor=amount, currency="CNY", provider_id=provider.pk, chip_domestic=True, compute_only=True
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_forty_invoices_against_an_annual_cap_covering_ten(world):
    # Each invoice: 100,000 at 30% = 30,000; the firm's annual cap covers ten of them. The grant is larger (the
    # cap was lowered after approval, say), so the annual cap is what binds.
    program = factories.program(world.issuer, cap_per_firm_year_minor=300_000)
    app = factories.application(program, world.buyer, requested_minor=3_000_000, status="approved")
    Program.objects.filter(pk=program.pk).update(committed_minor=3_000_000)
    grant = Grant.objects.create(
        application=app,
        program=program,
        buyer=world.buyer,
        amount_minor=3_000_000,
        currency="CNY",
        expires_at=NOW + timedelta(days=30),
    )

    def finalize(n):
        return lambda: services.voucher_subsidy_reserve(
            buyer=world.buyer, invoice_reference=f"INV-{n:03d}", lines=[_line(world.provider)], at=NOW
        )

    outcomes = run_concurrently(*(finalize(n) for n in range(40)), timeout=60)
    assert [o.error for o in outcomes if o.error] == []
    subsidised = [o.value for o in outcomes if o.value]
    assert len(subsidised) == 10
    assert Redemption.objects.count() == 10
    assert Redemption.objects.aggregate(s=Sum("amount_minor"))["s"] == 300_000
    assert FirmYearUsage.objects.get(program=program, buyer=world.buyer).used_minor == 300_000
    grant.refresh_from_db()
    assert grant.redeemed_minor == 300_000


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_forty_invoices_against_a_grant_covering_ten_and_replays(world):
    program = factories.program(world.issuer)
    grant = factories.grant(program, world.buyer, amount_minor=300_000)

    def finalize(n):
        # Invoices 0-19 are each finalized twice at once (a retried job): each still counts once.
        return lambda: services.voucher_subsidy_reserve(
            buyer=world.buyer, invoice_reference=f"INV-{n % 20:03d}", lines=[_line(world.provider)], at=NOW
        )

    outcomes = run_concurrently(*(finalize(n) for n in range(40)), timeout=60)
    assert [o.error for o in outcomes if o.error] == []
    assert Redemption.objects.count() == 10
    grant.refresh_from_db()
    program.refresh_from_db()
    assert grant.redeemed_minor == 300_000 == program.redeemed_minor


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_many_firms_against_one_programme_budget(world, make_org):
    """Twenty firms with their own grants finalize at once: the programme's counters stay exact."""
    program = factories.program(world.issuer, budget_minor=2_000_000)
    buyers = []
    for _ in range(20):
        buyer = make_org("buyer")
        factories.profile(buyer)
        factories.grant(program, buyer, amount_minor=100_000)
        buyers.append(buyer)

    def finalize(buyer):
        return lambda: services.voucher_subsidy_reserve(
            buyer=buyer, invoice_reference="INV-1", lines=[_line(world.provider, 1_000_000)], at=NOW
        )

    outcomes = run_concurrently(*(finalize(b) for b in buyers), timeout=60)
    assert [o.error for o in outcomes if o.error] == []
    program.refresh_from_db()
    assert program.redeemed_minor == 2_000_000 == program.committed_minor == program.budget_minor
    assert Redemption.objects.aggregate(s=Sum("amount_minor"))["s"] == 2_000_000


@pytest.mark.django_db(transaction=True)
def test_no_subsidy_after_a_revoke_commits(world):
    """The revoke holds the grant's lock; the reservation waits for it and then sees the grant revoked."""
    program = factories.program(world.issuer)
    grant = factories.grant(program, world.buyer, amount_minor=1_000_000)
    revoked = threading.Event()
    result: dict[str, object] = {}

    def revoke():
        try:
            with transaction.atomic():
                services.grant_revoke(issuer=world.issuer, grant=grant, reason="核查不实", at=NOW)
                revoked.set()
                time.sleep(0.5)  # the reservation is now waiting on the grant's row lock
        finally:
            connection.close()

    def finalize():
        try:
            revoked.wait(10)
            result["value"] = services.voucher_subsidy_reserve(
                buyer=world.buyer, invoice_reference="INV-1", lines=[_line(world.provider)], at=NOW
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=revoke), threading.Thread(target=finalize)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert result["value"] == []
    grant.refresh_from_db()
    assert grant.redeemed_minor == 0
    assert Redemption.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_revoke_racing_reservations_leaves_consistent_books(world):
    """Revoke and ten reservations at once: whatever the order, the books agree and nothing follows the revoke."""
    program = factories.program(world.issuer)
    grant = factories.grant(program, world.buyer, amount_minor=1_000_000)
    calls = [
        lambda n=n: services.voucher_subsidy_reserve(
            buyer=world.buyer, invoice_reference=f"INV-{n}", lines=[_line(world.provider)], at=NOW
        )
        for n in range(10)
    ]
    calls.append(lambda: services.grant_revoke(issuer=world.issuer, grant=grant, reason="x", at=NOW))
    outcomes = run_concurrently(*calls, timeout=60)
    assert [o.error for o in outcomes if o.error] == []
    grant.refresh_from_db()
    program.refresh_from_db()
    redeemed = Redemption.objects.aggregate(s=Sum("amount_minor"))["s"] or 0
    assert grant.redeemed_minor == redeemed == program.redeemed_minor
    assert grant.returned_minor == grant.amount_minor - redeemed
    assert program.committed_minor == redeemed
    # Every redemption's audit row precedes the revoke's (the revoke waited for them, or they found it revoked).
    from core.models import AuditLog

    revoke_row = AuditLog.objects.get(action="voucher.grant.revoked")
    assert not AuditLog.objects.filter(action="voucher.redemption.reserved", pk__gt=revoke_row.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_reservation_at_the_exact_expiry_instant_is_refused(world):
    program = factories.program(world.issuer)
    expiry = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    factories.grant(program, world.buyer, amount_minor=1_000_000, expires_at=expiry)
    outcomes = run_concurrently(
        lambda: services.voucher_subsidy_reserve(
            buyer=world.buyer, invoice_reference="INV-AT", lines=[_line(world.provider)], at=expiry
        ),
        lambda: services.grant_expire_due(at=expiry),
    )
    assert [o.error for o in outcomes if o.error] == []
    assert outcomes[0].value == []
    assert Redemption.objects.count() == 0

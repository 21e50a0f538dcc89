"""Invoices: drafts from usage, finalization with numbers, VAT, voucher subsidy and the ledger entry; voids and
credit notes; the database keeps a finalized invoice as it was issued."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, connections, transaction

from billing import selectors, services
from billing.ledger import ledger_verify
from billing.models import AccountKind, Invoice, InvoiceLine, InvoiceSeries, LedgerAccount, Payout
from core.errors import ApplicationError
from core.timeutils import Window
from tests.billing.conftest import OCTOBER, deliver, october_lease
from tests.vouchers import factories as voucher_factories

pytestmark = pytest.mark.django_db
AT = datetime(2026, 11, 2, 6, tzinfo=UTC)


def balance(kind: AccountKind, org=None) -> int:
    account = LedgerAccount.objects.filter(kind=kind, organization=org).first()
    return account.balance_minor if account else 0


def run_and_finalize(world, at=AT) -> Invoice:
    (invoice,) = services.invoice_run(window=OCTOBER, buyer_ids=[world.buyer.pk], at=at)
    return services.invoice_finalize(invoice=invoice, at=at)


def test_a_draft_lists_each_lease_and_is_recomputed_not_duplicated(billing_world):
    (draft,) = services.invoice_run(window=OCTOBER, at=AT)
    (again,) = services.invoice_run(window=OCTOBER, at=AT)
    assert again.pk == draft.pk
    assert again.status == "draft"
    (line,) = again.lines.all()
    assert (line.kind, line.accelerator_hours, line.unit_price, line.amount_minor) == (
        "capacity",
        192,
        Decimal("12.5"),
        240_000,
    )
    assert line.energy_wh == 24 * 5_600
    assert (again.subtotal_minor, again.vat_minor, again.total_minor) == (240_000, 14_400, 254_400)


def test_finalizing_numbers_the_invoice_and_books_every_party(billing_world):
    w = billing_world
    invoice = run_and_finalize(w)
    assert invoice.status == "finalized"
    assert invoice.number_display == "SL-2026-000001"
    assert invoice.amount_due_minor == 254_400
    assert invoice.buyer_details["uscc"]
    # Fee 8% of each owner's share; owners split 70/30.
    assert balance(AccountKind.BUYER_RECEIVABLE, w.buyer) == 254_400
    assert balance(AccountKind.VAT_PAYABLE) == 14_400
    assert balance(AccountKind.PROVIDER_PENDING, w.provider) == 168_000 - 13_440
    assert balance(AccountKind.PROVIDER_PENDING, w.partner) == 72_000 - 5_760
    assert balance(AccountKind.PLATFORM_FEE) == 13_440 + 5_760
    payouts = {p.owner_id: p for p in Payout.objects.filter(invoice=invoice)}
    assert payouts[w.partner.pk].amount_minor == 66_240
    assert payouts[w.partner.pk].status == "pending"
    assert ledger_verify().mismatches == []


def test_lines_sum_to_usage_times_price_less_credits_less_subsidy(billing_world, make_org):
    w = billing_world
    program = voucher_factories.program(w.issuer, settlement_mode="deduct_at_checkout")
    voucher_factories.grant(program, w.buyer, amount_minor=1_000_000)
    # A second lease delivered for 12 of 24 hours: 50% availability earns the 50% SLA credit tier.
    half = october_lease(w.provider, w.buyer, day=20, price="10")
    deliver(half, hours=12)
    invoice = run_and_finalize(w)
    lines = list(invoice.lines.order_by("position"))
    kinds = [line.kind for line in lines]
    assert kinds.count("capacity") == 2
    assert "sla_credit" in kinds
    assert kinds[-1] == "subsidy"
    usage_times_price = 240_000 + 192 * 1000
    credits = 96_000
    subsidy = invoice.subsidy_minor
    assert subsidy == (usage_times_price - credits) * 20 // 100  # H100 is not domestic: 20%
    assert sum(line.amount_minor for line in lines) == usage_times_price - credits - subsidy
    assert invoice.total_minor == invoice.subtotal_minor + invoice.vat_minor
    assert invoice.amount_due_minor == invoice.total_minor - subsidy
    assert balance(AccountKind.VOUCHER_RECEIVABLE, w.issuer) == subsidy
    assert ledger_verify().mismatches == []


def test_a_reimbursed_voucher_is_shown_but_not_deducted(billing_world):
    w = billing_world
    program = voucher_factories.program(w.issuer, settlement_mode="reimburse_buyer")
    voucher_factories.grant(program, w.buyer, amount_minor=1_000_000)
    invoice = run_and_finalize(w)
    assert invoice.subsidy_minor == 0
    assert invoice.subsidy_reimbursed_minor == 48_000
    assert invoice.amount_due_minor == invoice.total_minor


def test_a_finalized_invoice_cannot_change(billing_world):
    invoice = run_and_finalize(billing_world)
    with pytest.raises(DatabaseError, match="finalized"), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(subtotal_minor=1)
    with pytest.raises(DatabaseError, match="finalized"), transaction.atomic():
        InvoiceLine.objects.filter(invoice=invoice).update(amount_minor=1)
    with pytest.raises(DatabaseError, match="finalized"), transaction.atomic():
        InvoiceLine.objects.filter(invoice=invoice).delete()
    # Late usage does not touch it: the run leaves it as issued.
    (same,) = services.invoice_run(window=OCTOBER, at=AT + timedelta(days=1))
    assert same.pk == invoice.pk
    assert same.total_minor == invoice.total_minor


def test_nothing_to_invoice_is_a_clear_error(make_org):
    buyer = make_org("buyer")
    invoice = Invoice.objects.create(
        buyer=buyer, period_start=OCTOBER.start, period_end=OCTOBER.end, vat_rate=Decimal("0.06")
    )
    with pytest.raises(ApplicationError) as error:
        services.invoice_finalize(invoice=invoice, at=AT)
    assert error.value.code == "invoice_empty"
    invoice.refresh_from_db()
    assert invoice.status == "draft"
    assert invoice.number is None


def test_voiding_reverses_the_entry_and_returns_the_subsidy(billing_world):
    w = billing_world
    program = voucher_factories.program(w.issuer, settlement_mode="deduct_at_checkout")
    grant = voucher_factories.grant(program, w.buyer, amount_minor=1_000_000)
    invoice = run_and_finalize(w)
    assert invoice.subsidy_minor == 48_000
    services.invoice_void(invoice=invoice, reason="wrong buyer", at=AT)
    invoice.refresh_from_db()
    grant.refresh_from_db()
    assert invoice.status == "void"
    assert invoice.number_display == "SL-2026-000001"
    assert balance(AccountKind.BUYER_RECEIVABLE, w.buyer) == 0
    assert balance(AccountKind.PROVIDER_PENDING, w.provider) == 0
    assert grant.redeemed_minor == 0
    assert set(Payout.objects.filter(invoice=invoice).values_list("status", flat=True)) == {"cancelled"}
    assert ledger_verify().mismatches == []
    # The period can be invoiced again, with the next number.
    again = run_and_finalize(w)
    assert again.number_display == "SL-2026-000002"


def test_a_credit_note_lowers_what_is_owed_and_takes_back_in_proportion(billing_world):
    w = billing_world
    invoice = run_and_finalize(w)
    note = services.credit_note_issue(invoice=invoice, net_minor=10_000, reason="dispute", idempotency_key="cn-1")
    again = services.credit_note_issue(invoice=invoice, net_minor=10_000, reason="dispute", idempotency_key="cn-1")
    assert again.pk == note.pk
    assert (note.number_display, note.vat_minor, note.total_minor) == ("CN-2026-000001", 600, 10_600)
    invoice.refresh_from_db()
    assert invoice.outstanding_minor == 254_400 - 10_600
    assert balance(AccountKind.BUYER_RECEIVABLE, w.buyer) == 254_400 - 10_600
    assert ledger_verify().mismatches == []
    ledger, owed, _name = selectors.receivables_by_buyer()[w.buyer.pk]
    assert ledger == owed
    # The owners' pending payouts shrank, and so did their per-pool parts (the earnings page shows those).
    for payout in Payout.objects.filter(invoice=invoice):
        assert sum(part["gross_minor"] for part in payout.breakdown) == payout.gross_minor
        assert sum(part["fee_minor"] for part in payout.breakdown) == payout.fee_minor
    assert sum(p.gross_minor for p in Payout.objects.filter(invoice=invoice)) == invoice.subtotal_minor - 10_000
    with pytest.raises(ApplicationError) as error:
        services.credit_note_issue(invoice=invoice, net_minor=10**9, reason="x", idempotency_key="cn-2")
    assert error.value.code == "credit_too_large"


@pytest.mark.django_db(transaction=True)
def test_finalizing_one_invoice_twice_at_once_gives_one_number(billing_world):
    (draft,) = services.invoice_run(window=OCTOBER, at=AT)
    barrier = threading.Barrier(2)
    numbers: list[str] = []

    def finalize() -> None:
        try:
            barrier.wait()
            numbers.append(services.invoice_finalize(invoice=draft, at=AT).number_display)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finalize) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert numbers == ["SL-2026-000001", "SL-2026-000001"]
    assert InvoiceSeries.objects.get(code="SL-2026").next_number == 2
    assert ledger_verify().mismatches == []


@pytest.mark.django_db(transaction=True)
def test_invoices_finalized_concurrently_get_gap_free_numbers(make_org):
    provider = make_org("provider")
    drafts = []
    for i in range(8):
        buyer = make_org("buyer", name=f"buyer {i}")
        deliver(october_lease(provider, buyer))
        drafts.extend(services.invoice_run(window=OCTOBER, buyer_ids=[buyer.pk], at=AT))
    barrier = threading.Barrier(len(drafts))

    def finalize(invoice: Invoice) -> None:
        try:
            barrier.wait()
            services.invoice_finalize(invoice=invoice, at=AT)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finalize, args=(d,)) for d in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == list(range(1, 9))


def test_token_contracts_are_invoiced_for_metered_tokens_at_their_prices(billing_world):
    from metering.models import UsageHour
    from tests.marketplace.token_factories import make_token_contract

    w = billing_world
    contract = make_token_contract(w.provider, w.buyer, start=OCTOBER.start, status="active")
    UsageHour.objects.create(
        provider=w.provider, subject_kind="contract", subject_id=contract.public_id,
        hour_start=OCTOBER.start + timedelta(days=3), record_count=1, accelerator_seconds=0, energy_wh=0,
        records_without_energy=0, accelerator_seconds_without_energy=0, utilization_bp=None,
        tokens_in=12_500_000, tokens_out=3_000_000, requests=4_000,
    )  # fmt: skip
    (draft,) = services.invoice_run(window=OCTOBER, at=AT)
    tokens = {line.kind: line.amount_minor for line in draft.lines.filter(kind__startswith="tokens")}
    assert tokens == {"tokens_in": 2_500, "tokens_out": 2_400}  # 12.5 M x ¥2 and 3 M x ¥8
    assert draft.subtotal_minor == 240_000 + 4_900


def test_a_buyer_who_asks_is_invoiced_at_each_leases_end_and_not_again_monthly(billing_world):
    from billing.models import BillingProfile

    w = billing_world
    BillingProfile.objects.create(organization=w.buyer, invoice_at_lease_end=True)
    assert services.invoice_lease_end_due(at=AT) == 1
    assert services.invoice_lease_end_due(at=AT) == 0  # once
    alone = Invoice.objects.get(lease_public_id=w.lease.public_id)
    assert alone.status == "finalized"
    assert alone.total_minor == 254_400
    assert (alone.period_start, alone.period_end) == (w.lease.start, w.lease.end)
    assert services.invoice_run(window=OCTOBER, at=AT) == []  # the monthly run leaves the lease out


def test_a_credit_note_gives_the_vouchers_part_back_to_the_grant(billing_world):
    w = billing_world
    program = voucher_factories.program(w.issuer, settlement_mode="deduct_at_checkout")
    grant = voucher_factories.grant(program, w.buyer, amount_minor=1_000_000)
    invoice = run_and_finalize(w)  # subsidy 20% of ¥2,400 = ¥480
    note = services.credit_note_issue(invoice=invoice, net_minor=24_000, reason="outage", idempotency_key="cn-v")
    grant.refresh_from_db()
    invoice.refresh_from_db()
    assert note.subsidy_released_minor == 4_800  # 10% of the invoice: 10% of the subsidy
    assert note.buyer_credit_minor == 24_000 + 1_440 - 4_800
    assert grant.redeemed_minor == 48_000 - 4_800
    assert balance(AccountKind.VOUCHER_RECEIVABLE, w.issuer) == 48_000 - 4_800
    ledger, owed, _name = selectors.receivables_by_buyer()[w.buyer.pk]
    assert ledger == owed == invoice.amount_due_minor - note.buyer_credit_minor
    assert ledger_verify().mismatches == []


def test_the_issuers_payment_of_a_deducted_subsidy_is_booked_once(billing_world):
    from vouchers import services as voucher_services
    from vouchers.models import Redemption

    w = billing_world
    program = voucher_factories.program(w.issuer, settlement_mode="deduct_at_checkout")
    voucher_factories.grant(program, w.buyer, amount_minor=1_000_000)
    invoice = run_and_finalize(w)
    redemption = Redemption.objects.get(invoice_reference=str(invoice.public_id))
    voucher_services.redemption_mark_paid(issuer=w.issuer, redemption=redemption, fiscal_reference="京财库〔2026〕1号")
    assert services.voucher_settlements_post() == 1
    assert services.voucher_settlements_post() == 0
    assert balance(AccountKind.VOUCHER_RECEIVABLE, w.issuer) == 0
    assert balance(AccountKind.BANK_CASH) == 48_000


def test_token_usage_gets_the_programmes_model_ratio(billing_world):
    from metering.models import UsageHour
    from tests.marketplace.token_factories import make_token_contract

    w = billing_world
    program = voucher_factories.program(w.issuer, settlement_mode="deduct_at_checkout", ratio_model=Decimal("0.50"))
    voucher_factories.grant(program, w.buyer, amount_minor=1_000_000)
    contract = make_token_contract(w.provider, w.buyer, start=OCTOBER.start, status="active")
    UsageHour.objects.create(
        provider=w.provider, subject_kind="contract", subject_id=contract.public_id,
        hour_start=OCTOBER.start + timedelta(days=3), record_count=1, accelerator_seconds=0, energy_wh=0,
        records_without_energy=0, accelerator_seconds_without_energy=0, utilization_bp=None,
        tokens_in=10_000_000, tokens_out=0, requests=1,
    )  # fmt: skip
    invoice = run_and_finalize(w)
    # Capacity ¥2,400 at the 20% chip ratio, tokens ¥20 at the 50% model ratio.
    assert invoice.subsidy_minor == 48_000 + 1_000


def test_usage_that_arrives_after_an_invoice_is_issued_adjusts_the_next_one(billing_world):
    from metering.models import UsageHour
    from tests.marketplace.token_factories import make_token_contract

    w = billing_world
    contract = make_token_contract(w.provider, w.buyer, start=OCTOBER.start, status="active")

    def tokens(day: int, tokens_in: int) -> None:
        UsageHour.objects.create(
            provider=w.provider, subject_kind="contract", subject_id=contract.public_id,
            hour_start=OCTOBER.start + timedelta(days=day), record_count=1, accelerator_seconds=0, energy_wh=0,
            records_without_energy=0, accelerator_seconds_without_energy=0, utilization_bp=None,
            tokens_in=tokens_in, tokens_out=0, requests=1,
        )  # fmt: skip

    tokens(3, 10_000_000)
    october = run_and_finalize(w)  # ¥2,400 capacity + ¥20 tokens
    tokens(4, 5_000_000)  # a late record for October: ¥10 more
    november = Window.month(2026, 11)
    (draft,) = services.invoice_run(window=november, buyer_ids=[w.buyer.pk], at=AT + timedelta(days=30))
    (adjustment,) = draft.lines.filter(kind="adjustment")
    assert adjustment.amount_minor == 1_000
    assert adjustment.subject_public_id == contract.public_id
    assert october.number_display in adjustment.description
    services.invoice_finalize(invoice=draft, at=datetime(2026, 12, 1, 7, tzinfo=UTC), recompute=False)
    # Once issued, the adjustment counts: December's draft adjusts nothing more.
    assert services.invoice_run(window=Window.month(2026, 12), buyer_ids=[w.buyer.pk], at=AT) == []

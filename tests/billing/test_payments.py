"""Payments against localstripe, webhooks, payouts through the Connect fake, and reconciliation."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connections
from django.test import Client

from billing import services
from billing import stripe_gateway as gw
from billing.ledger import ledger_verify
from billing.models import (
    AccountKind,
    Invoice,
    JournalEntry,
    LedgerAccount,
    Payment,
    Payout,
    StripeEvent,
    WebhookRejection,
)
from tests.billing.conftest import OCTOBER, deliver, october_lease
from tests.billing.test_stripe_gateway import sign

AT = datetime(2026, 11, 2, 6, tzinfo=UTC)
WEBHOOK = "/billing/stripe/webhook/"


def finalized(world) -> Invoice:
    (invoice,) = services.invoice_run(window=OCTOBER, buyer_ids=[world.buyer.pk], at=AT)
    return services.invoice_finalize(invoice=invoice, at=AT)


def card(payment: Payment, method: str = "pm_card_visa") -> None:
    """What Stripe.js does in the browser: confirm the intent with the card."""
    with contextlib.suppress(gw.PaymentDeclined):  # a declined card is a result, not an error, here
        gw.payment_intent_confirm(
            payment_intent_id=payment.stripe_payment_intent_id, payment_method=method, idempotency_key=uuid.uuid4().hex
        )


def balance(kind: AccountKind, org=None) -> int:
    account = LedgerAccount.objects.filter(kind=kind, organization=org).first()
    return account.balance_minor if account else 0


def event_body(event_type: str, obj: dict, event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    ).encode()


@pytest.mark.django_db
def test_a_buyer_pays_and_every_owner_is_paid_out(billing_world, stripe_server):
    w = billing_world
    invoice = finalized(w)
    payment = services.payment_start(invoice=invoice)
    assert payment.client_secret
    assert payment.amount_minor == 254_400
    card(payment)
    services.payment_sync(payment_intent_id=payment.stripe_payment_intent_id, at=AT)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert invoice.payouts_released
    assert balance(AccountKind.PROVIDER_PAYABLE, w.provider) == 154_560
    assert services.payouts_due() == 2
    payouts = {p.owner_id: p for p in Payout.objects.filter(invoice=invoice)}
    assert {p.status for p in payouts.values()} == {"paid"}
    transfer = gw.transfer_retrieve(transfer_id=payouts[w.partner.pk].stripe_transfer_id)
    assert (transfer.amount_minor, transfer.transfer_group) == (66_240, invoice.number_display)
    assert balance(AccountKind.PROVIDER_PAYABLE, w.provider) == 0
    assert balance(AccountKind.STRIPE_CASH) == 254_400 - 154_560 - 66_240  # VAT and fee stay with the platform
    assert services.payouts_due() == 0  # nothing twice
    assert ledger_verify().mismatches == []
    # Reconciliation: our payment and transfers match Stripe; a transfer made behind our back is listed.
    # (The local Stripe lives for the whole test session, so other tests' objects appear too: look at ours.)
    stray = gw.transfer_create(
        amount_minor=500,
        currency="CNY",
        destination=w.partner.billing.stripe_account_id,
        transfer_group="manual",
        idempotency_key=uuid.uuid4().hex,
        metadata={},
    )
    run = services.reconciliation_run_recent()
    ours = {payment.stripe_payment_intent_id, *(p.stripe_transfer_id for p in payouts.values())}
    assert [d for d in run.differences if d["stripe_id"] in ours or d["reference"] in ours] == []
    assert {"kind": "transfer", "cause": "missing_payout", "stripe_id": stray.id} in [
        {k: d[k] for k in ("kind", "cause", "stripe_id")} for d in run.differences
    ]


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_pay_clicks_make_one_payment_intent(billing_world, stripe_server):
    invoice = finalized(billing_world)
    barrier = threading.Barrier(50)
    intents: list[str] = []
    lock = threading.Lock()

    def click() -> None:
        try:
            barrier.wait()
            payment = services.payment_start(invoice=invoice)
            with lock:
                intents.append(payment.stripe_payment_intent_id)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=click) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(intents) == 50
    assert len(set(intents)) == 1
    assert Payment.objects.filter(invoice=invoice).count() == 1


@pytest.mark.django_db
def test_a_crash_between_the_stripe_call_and_the_commit_still_makes_one_intent(
    billing_world, stripe_server, monkeypatch
):
    invoice = finalized(billing_world)
    real_create = gw.payment_intent_create
    created: list[str] = []

    def crash_after_stripe(**kwargs):
        created.append(real_create(**kwargs).id)
        raise SystemExit("worker killed after Stripe answered")

    monkeypatch.setattr(gw, "payment_intent_create", crash_after_stripe)
    with pytest.raises(SystemExit):
        services.payment_start(invoice=invoice)
    assert Payment.objects.get(invoice=invoice).stripe_payment_intent_id is None
    monkeypatch.setattr(gw, "payment_intent_create", real_create)
    payment = services.payment_start(invoice=invoice)  # the retry
    assert payment.stripe_payment_intent_id == created[0]
    card(payment)
    services.payment_sync(payment_intent_id=payment.stripe_payment_intent_id)
    assert JournalEntry.objects.filter(kind="payment_received").count() == 1


@pytest.mark.django_db
def test_a_declined_card_leaves_the_invoice_open_and_a_new_attempt_pays(billing_world, stripe_server):
    invoice = finalized(billing_world)
    first = services.payment_start(invoice=invoice)
    card(first, "pm_card_visa_chargeDeclined")
    first = services.payment_sync(payment_intent_id=first.stripe_payment_intent_id)
    assert first.status == "failed"
    assert first.failure_message
    invoice.refresh_from_db()
    assert invoice.status == "finalized"
    second = services.payment_start(invoice=invoice)
    assert second.pk != first.pk
    assert second.attempt == 2
    card(second)
    services.payment_sync(payment_intent_id=second.stripe_payment_intent_id)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert invoice.amount_paid_minor == 254_400


@pytest.mark.django_db(transaction=True)
def test_a_webhook_replayed_ten_times_at_once_applies_once(billing_world, stripe_server):
    invoice = finalized(billing_world)
    payment = services.payment_start(invoice=invoice)
    card(payment)
    body = event_body("payment_intent.succeeded", {"id": payment.stripe_payment_intent_id, "object": "payment_intent"})
    header = sign(body, int(time.time()))
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def deliver() -> None:
        try:
            barrier.wait()
            statuses.append(
                Client().post(WEBHOOK, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header).status_code
            )
            event_id = json.loads(body)["id"]
            services.stripe_event_process(event_id=event_id)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 10
    assert StripeEvent.objects.count() == 1
    assert JournalEntry.objects.filter(kind="payment_received").count() == 1
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert invoice.amount_paid_minor == 254_400


@pytest.mark.django_db
def test_every_order_of_a_payments_events_ends_in_the_same_state(billing_world, stripe_server, make_org):
    """created, a failed attempt, then success: whatever order the webhooks arrive in, the invoice ends paid once."""
    from tests.billing.conftest import deliver, october_lease

    kinds = ["payment_intent.created", "payment_intent.payment_failed", "payment_intent.succeeded", "charge.succeeded"]
    finals = set()
    for n, order in enumerate(itertools.permutations(kinds)):
        buyer = make_org("buyer", name=f"permutation buyer {n}")
        deliver(october_lease(billing_world.provider, buyer))
        (draft,) = services.invoice_run(window=OCTOBER, buyer_ids=[buyer.pk], at=AT)
        invoice = services.invoice_finalize(invoice=draft, at=AT)
        payment = services.payment_start(invoice=invoice)
        card(payment, "pm_card_visa_chargeDeclined")
        card(payment)
        intent = payment.stripe_payment_intent_id
        for kind in order:
            obj = (
                {"id": f"ch_{n}", "object": "charge", "payment_intent": intent}
                if kind.startswith("charge.")
                else {"id": intent, "object": "payment_intent"}
            )
            body = event_body(kind, obj)
            response = Client().post(
                WEBHOOK, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(body, int(time.time()))
            )
            assert response.status_code == 200
            services.stripe_event_process(event_id=json.loads(body)["id"])
        invoice.refresh_from_db()
        payment.refresh_from_db()
        finals.add((invoice.status, invoice.amount_paid_minor, payment.status))
        assert JournalEntry.objects.filter(kind="payment_received", invoice=invoice).count() == 1
    assert finals == {("paid", 254_400, "succeeded")}


@pytest.mark.django_db
def test_a_bad_signature_or_a_stale_timestamp_is_refused_and_logged(billing_world, stripe_server):
    body = event_body("payment_intent.succeeded", {"id": "pi_forged", "object": "payment_intent"})
    forged = Client().post(
        WEBHOOK,
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(body, int(time.time()), "whsec_wrong"),
    )
    stale = Client().post(
        WEBHOOK, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(body, int(time.time()) - 3600)
    )
    unsigned = Client().post(WEBHOOK, body, content_type="application/json")
    assert (forged.status_code, stale.status_code, unsigned.status_code) == (400, 400, 400)
    assert WebhookRejection.objects.count() == 3
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_a_credit_note_on_a_paid_invoice_is_refunded_to_the_card_once(billing_world, stripe_server):
    invoice = finalized(billing_world)
    payment = services.payment_start(invoice=invoice)
    card(payment)
    services.payment_sync(payment_intent_id=payment.stripe_payment_intent_id)
    invoice.refresh_from_db()
    note = services.credit_note_issue(
        invoice=invoice, net_minor=10_000, reason="SLA dispute", idempotency_key="cn-paid"
    )
    services.credit_note_refund(credit_note=note)
    services.credit_note_refund(credit_note=note)
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.amount_refunded_minor == 10_600
    assert invoice.amount_paid_minor == 254_400 - 10_600
    assert ledger_verify().mismatches == []
    refunds = [r for r in gw.refund_list() if r.payment_intent_id == payment.stripe_payment_intent_id]
    assert [r.amount_minor for r in refunds] == [10_600]


@pytest.mark.django_db(transaction=True)
def test_localstripe_webhooks_reach_the_webhook_view(
    billing_world, stripe_server, stripe_webhook_endpoint, live_server
):
    """The whole loop: the card is confirmed at Stripe, Stripe posts the signed event to our view, the event
    is stored once and applied."""
    stripe_webhook_endpoint(live_server.url + WEBHOOK, events=["payment_intent.succeeded"])
    invoice = finalized(billing_world)
    payment = services.payment_start(invoice=invoice)
    card(payment)
    deadline = time.monotonic() + 20
    event = None
    while time.monotonic() < deadline and event is None:
        event = StripeEvent.objects.filter(object_id=payment.stripe_payment_intent_id).first()
        time.sleep(0.2)
    assert event is not None
    assert event.type == "payment_intent.succeeded"
    assert services.stripe_event_process(event_id=event.event_id)
    invoice.refresh_from_db()
    assert invoice.status == "paid"


def _paid(invoice: Invoice) -> Invoice:
    payment = services.payment_start(invoice=invoice)
    card(payment)
    services.payment_sync(payment_intent_id=payment.stripe_payment_intent_id, at=AT)
    invoice.refresh_from_db()
    return invoice


@pytest.mark.django_db(transaction=True)
def test_a_credit_after_the_payouts_is_owed_back_and_taken_from_the_next_payout(billing_world, stripe_server, make_org):
    """Found by the audit-coverage tests: a credit note on an invoice already paid out used to fail on the guarded
    payable balance (a 500). Now the owners owe it back and their next payouts are smaller by exactly that."""
    w = billing_world
    first = _paid(finalized(w))
    # The operator's payout is transferred; the partner's is still waiting when the credit is issued.
    operator_payout = Payout.objects.get(invoice=first, owner=w.provider)
    services.payout_execute(payout=operator_payout)
    partner_before = Payout.objects.get(invoice=first, owner=w.partner).amount_minor

    services.credit_note_issue(invoice=first, net_minor=10_000, reason="SLA dispute", idempotency_key="cn-after")

    owed = balance(AccountKind.PROVIDER_RECEIVABLE, w.provider)
    partner_payout = Payout.objects.get(invoice=first, owner=w.partner)
    partner_cut = partner_before - partner_payout.amount_minor
    # Each owner gives back their part, one way or the other.
    assert owed > 0
    assert partner_cut > 0
    assert balance(AccountKind.PROVIDER_RECEIVABLE, w.partner) == 0
    assert services.payouts_due() == 1  # the partner's smaller payout goes through
    partner_payout.refresh_from_db()
    assert partner_payout.transfer_minor == partner_before - partner_cut
    assert ledger_verify().mismatches == []

    # The operator's next invoice pays out less by what they owe, once.
    other_buyer = make_org("buyer", name="上海第二买家科技有限公司")
    deliver(october_lease(w.provider, other_buyer))
    (second,) = services.invoice_run(window=OCTOBER, buyer_ids=[other_buyer.pk], at=AT)
    second = _paid(services.invoice_finalize(invoice=second, at=AT))
    assert services.payouts_due() >= 1
    next_payout = Payout.objects.get(invoice=second, owner=w.provider)
    assert next_payout.clawback_minor == owed
    transfer = gw.transfer_retrieve(transfer_id=next_payout.stripe_transfer_id)
    assert transfer.amount_minor == next_payout.amount_minor - owed
    assert balance(AccountKind.PROVIDER_RECEIVABLE, w.provider) == 0
    assert balance(AccountKind.PROVIDER_PAYABLE, w.provider) == 0
    assert ledger_verify().mismatches == []
    run = services.reconciliation_run_recent()  # the smaller transfer is what we booked: no difference
    assert [d for d in run.differences if d["stripe_id"] == next_payout.stripe_transfer_id] == []

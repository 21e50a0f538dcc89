"""Fault injection: the local Stripe goes away mid-payment and mid-payout, then comes back (``make faults``).

DESIGN.md §4.5: a payment attempt's row (with its idempotency key) is committed before Stripe is called, and every
POST to Stripe carries a key derived from that row, so a retry after any failure gets the same Stripe object back.
These tests cut a real server process (devtools/stripe_server.py: localstripe + the Connect fake) with SIGKILL at
the worst moments and start it again on the same port with the same ``--data-file`` (its store, idempotency
replays included, survives the restart, as Stripe's does), then retry:

- killed between ``payment_start``'s row commit and the PaymentIntent call: the retry creates the one intent;
- killed after Stripe created the intent, before the answer reached us: the retry gets the same intent back;
- down when the card payment is synchronised: the sync after the restart books the payment once;
- down when payouts are due: they stay pending, and the next ``payouts_due`` transfers each exactly once, also
  when the server died after making the transfer but before answering.

Each test ends with: one PaymentIntent and one charge per invoice at Stripe, the invoice paid once, the ledger
balanced (``ledger_verify``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from billing import services
from billing import stripe_gateway as gw
from billing.ledger import ledger_verify
from billing.models import OPEN_PAYMENT_STATUSES, Invoice, JournalEntry, Payment, Payout
from tests.billing import conftest as billing_conftest
from tests.billing.test_payments import card, finalized

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]
billing_world = billing_conftest.billing_world  # the fixture (tests/billing/conftest.py), for this folder

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PersistentStripe:
    """One ``devtools.stripe_server`` on a fixed loopback port whose store lives in ``data_file``."""

    port: int
    data_file: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    kills: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        argv = [sys.executable, "-m", "devtools.stripe_server", "--port", str(self.port)]
        argv += ["--data-file", str(self.data_file)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_config/ready", timeout=2):  # noqa: S310  (loopback)
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Stripe server did not start; see {self.log}") from None
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, connections dropped, the port refuses connections until ``start``."""
        assert self.process is not None
        assert self.process.poll() is None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def stripe(tmp_path, settings) -> Iterator[PersistentStripe]:
    server = PersistentStripe(_free_port(), tmp_path / "stripe" / "store.pickle", tmp_path / "stripe.log")
    server.start()
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_MAX_NETWORK_RETRIES = 1  # the library's own retry, as in production, but quick
    settings.STRIPE_TIMEOUT_SECONDS = 5
    yield server
    server.stop()


def intents_for(invoice: Invoice) -> list[str]:
    """The PaymentIntents at Stripe made for this invoice (the server is the test's own: nothing else is there)."""
    page = gw.client().v1.payment_intents.list(params={"limit": 100})
    intents = [pi.to_dict() for pi in page.auto_paging_iter()]
    return [pi["id"] for pi in intents if (pi.get("metadata") or {}).get("invoice") == str(invoice.public_id)]


def charges_for(intent_id: str) -> list[str]:
    return [c.id for c in gw.charge_list() if c.payment_intent_id == intent_id and c.status == "succeeded"]


def assert_paid_once(invoice: Invoice) -> Payment:
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert invoice.amount_paid_minor == invoice.amount_due_minor
    (payment,) = Payment.objects.filter(invoice=invoice)
    assert payment.status == "succeeded"
    assert intents_for(invoice) == [payment.stripe_payment_intent_id]  # one PaymentIntent
    assert len(charges_for(payment.stripe_payment_intent_id)) == 1  # one charge
    assert JournalEntry.objects.filter(kind="payment_received", invoice=invoice).count() == 1
    assert ledger_verify().mismatches == []
    return payment


def test_stripe_killed_between_the_payment_row_commit_and_the_intent_call(billing_world, stripe, monkeypatch):
    invoice = finalized(billing_world)
    real_create = gw.payment_intent_create
    keys: list[str] = []

    def cut_then_create(**kwargs):
        keys.append(kwargs["idempotency_key"])
        if stripe.kills == 0:
            stripe.kill()  # the row is committed; Stripe dies before it is asked
        return real_create(**kwargs)

    monkeypatch.setattr(gw, "payment_intent_create", cut_then_create)
    with pytest.raises(gw.PaymentProviderUnavailable):
        services.payment_start(invoice=invoice)
    (payment,) = Payment.objects.filter(invoice=invoice)  # the committed attempt, with no intent yet
    assert payment.status in OPEN_PAYMENT_STATUSES
    assert payment.stripe_payment_intent_id is None
    # The buyer clicks again while Stripe is still down: the same attempt, no second row, still no intent.
    with pytest.raises(gw.PaymentProviderUnavailable):
        services.payment_start(invoice=invoice)
    assert Payment.objects.filter(invoice=invoice).count() == 1

    stripe.start()
    payment = services.payment_start(invoice=invoice)
    assert payment.stripe_payment_intent_id
    assert payment.status == "requires_payment"
    assert keys == [payment.idempotency_key] * 3  # every try carried the attempt's key
    assert services.payment_start(invoice=invoice).stripe_payment_intent_id == payment.stripe_payment_intent_id

    card(payment)
    services.payment_sync(payment_intent_id=payment.stripe_payment_intent_id)
    assert_paid_once(invoice)


def test_stripe_killed_after_creating_the_intent_before_answering(billing_world, stripe, monkeypatch):
    """Stripe made the intent (and stored it), then died before its answer reached us: the retry after the
    restart gets the same intent back (the idempotency replay survived the restart)."""
    invoice = finalized(billing_world)
    real_create = gw.payment_intent_create
    made: list[str] = []

    def create_then_cut(**kwargs):
        result = real_create(**kwargs)
        if not made:
            made.append(result.id)
            stripe.kill()
            raise gw.PaymentProviderUnavailable("connection reset: the answer was lost")
        return result

    monkeypatch.setattr(gw, "payment_intent_create", create_then_cut)
    with pytest.raises(gw.PaymentProviderUnavailable):
        services.payment_start(invoice=invoice)
    assert Payment.objects.get(invoice=invoice).stripe_payment_intent_id is None  # we never heard of it
    stripe.start()
    assert intents_for(invoice) == made  # Stripe kept it across the restart

    payment = services.payment_start(invoice=invoice)
    assert payment.stripe_payment_intent_id == made[0]  # replayed, not a second intent
    card(payment)
    # Stripe is cut again before the payment is synchronised (a webhook's processing, or the return page).
    stripe.kill()
    with pytest.raises(gw.PaymentProviderUnavailable):
        services.payment_sync(payment_intent_id=payment.stripe_payment_intent_id)
    invoice.refresh_from_db()
    assert invoice.status == "finalized"
    assert not JournalEntry.objects.filter(kind="payment_received").exists()
    stripe.start()
    services.payment_sync(payment_intent_id=payment.stripe_payment_intent_id)
    services.payment_sync(payment_intent_id=payment.stripe_payment_intent_id)  # a repeated webhook
    assert_paid_once(invoice)


def test_payouts_during_an_outage_stay_pending_and_are_transferred_once(billing_world, stripe, monkeypatch):
    invoice = finalized(billing_world)
    payment = services.payment_start(invoice=invoice)
    card(payment)
    services.payment_sync(payment_intent_id=payment.stripe_payment_intent_id)
    assert_paid_once(invoice)
    invoice.refresh_from_db()
    payouts = list(Payout.objects.filter(invoice=invoice).order_by("id"))
    assert len(payouts) == 2
    assert invoice.payouts_released

    stripe.kill()  # Stripe is down when the payout schedule runs
    assert services.payouts_due() == 0
    assert set(Payout.objects.filter(invoice=invoice).values_list("status", flat=True)) == {"pending"}
    assert not JournalEntry.objects.filter(kind="payout").exists()
    stripe.start()

    # The first transfer is made at Stripe, then the server dies before answering: that payout stays pending
    # (the other one fails to connect at all), and the next run replays the transfer instead of making another.
    real_transfer = gw.transfer_create
    lost: list[str] = []

    def transfer_then_cut(**kwargs):
        result = real_transfer(**kwargs)
        if not lost:
            lost.append(result.id)
            stripe.kill()
            raise gw.PaymentProviderUnavailable("connection reset: the answer was lost")
        return result

    monkeypatch.setattr(gw, "transfer_create", transfer_then_cut)
    assert services.payouts_due() == 0
    assert set(Payout.objects.filter(invoice=invoice).values_list("status", flat=True)) == {"pending"}
    stripe.start()
    assert services.payouts_due() == 2  # the retry
    assert services.payouts_due() == 0  # and nothing twice

    paid = {p.pk: p for p in Payout.objects.filter(invoice=invoice)}
    assert {p.status for p in paid.values()} == {"paid"}
    transfers = list(gw.transfer_list(transfer_group=invoice.number_display))
    assert sorted(t.id for t in transfers) == sorted(p.stripe_transfer_id for p in paid.values())  # one each
    assert lost[0] in {t.id for t in transfers}  # the transfer made before the cut is the one booked
    assert sorted(t.amount_minor for t in transfers) == sorted(p.amount_minor for p in payouts)
    assert JournalEntry.objects.filter(kind="payout").count() == 2
    assert ledger_verify().mismatches == []

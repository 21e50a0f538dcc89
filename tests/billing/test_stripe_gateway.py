"""billing.stripe_gateway against devtools/stripe_server.py (localstripe + the Connect fake) on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings

from billing import stripe_gateway as gw
from tests import stripe_server as stripe_plugin

# The plugin's fixtures (tests/conftest.py may also list "tests.stripe_server" in pytest_plugins).
stripe_server = stripe_plugin.stripe_server
stripe_webhook_endpoint = stripe_plugin.stripe_webhook_endpoint


def key(label: str) -> str:
    return f"test-{label}-{uuid.uuid4().hex}"


def new_intent(amount: int = 12_345, **metadata: object) -> gw.PaymentIntentResult:
    return gw.payment_intent_create(
        amount_minor=amount, currency="CNY", idempotency_key=key("pi"), metadata={"invoice": "INV-1", **metadata}
    )


# --- Payments --------------------------------------------------------------------------------------------


def test_payment_intent_with_a_test_card_succeeds(stripe_server):
    intent = new_intent(invoice_id=42)
    assert intent.id.startswith("pi_")
    assert intent.client_secret.startswith(intent.id + "_secret_")
    assert intent.status == "requires_payment_method"
    assert (intent.amount_minor, intent.currency) == (12_345, "cny")
    assert intent.metadata == {"invoice": "INV-1", "invoice_id": "42"}

    confirmed = gw.payment_intent_confirm(
        payment_intent_id=intent.id, payment_method="pm_card_visa", idempotency_key=key("confirm")
    )
    assert confirmed.status == "succeeded"
    assert confirmed.latest_charge_id
    assert confirmed.latest_charge_id.startswith("ch_")
    assert gw.payment_intent_retrieve(payment_intent_id=intent.id).status == "succeeded"


@pytest.mark.parametrize(
    ("payment_method", "decline_code"),
    [("pm_card_visa_chargeDeclined", "generic_decline"), ("pm_card_chargeCustomerFail", None)],
)
def test_a_declined_card_fails_and_the_intent_can_be_retried(stripe_server, payment_method, decline_code):
    intent = new_intent()
    with pytest.raises(gw.PaymentDeclined) as declined:
        gw.payment_intent_confirm(payment_intent_id=intent.id, payment_method=payment_method, idempotency_key=key("c"))
    assert declined.value.payment_intent_id == intent.id
    assert declined.value.decline_code == decline_code
    assert declined.value.status_code == 402
    after = gw.payment_intent_retrieve(payment_intent_id=intent.id)
    assert after.status == "requires_payment_method"
    assert after.last_error_code in {"card_declined", "generic_decline"}

    retried = gw.payment_intent_confirm(
        payment_intent_id=intent.id, payment_method="pm_card_visa", idempotency_key=key("c")
    )
    assert retried.status == "succeeded"


def test_the_same_idempotency_key_returns_the_same_intent(stripe_server):
    idem = key("pay")
    first = gw.payment_intent_create(amount_minor=500, currency="cny", idempotency_key=idem, metadata={"a": 1})
    second = gw.payment_intent_create(amount_minor=500, currency="cny", idempotency_key=idem, metadata={"a": 1})
    assert second == first
    with pytest.raises(gw.IdempotencyKeyReused):
        gw.payment_intent_create(amount_minor=501, currency="cny", idempotency_key=idem, metadata={"a": 1})


def test_twenty_concurrent_creates_with_one_key_make_one_intent(stripe_server):
    idem, marker = key("race"), uuid.uuid4().hex

    def create(_: int) -> str:
        return gw.payment_intent_create(
            amount_minor=777, currency="cny", idempotency_key=idem, metadata={"marker": marker}
        ).id

    with ThreadPoolExecutor(max_workers=20) as pool:
        ids = set(pool.map(create, range(20)))
    assert len(ids) == 1
    listed = [
        pi.id
        for pi in gw.client().v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
        if pi.to_dict()["metadata"].get("marker") == marker
    ]
    assert listed == list(ids)


def test_a_declined_confirm_is_replayed_for_its_key_not_charged_again(stripe_server):
    intent = new_intent()
    idem = key("confirm")
    for _ in range(2):
        with pytest.raises(gw.PaymentDeclined):
            gw.payment_intent_confirm(
                payment_intent_id=intent.id, payment_method="pm_card_visa_chargeDeclined", idempotency_key=idem
            )
    charges = [c for c in gw.charge_list() if c.payment_intent_id == intent.id]
    assert len(charges) == 1
    assert charges[0].status == "failed"


def test_refunds_are_idempotent_and_listed_for_reconciliation(stripe_server):
    start = datetime.now(UTC) - timedelta(seconds=1)
    intent = new_intent(amount=10_000)
    gw.payment_intent_confirm(payment_intent_id=intent.id, payment_method="pm_card_visa", idempotency_key=key("c"))
    idem = key("refund")
    refund = gw.refund_create(payment_intent_id=intent.id, amount_minor=2_500, idempotency_key=idem)
    again = gw.refund_create(payment_intent_id=intent.id, amount_minor=2_500, idempotency_key=idem)
    assert again == refund
    assert refund.id.startswith("re_")
    assert (refund.amount_minor, refund.currency, refund.status) == (2_500, "cny", "succeeded")

    with pytest.raises(gw.StripeRequestError) as too_much:
        gw.refund_create(payment_intent_id=intent.id, amount_minor=7_501, idempotency_key=key("refund"))
    assert (too_much.value.code, too_much.value.param) == ("amount_too_large", "amount")

    end = datetime.now(UTC) + timedelta(seconds=2)
    refunds = [r for r in gw.refund_list(created_gte=start, created_lt=end) if r.charge_id == refund.charge_id]
    assert [r.id for r in refunds] == [refund.id]
    charges = [c for c in gw.charge_list(created_gte=start, created_lt=end) if c.payment_intent_id == intent.id]
    assert [(c.amount_minor, c.amount_refunded_minor, c.status) for c in charges] == [(10_000, 2_500, "succeeded")]
    assert not [c for c in gw.charge_list(created_gte=end) if c.payment_intent_id == intent.id]


# --- Connect ---------------------------------------------------------------------------------------------


def test_connected_account_transfer_and_reversal(stripe_server):
    idem = key("acct")
    account = gw.connected_account_create(
        idempotency_key=idem, email="owner@example.com", country="cn", metadata={"owner_id": 7}
    )
    assert account.id.startswith("acct_")
    assert account == gw.connected_account_create(
        idempotency_key=idem, email="owner@example.com", country="cn", metadata={"owner_id": 7}
    )
    assert gw.connected_account_retrieve(account_id=account.id) == account
    assert (account.country, account.default_currency, account.payouts_enabled) == ("CN", "cny", True)

    group = f"invoice-{uuid.uuid4().hex}"
    transfer_key = key("transfer")
    transfer = gw.transfer_create(
        amount_minor=8_000,
        currency="cny",
        destination=account.id,
        transfer_group=group,
        idempotency_key=transfer_key,
        metadata={"payout_id": 3},
    )
    assert transfer.id.startswith("tr_")
    assert (transfer.amount_minor, transfer.destination, transfer.transfer_group) == (8_000, account.id, group)
    assert transfer.metadata == {"payout_id": "3"}
    assert (transfer.amount_reversed_minor, transfer.reversed) == (0, False)
    replay = gw.transfer_create(
        amount_minor=8_000,
        currency="cny",
        destination=account.id,
        transfer_group=group,
        idempotency_key=transfer_key,
        metadata={"payout_id": 3},
    )
    assert replay == transfer
    second = gw.transfer_create(
        amount_minor=2_000,
        currency="cny",
        destination=account.id,
        transfer_group=group,
        idempotency_key=key("transfer"),
        metadata={},
    )
    assert [t.id for t in gw.transfer_list(transfer_group=group)] == [second.id, transfer.id]

    reversal_key = key("reversal")
    reversal = gw.transfer_reversal_create(transfer_id=transfer.id, amount_minor=3_000, idempotency_key=reversal_key)
    assert reversal.id.startswith("trr_")
    assert (reversal.transfer_id, reversal.amount_minor, reversal.currency) == (transfer.id, 3_000, "cny")
    assert (
        gw.transfer_reversal_create(transfer_id=transfer.id, amount_minor=3_000, idempotency_key=reversal_key)
        == reversal
    )
    after = gw.transfer_retrieve(transfer_id=transfer.id)
    assert (after.amount_reversed_minor, after.reversed) == (3_000, False)
    with pytest.raises(gw.StripeRequestError) as too_much:
        gw.transfer_reversal_create(transfer_id=transfer.id, amount_minor=5_001, idempotency_key=key("reversal"))
    assert too_much.value.param == "amount"
    gw.transfer_reversal_create(transfer_id=transfer.id, amount_minor=5_000, idempotency_key=key("reversal"))
    assert gw.transfer_retrieve(transfer_id=transfer.id).reversed is True


def test_transfer_list_by_creation_window(stripe_server):
    account = gw.connected_account_create(idempotency_key=key("a"), email="w@example.com", country="CN", metadata={})
    before = datetime.now(UTC) - timedelta(seconds=1)
    transfer = gw.transfer_create(
        amount_minor=100,
        currency="cny",
        destination=account.id,
        transfer_group="g",
        idempotency_key=key("t"),
        metadata={},
    )
    after = datetime.now(UTC) + timedelta(seconds=2)
    assert transfer.id in {t.id for t in gw.transfer_list(created_gte=before, created_lt=after)}
    assert transfer.id not in {t.id for t in gw.transfer_list(created_gte=after)}
    assert transfer.id not in {t.id for t in gw.transfer_list(created_lt=before)}


def test_transfer_to_an_unknown_account_is_refused_in_stripes_words(stripe_server):
    with pytest.raises(gw.StripeRequestError) as refused:
        gw.transfer_create(
            amount_minor=100,
            currency="cny",
            destination="acct_doesnotexist",
            transfer_group="g",
            idempotency_key=key("t"),
            metadata={},
        )
    assert (refused.value.http_status, refused.value.code, refused.value.param) == (
        400,
        "resource_missing",
        "destination",
    )
    with pytest.raises(gw.StripeRequestError) as missing:
        gw.transfer_retrieve(transfer_id="tr_doesnotexist")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")


def test_an_unreachable_stripe_is_reported_as_unavailable(stripe_server, settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # discard port: connection refused
    settings.STRIPE_MAX_NETWORK_RETRIES = 1
    with pytest.raises(gw.PaymentProviderUnavailable):
        gw.payment_intent_retrieve(payment_intent_id="pi_x")


# --- Webhooks --------------------------------------------------------------------------------------------


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, queue.Queue[tuple[bytes, str]]]]:
    """A tiny HTTP server on loopback that queues (body, Stripe-Signature) of every POST."""
    received: queue.Queue[tuple[bytes, str]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.put((body, self.headers.get("Stripe-Signature", "")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/billing/stripe/webhook/", received
    server.shutdown()
    server.server_close()


def wait_for_event(received: queue.Queue[tuple[bytes, str]], object_id: str, timeout: float = 15) -> tuple[bytes, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body, signature = received.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if json.loads(body)["data"]["object"]["id"] == object_id:
            return body, signature
    raise AssertionError(f"no webhook event for {object_id}")


def sign(payload: bytes, timestamp: int, secret: str | None = None) -> str:
    secret = secret or settings.STRIPE_WEBHOOK_SECRET
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def test_webhook_of_a_confirmed_payment_is_received_and_verified(
    stripe_server, stripe_webhook_endpoint, webhook_receiver
):
    url, received = webhook_receiver
    stripe_webhook_endpoint(url, events=["payment_intent.succeeded", "payment_intent.payment_failed"])
    intent = new_intent(amount=4_200)
    gw.payment_intent_confirm(payment_intent_id=intent.id, payment_method="pm_card_visa", idempotency_key=key("c"))

    payload, signature = wait_for_event(received, intent.id)
    assert signature.startswith("t=")
    assert ",v1=" in signature
    event = gw.webhook_event_construct(payload=payload, signature_header=signature)
    assert event["id"].startswith("evt_")
    assert event["type"] == "payment_intent.succeeded"
    assert event["data"]["object"]["id"] == intent.id
    assert event["data"]["object"]["amount"] == 4_200
    assert event["data"]["object"]["metadata"] == {"invoice": "INV-1"}

    tampered = payload.replace(b"4200", b"4201")
    assert tampered != payload
    with pytest.raises(gw.WebhookSignatureInvalid):
        gw.webhook_event_construct(payload=tampered, signature_header=signature)
    with pytest.raises(gw.WebhookSignatureInvalid):
        gw.webhook_event_construct(payload=payload, signature_header="")
    with pytest.raises(gw.WebhookSignatureInvalid):
        gw.webhook_event_construct(payload=payload, signature_header=sign(payload, int(time.time()), "whsec_other"))


def test_webhook_with_a_stale_timestamp_is_refused(stripe_server):
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "charge.refunded", "data": {"object": {}}}).encode()
    now = int(time.time())
    assert gw.webhook_event_construct(payload=payload, signature_header=sign(payload, now - 290))["id"] == "evt_1"
    with pytest.raises(gw.WebhookSignatureInvalid):
        gw.webhook_event_construct(payload=payload, signature_header=sign(payload, now - 301))
    with pytest.raises(gw.WebhookSignatureInvalid):
        gw.webhook_event_construct(payload=b"not json", signature_header=sign(b"not json", now))


def test_declined_payment_and_refund_send_their_events(stripe_server, stripe_webhook_endpoint, webhook_receiver):
    url, received = webhook_receiver
    stripe_webhook_endpoint(url, events=["payment_intent.payment_failed", "charge.refunded"])
    failing = new_intent()
    with pytest.raises(gw.PaymentDeclined):
        gw.payment_intent_confirm(
            payment_intent_id=failing.id, payment_method="pm_card_visa_chargeDeclined", idempotency_key=key("c")
        )
    payload, signature = wait_for_event(received, failing.id)
    assert gw.webhook_event_construct(payload=payload, signature_header=signature)["type"] == (
        "payment_intent.payment_failed"
    )

    paid = gw.payment_intent_confirm(
        payment_intent_id=new_intent().id, payment_method="pm_card_visa", idempotency_key=key("c")
    )
    assert paid.latest_charge_id
    gw.refund_create(payment_intent_id=paid.id, amount_minor=100, idempotency_key=key("r"))
    payload, signature = wait_for_event(received, paid.latest_charge_id)
    event = gw.webhook_event_construct(payload=payload, signature_header=signature)
    assert event["type"] == "charge.refunded"
    assert event["data"]["object"]["amount_refunded"] == 100


def test_the_fake_stripe_js_is_served_with_card_payment(stripe_server):
    import urllib.request

    with urllib.request.urlopen(settings.STRIPE_JS_URL, timeout=10) as response:  # noqa: S310  (loopback)
        script = response.read().decode()
    assert "confirmCardPayment" in script
    assert "payment_method_data[card]" in script


def test_transfer_from_a_source_charge_and_the_balance(stripe_server):
    paid = gw.payment_intent_confirm(
        payment_intent_id=new_intent(amount=5_000).id, payment_method="pm_card_visa", idempotency_key=key("c")
    )
    assert paid.latest_charge_id
    before = gw.balance_retrieve().available_minor.get("cny", 0)
    account = gw.connected_account_create(idempotency_key=key("a"), email="s@example.com", country="CN", metadata={})
    transfer = gw.transfer_create(
        amount_minor=4_000,
        currency="cny",
        destination=account.id,
        transfer_group="g",
        idempotency_key=key("t"),
        metadata={},
        source_transaction=paid.latest_charge_id,
    )
    assert transfer.source_transaction == paid.latest_charge_id
    assert gw.balance_retrieve().available_minor["cny"] == before - 4_000
    with pytest.raises(gw.StripeRequestError) as too_much:
        gw.transfer_create(
            amount_minor=5_001,
            currency="cny",
            destination=account.id,
            transfer_group="g",
            idempotency_key=key("t"),
            metadata={},
            source_transaction=paid.latest_charge_id,
        )
    assert too_much.value.param == "amount"

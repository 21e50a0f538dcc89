"""Billing pages: the buyer's invoices, PDF and pay page; the provider's earnings; the staff ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing import services
from tests.billing.conftest import OCTOBER

pytestmark = pytest.mark.django_db
AT = datetime(2026, 11, 2, 6, tzinfo=UTC)


@pytest.fixture
def invoice(billing_world):
    (draft,) = services.invoice_run(window=OCTOBER, at=AT)
    return services.invoice_finalize(invoice=draft, at=AT)


def test_buyer_lists_sorts_and_filters_invoices_with_charts(billing_world, invoice, client_for):
    client = client_for(billing_world.buyer.owner)
    page = client.get("/billing/invoices/?sort=-amount")
    assert page.status_code == 200
    body = page.content.decode()
    assert invoice.number_display in body
    assert "spend-month-chart" in body
    assert invoice.number_display not in client.get("/billing/invoices/?status=paid").content.decode()
    partial = client.get("/billing/invoices/?status=finalized", HTTP_HX_REQUEST="true").content.decode()
    assert invoice.number_display in partial
    assert "<html" not in partial


def test_invoice_detail_and_pdf_in_both_languages(billing_world, invoice, client_for):
    client = client_for(billing_world.buyer.owner)
    detail = client.get(f"/billing/invoices/{invoice.public_id}/").content.decode()
    assert "¥2,544.00" in detail
    assert "192.00" in detail
    for language in ("zh-hans", "en"):
        response = client.get(f"/billing/invoices/{invoice.public_id}/pdf/?lang={language}")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/pdf"
        assert response.content.startswith(b"%PDF")
        assert len(response.content) > 5_000
        assert f'filename="{invoice.number_display}.pdf"' in response["Content-Disposition"]


def test_another_buyer_cannot_see_or_pay_the_invoice(billing_world, invoice, client_for, make_org):
    other = client_for(make_org("buyer").owner)
    assert other.get(f"/billing/invoices/{invoice.public_id}/").status_code == 404
    assert other.get(f"/billing/invoices/{invoice.public_id}/pdf/").status_code == 404
    assert other.post(f"/billing/invoices/{invoice.public_id}/pay/").status_code == 404


def test_pay_page_starts_one_payment_and_shows_the_card_form(billing_world, invoice, client_for, stripe_server):
    client = client_for(billing_world.buyer.owner)
    assert "pay-start" in client.get(f"/billing/invoices/{invoice.public_id}/pay/").content.decode()
    first = client.post(f"/billing/invoices/{invoice.public_id}/pay/").content.decode()
    second = client.post(f"/billing/invoices/{invoice.public_id}/pay/").content.decode()
    assert "data-client-secret" in first
    assert "js.stripe.com/v3/" in first
    assert invoice.payments.count() == 1
    secret = invoice.payments.get().client_secret
    assert secret in first
    assert secret in second


def test_paying_a_draft_is_refused_beside_the_button(billing_world, client_for):
    (draft,) = services.invoice_run(window=OCTOBER, at=AT)
    body = client_for(billing_world.buyer.owner).post(f"/billing/invoices/{draft.public_id}/pay/").content.decode()
    assert "alert" in body
    assert draft.payments.count() == 0


def test_provider_earnings_show_pending_balance_payouts_and_share_breakdown(billing_world, invoice, client_for):
    body = client_for(billing_world.partner.owner).get("/billing/earnings/").content.decode()
    assert "¥662.40" in body  # 30% of ¥2,400 less the 8% fee
    assert billing_world.lease.pool.name in body
    assert invoice.number_display in body


def test_staff_see_the_ledger_and_run_reconciliation(billing_world, invoice, client_for, make_org, stripe_server):
    platform = make_org("platform")
    client = client_for(platform.owner)
    ledger = client.get("/billing/ledger/").content.decode()
    assert "invoice_finalized" in ledger
    from billing.models import LedgerAccount

    account = LedgerAccount.objects.get(kind="buyer_receivable", organization=billing_world.buyer)
    assert "¥2,544.00" in client.get(f"/billing/ledger/?account={account.pk}").content.decode()
    assert client.post("/billing/reconciliation/").status_code == 302
    report = client.get("/billing/reconciliation/").content.decode()
    assert "ledger-check" in client.get("/billing/ledger/").content.decode()
    assert "difference-table" in report or "no-differences" in report
    # Other kinds are refused.
    assert client_for(billing_world.buyer.owner).get("/billing/ledger/").status_code == 403


def test_buyer_sets_invoicing_preferences(billing_world, client_for):
    client = client_for(billing_world.buyer.owner)
    response = client.post("/billing/preferences/", {"invoice_at_lease_end": "on", "invoice_language": "en"})
    assert response.status_code == 302
    profile = billing_world.buyer.billing
    assert profile.invoice_at_lease_end
    assert profile.invoice_language == "en"
    client.post("/billing/preferences/", {"invoice_language": "fr"})
    profile.refresh_from_db()
    assert profile.invoice_language == "en"  # refused, unchanged

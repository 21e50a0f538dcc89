"""Browser test of billing: a buyer opens a finalized invoice, pays it by card against the local Stripe, and the
provider's payout appears, split among the pool's revenue-share owners."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from billing import services
from tests.billing.conftest import OCTOBER, deliver, october_lease
from tests.e2e.conftest import E2E_DB, log_in

pytestmark = [pytest.mark.e2e, E2E_DB]


def test_buyer_pays_an_invoice_and_the_owners_payouts_appear(make_org, new_page, screenshot, stripe_server):
    from decimal import Decimal

    from marketplace.models import PoolShare
    from tests.marketplace.factories import ensure_reference_data
    from tests.vouchers import factories as voucher_factories

    ensure_reference_data()
    provider = make_org("provider", name="宁夏中卫云谷智算中心（测试）")
    partner = make_org("provider", name="中卫数据港（测试）")
    buyer = make_org("buyer", name="杭州精密制造（测试）")
    voucher_factories.profile(buyer, province="33", city="杭州市")
    lease = october_lease(provider, buyer)
    PoolShare.objects.filter(pool=lease.pool).update(share_pct=Decimal(70))
    PoolShare.objects.create(pool=lease.pool, organization=partner, share_pct=Decimal(30))
    deliver(lease)
    at = datetime(2026, 11, 2, 6, tzinfo=UTC)
    (draft,) = services.invoice_run(window=OCTOBER, at=at)
    invoice = services.invoice_finalize(invoice=draft, at=at)

    page = new_page()
    log_in(page, buyer.owner.email)
    page.get_by_test_id("nav-invoices").first.click()
    expect(page.get_by_test_id("invoice-row")).to_have_count(1)
    screenshot(page, "billing-invoices")
    page.get_by_role("link", name=invoice.number_display).click()
    expect(page.get_by_test_id("amount-due")).to_have_text("¥2,544.00")
    with page.expect_download() as download:
        page.get_by_test_id("pdf-zh").click()
    assert download.value.suggested_filename == f"{invoice.number_display}.pdf"
    screenshot(page, "billing-invoice-detail")
    page.get_by_test_id("pay-link").click()
    page.get_by_test_id("pay-start").click()
    inputs = page.locator("[data-stripe-card] input")
    expect(inputs.first).to_be_visible()
    for index, value in enumerate(["4242424242424242", "12", "30", "123", "12345"]):
        inputs.nth(index).fill(value)
    screenshot(page, "billing-pay")
    page.get_by_test_id("pay-submit").click()
    expect(page).to_have_url(re.compile(rf"/billing/invoices/{invoice.public_id}/$"), timeout=15_000)
    expect(page.locator("#messages")).to_contain_text("已收到付款")
    expect(page.get_by_test_id("payments")).to_contain_text("已付款")

    services.payouts_due()  # what the worker does after the outbox delivers the payout tasks
    provider_page = new_page()
    log_in(provider_page, partner.owner.email)
    provider_page.goto("/billing/earnings/")
    row = provider_page.get_by_test_id("payout-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("¥662.40")
    expect(row).to_contain_text("已转账")
    screenshot(provider_page, "billing-earnings")

"""Browser test of green statements: a demo-like buyer opens the month's statement, downloads the PDF, and anyone
opens its verify link (the PDF's QR code) without logging in."""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from green import services
from green.models import EmissionFactor, GenerationHour, Statement
from green.reference_data import load
from marketplace.models import Hub
from tests.e2e.conftest import E2E_DB, SCREENSHOT_DIR, log_in
from tests.green.factories import make_lot, make_usage_hour
from tests.marketplace.factories import ensure_reference_data, make_lease, make_site

pytestmark = [pytest.mark.e2e, E2E_DB]


def _inflated(body: bytes) -> bytes:
    parts = [body]
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", body, re.S):
        try:
            parts.append(zlib.decompress(match.group(1)))
        except zlib.error:
            continue
    return b"".join(parts)


def _world(make_org) -> tuple:
    load(EmissionFactor)  # the browser tests flush the data migration's rows
    provider = make_org("provider", name="宁夏中卫云谷智算中心（测试）")
    buyer = make_org("buyer", name="杭州智造精密机械有限公司（测试）")
    ensure_reference_data()
    site = make_site(provider, name="中卫云谷一号数据中心", pue=Decimal("1.15"), hub=Hub.objects.get(code="nx"))
    lease = make_lease(provider, buyer, accelerators=8)
    month = services.last_closed_month()
    first = datetime(month.year, month.month, 3, tzinfo=UTC)
    make_lot(site, count=2, production_month=services.add_months(month, -2), bundled_with_power=True)
    for i in range(48):
        hour = first + timedelta(hours=i)
        make_usage_hour(lease, hour, 5_600 if i % 24 < 20 else 2_000, accelerator_seconds=8 * 3600)
        GenerationHour.objects.create(
            organization=provider, site=site, hour_start=hour, energy_wh=4_000 + 200 * (i % 12)
        )
    services.allocation_month_run(month=month)
    return provider, buyer


def test_buyer_downloads_the_statement_pdf_and_anyone_verifies_it(make_org, new_page, screenshot):
    provider, buyer = _world(make_org)
    statement = Statement.objects.get(organization=buyer)

    page = new_page()
    log_in(page, buyer.owner.email)
    expect(page.get_by_test_id("green-widget")).to_contain_text("100.00%")
    screenshot(page, "green-buyer-dashboard")
    page.goto("/green/")
    expect(page.locator("#green-chart svg text").first).to_be_visible()  # axes drawn: the data parsed
    page.wait_for_timeout(1500)  # ECharts' entry animation
    screenshot(page, "green-buyer-overview")
    page.get_by_test_id("open-statement").first.click()
    expect(page.get_by_test_id("verification-code")).to_have_text(statement.verification_code)
    expect(page.get_by_test_id("statement-status")).to_have_attribute("data-status", "valid")
    expect(page.get_by_test_id("cfe")).to_contain_text("%")
    screenshot(page, "green-statement")

    with page.expect_download() as info:
        page.get_by_test_id("statement-pdf").click()
    download = info.value
    assert download.suggested_filename.endswith(".pdf")
    saved = SCREENSHOT_DIR / "green-statement.pdf"  # kept beside the screenshots for a look
    download.save_as(saved)
    body = saved.read_bytes()
    assert body.startswith(b"%PDF")
    verify_url = page.get_by_test_id("verify-link").get_attribute("href")
    assert verify_url is not None
    assert verify_url.encode() in _inflated(body)  # the QR code's link

    anonymous = new_page()  # no login
    anonymous.goto(verify_url)
    expect(anonymous.get_by_test_id("statement-status")).to_have_attribute("data-status", "valid")
    expect(anonymous.get_by_test_id("verification-code")).to_have_text(statement.verification_code)
    expect(anonymous.get_by_test_id("facility-kwh")).to_contain_text("kWh")
    screenshot(anonymous, "green-verify")
    assert (
        anonymous.goto(verify_url.replace(statement.verification_code, "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA")).status == 404
    )

    provider_page = new_page()
    log_in(provider_page, provider.owner.email)
    provider_page.goto("/provider/green/lots/")
    expect(provider_page.get_by_test_id("profile-table")).to_be_visible()
    screenshot(provider_page, "green-provider-lots")
    provider_page.goto("/green/hubs/")
    expect(provider_page.get_by_test_id("hub-shares")).to_contain_text("100.00%")
    screenshot(provider_page, "green-hubs")

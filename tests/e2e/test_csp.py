"""The portal's own pages respect its Content-Security-Policy (settings.CONTENT_SECURITY_POLICY: scripts and
styles from our origin only, no inline script, no eval), in a real browser.

Each kind of user (buyer, provider, voucher issuer, platform staff) logs in and opens every page of the rendered
navigation plus the pages with charts and forms, the Stripe pay page and the staff admin; every CSP violation
(the ``securitypolicyviolation`` event, reported by an init script, and Chromium's own "Refused to ..." console
messages) and every JavaScript error fails the test. Charts must still draw, their tooltips open, the progress
bars get their widths, and an htmx filter on the market must still swap its results.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from accounts import demo as accounts_demo
from billing import services as billing
from marketplace import demo as market_demo
from marketplace.models import AcceleratorModel, Cluster, Hub
from marketplace.reference_data import load
from tests.billing.conftest import OCTOBER, deliver, october_lease
from tests.e2e.conftest import E2E_DB, log_in
from tests.e2e.test_green import _world as green_world
from tests.vouchers import factories as voucher_factories

pytestmark = [pytest.mark.e2e, E2E_DB]

# Reported through the console so that page.on("console") sees violations of every page, including those
# that happen after a navigation started.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + JSON.stringify({
    directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample,
    source: e.sourceFile, line: e.lineNumber, column: e.columnNumber
  }));
});
"""
CSP_MESSAGE = re.compile(r"CSP violation|Content Security Policy|Refused to", re.I)
SKIP_LINK = re.compile(r"/(logout|pdf|export[^/]*)/?$|\.(pdf|csv|xlsx)$")


class Watcher:
    """Collects CSP violations and JavaScript errors of one page (one browser context)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        self.where = ""
        page.context.add_init_script(REPORT_VIOLATIONS)
        page.on("console", self._console)
        page.on("pageerror", self._error)

    def _error(self, error) -> None:
        self.problems.append(f"{self.where}: JavaScript error {error.stack}")

    def _console(self, message) -> None:
        if CSP_MESSAGE.search(message.text):
            self.problems.append(f"{self.where}: {message.text}")

    def visit(self, path: str) -> None:
        self.where = path
        response = self.page.goto(path)
        assert response is not None
        assert response.status < 400, f"{path} -> {response.status}"
        policy = response.header_value("content-security-policy") or ""
        assert "script-src 'self'" in policy, f"{path} has no strict CSP: {policy!r}"
        self.page.wait_for_load_state("networkidle")

    def hover_charts(self) -> int:
        """Moves the mouse over every chart (opening ECharts' tooltips) and returns how many drew."""
        charts = self.page.locator("[id$='-chart']")
        drawn = 0
        for index in range(charts.count()):
            chart = charts.nth(index)
            expect(chart.locator("svg, canvas").first).to_be_attached()
            drawn += 1
            chart.scroll_into_view_if_needed()
            box = chart.bounding_box()
            assert box is not None
            assert box["height"] >= 200, "the chart lost its height (class chart-NNN)"
            for fraction in (0.35, 0.55, 0.75):
                self.page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] * 0.6)
                self.page.wait_for_timeout(120)
        return drawn

    def assert_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def nav_links(page: Page) -> list[str]:
    hrefs = page.locator("nav a[href^='/']").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    paths: list[str] = []
    for href in hrefs:
        path = urlsplit(href).path
        if path not in paths and not SKIP_LINK.search(path) and not path.startswith("/admin/"):
            paths.append(path)
    return paths


def tour(watcher: Watcher, extra: list[str]) -> tuple[list[str], int]:
    """Every navigation page, then the extra ones; returns the pages seen and the charts drawn."""
    watcher.visit("/dashboard/")
    pages = nav_links(watcher.page)
    pages += [p for p in extra if p not in pages]
    charts = 0
    for path in pages:
        watcher.visit(path)
        charts += watcher.hover_charts()
    return pages, charts


@pytest.fixture
def world(make_org, monkeypatch):
    load(AcceleratorModel, Hub, Cluster)  # the browser tests flush the data migration's rows
    monkeypatch.setattr(market_demo, "OFFERS_PER_POOL", 3)
    monkeypatch.setattr(market_demo, "RESTING_FACTORS", ["0.7"])
    accounts_demo.seed()
    market_demo.seed()  # a market with open offers and bids: the order-book depth chart has data
    provider, buyer = green_world(make_org)  # a green statement: the buyer's green chart has data
    lease = october_lease(provider, buyer)
    deliver(lease)
    at = datetime(2026, 11, 2, 6, tzinfo=UTC)
    (draft,) = billing.invoice_run(window=OCTOBER, at=at)
    invoice = billing.invoice_finalize(invoice=draft, at=at)
    return {"buyer": buyer, "provider": provider, "lease": lease, "invoice": invoice}


def test_buyer_pages_respect_the_csp(world, new_page: Callable[..., Page], stripe_server, screenshot):
    buyer, lease, invoice = world["buyer"], world["lease"], world["invoice"]
    page = new_page()
    watcher = Watcher(page)
    log_in(page, buyer.owner.email)
    pages, charts = tour(
        watcher,
        [
            "/market/depth/",
            "/catalog/",
            f"/usage/leases/{lease.public_id}/",
            f"/billing/invoices/{invoice.public_id}/",
            "/market/bids/new/",
            "/market/tokens/bids/new/",
            "/green/hubs/",
        ],
    )
    assert {"/market/", "/billing/invoices/", "/green/"} <= set(pages)
    # order book, catalog, lease usage, spend by month and by provider, green share
    assert charts >= 6, f"only {charts} charts drew on {pages}"
    expect(page.locator(".progress-bar[data-width]").first).to_be_attached()
    width = page.locator(".progress-bar[data-width]").first.evaluate("el => el.style.width")
    assert width.endswith("%"), "portal.js did not set the progress bar's width"

    # htmx: one filter change on the market swaps the results in place.
    watcher.visit("/market/")
    table = page.get_by_test_id("market-table")
    expect(table).to_have_attribute("data-unit", "acc_hour")
    page.locator("#id_unit").select_option("scu_hour")
    expect(page.get_by_test_id("market-table")).to_have_attribute("data-unit", "scu_hour")
    expect(page).to_have_url(re.compile(r"unit=scu_hour"))

    # The pay page: Stripe.js from the local Stripe, allowed on this page only, pays the invoice.
    watcher.visit(f"/billing/invoices/{invoice.public_id}/pay/")
    page.get_by_test_id("pay-start").click()
    inputs = page.locator("[data-stripe-card] input")
    expect(inputs.first).to_be_visible()
    for index, value in enumerate(["4242424242424242", "12", "30", "123", "12345"]):
        inputs.nth(index).fill(value)
    page.get_by_test_id("pay-submit").click()
    expect(page).to_have_url(re.compile(rf"/billing/invoices/{invoice.public_id}/$"), timeout=15_000)
    watcher.assert_clean()


def test_provider_pages_respect_the_csp(world, new_page: Callable[..., Page]):
    page = new_page()
    watcher = Watcher(page)
    log_in(page, world["provider"].owner.email)
    pages, charts = tour(
        watcher,
        [
            "/market/depth/",
            f"/usage/leases/{world['lease'].public_id}/",
            "/provider/signing-keys/",
            "/supply/sites/new/",
            "/supply/pools/new/",
            "/market/tokens/endpoints/new/",
        ],
    )
    assert {"/provider/green/lots/", "/billing/earnings/"} <= set(pages)
    assert charts >= 3
    # A confirmation that was an inline onsubmit= handler is now portal.js's data-confirm.
    watcher.visit("/provider/green/lots/")
    forms = page.locator("form[data-confirm]")
    if forms.count():
        page.once("dialog", lambda dialog: dialog.dismiss())
        forms.first.locator("button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/provider/green/lots/$"))
    watcher.assert_clean()


@pytest.fixture
def console_world(make_org, make_user):
    """What the issuer console and the staff pages need: reference data, a programme, a staff user."""
    load(AcceleratorModel, Hub, Cluster)
    issuer = make_org("issuer", name="上海市经济和信息化委员会（测试）")
    return {
        "issuer": issuer,
        "program": voucher_factories.program(issuer),
        "staff": make_user(is_staff=True, is_superuser=True, full_name="平台运营"),
    }


def test_issuer_and_staff_pages_respect_the_csp(console_world, new_page: Callable[..., Page]):
    world = console_world
    page = new_page()
    watcher = Watcher(page)
    log_in(page, world["issuer"].owner.email)
    pages, charts = tour(watcher, [f"/issuer/programmes/{world['program'].public_id}/", "/issuer/flags/"])
    assert "/issuer/programmes/" in pages
    assert charts >= 2  # budget burn-down and subsidy by hub
    watcher.visit("/issuer/flags/")
    select = page.locator("select[data-autosubmit]")
    if select.count() and select.locator("option").count() > 1:
        select.select_option(index=1)  # was onchange="this.form.submit()"
        page.wait_for_load_state("networkidle")
    watcher.assert_clean()

    staff_page = new_page()
    staff = Watcher(staff_page)
    log_in(staff_page, world["staff"].email)
    pages, _charts = tour(staff, ["/admin/", "/admin/core/auditlog/", "/admin/billing/invoice/"])
    staff.assert_clean()

"""The market in a real browser: a buyer opens the market of the demo world, filters it (the table updates in
place and the URL follows), changes the price unit, places a bid from the form while the live panel shows the
matching offers, and sees it in "my bids"; the order book; a provider's offers. Screenshots at 1280 and 390 px."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from accounts import demo as accounts_demo
from accounts.demo import DEMO_PASSWORD
from marketplace import demo
from marketplace.models import AcceleratorModel, Bid, Cluster, Hub
from marketplace.reference_data import load
from tests.e2e.conftest import E2E_DB, log_in

pytestmark = [pytest.mark.e2e, E2E_DB]


@pytest.fixture(autouse=True)
def demo_market(transactional_db, monkeypatch):
    load(AcceleratorModel, Hub, Cluster)  # a transactional test starts from flushed tables
    monkeypatch.setattr(demo, "OFFERS_PER_POOL", 5)  # a smaller market is enough here (and quicker)
    monkeypatch.setattr(demo, "RESTING_FACTORS", ["0.7"])
    accounts_demo.seed()
    demo.seed()


def open_nav(page: Page) -> None:
    if page.locator(".navbar-toggler").is_visible():
        page.locator(".navbar-toggler").click()


def row_count(page: Page) -> int:
    return page.get_by_test_id("market-row").count()


def test_buyer_filters_the_market_changes_unit_and_bids(new_page, screenshot):
    page = new_page()
    log_in(page, "buyer@hz-precision.demo", DEMO_PASSWORD)
    open_nav(page)
    page.get_by_test_id("nav-market").click()
    expect(page).to_have_url(re.compile(r"/market/$"))
    table = page.get_by_test_id("market-table")
    expect(table).to_have_attribute("data-unit", "acc_hour")
    everything = page.get_by_test_id("market-count").inner_text()
    screenshot(page, "market")

    # The unit: the table is re-sorted in place by ¥/SCU-hour and the URL says so.
    page.locator("#id_unit").select_option("scu_hour")
    expect(table.or_(page.get_by_test_id("market-table"))).to_have_attribute("data-unit", "scu_hour")
    expect(page).to_have_url(re.compile(r"unit=scu_hour"))
    prices = [
        float(v)
        for v in page.get_by_test_id("market-row").evaluate_all("rows => rows.map(r => r.dataset.unitPrice)")
        if v
    ]
    assert prices == sorted(prices)

    # Inference near Zhejiang: only the sites within the tier remain.
    page.locator("#id_workload").select_option("inference")
    page.locator("#id_tier").select_option("region")
    expect(page).to_have_url(re.compile(r"tier=region"))
    expect(page.get_by_test_id("market-count")).not_to_have_text(everything)
    page.locator(".market-filters summary").click()
    page.locator("#id_verified").check()
    expect(page).to_have_url(re.compile(r"verified=on"))
    screenshot(page, "market-filtered")
    page.reload()  # the URL carries the filters
    expect(page.locator("#id_tier")).to_have_value("region")
    expect(page.get_by_test_id("market-table").or_(page.get_by_test_id("market-empty"))).to_be_visible()

    # The order book of one model.
    page.get_by_test_id("depth-link").click()
    expect(page.locator("#depth-chart svg")).to_be_visible()  # the busiest model has asks and bids
    screenshot(page, "market-depth")

    # A bid: the live panel converts the limit and lists the offers it would match.
    page.goto("/market/")
    page.get_by_test_id("place-bid").click()
    expect(page).to_have_url(re.compile(r"/market/bids/new/$"))
    page.locator("#id_accelerators").fill("2")
    page.locator("#id_hours").fill("8")
    page.locator("#id_price_unit").select_option("scu_hour")
    page.locator("#id_limit_price").fill("60")
    expect(page.get_by_test_id("price-conversions")).to_be_visible()
    expect(page.get_by_test_id("match-count")).to_be_visible()
    page.locator("#id_accelerators").fill("0")
    expect(page.locator("#fb-accelerators [data-live-error]")).to_be_visible()  # beside the field, as one types
    page.locator("#id_accelerators").fill("2")
    expect(page.locator("#fb-accelerators [data-live-error]")).to_have_count(0)
    screenshot(page, "bid-form")
    page.get_by_test_id("submit-bid").click()
    expect(page).to_have_url(re.compile(r"/market/bids/$"))
    expect(page.get_by_test_id("bid-row").first).to_be_visible()
    assert Bid.objects.filter(organization__name="杭州智造精密机械有限公司", limit_price=60).exists()
    screenshot(page, "my-bids")


def test_unsatisfiable_bid_is_refused_with_a_clear_message(new_page):
    page = new_page()
    log_in(page, "buyer@sz-vision.demo", DEMO_PASSWORD)
    page.goto("/market/bids/new/")
    page.locator("#id_limit_price").fill("10")
    page.locator("#id_min_green_share_pct").fill("99")
    page.get_by_test_id("submit-bid").click()
    expect(page.get_by_test_id("bid-form-error")).to_be_visible()


def test_provider_sees_and_withdraws_offers(new_page, screenshot):
    page = new_page()
    log_in(page, "ops@ningxia-idc.demo", DEMO_PASSWORD)
    open_nav(page)
    page.get_by_test_id("nav-group-trade").click()
    page.get_by_test_id("nav-offers").click()
    expect(page).to_have_url(re.compile(r"/market/offers/$"))
    rows = page.get_by_test_id("offer-row")
    expect(rows.first).to_be_visible()
    screenshot(page, "my-offers")
    open_rows = page.locator("[data-testid=offer-row][data-status=open]")
    before = open_rows.count()
    open_rows.first.get_by_test_id("cancel-offer").click()
    expect(page.locator("[data-testid=offer-row][data-status=open]")).to_have_count(before - 1)

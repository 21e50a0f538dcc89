"""Browser test of the token market: a provider opens an endpoint (a bad price is flagged on its field), a buyer
bids for a monthly volume and sees the contract, the provider confirms it and sees committed / capacity."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import E2E_DB, log_in
from tests.marketplace.factories import make_listed_pool
from tests.marketplace.token_factories import served_model

pytestmark = [pytest.mark.e2e, E2E_DB]


def test_endpoint_bid_contract_confirm(make_org, new_page, screenshot):
    qwen = served_model("Qwen3-32B")
    provider = make_org("provider", name="贵州贵安算力科技（测试）")
    buyer = make_org("buyer", name="杭州智造精密机械（测试）")
    pool = make_listed_pool(provider, name="H20 推理池")

    seller = new_page()
    log_in(seller, provider.owner.email)
    if seller.locator(".navbar-toggler").is_visible():
        seller.locator(".navbar-toggler").click()
    seller.get_by_test_id("nav-group-trade").click()
    seller.get_by_test_id("nav-tokens").click()
    expect(seller).to_have_url(re.compile(r"/market/tokens/endpoints/$"))
    screenshot(seller, "tokens-endpoints-empty")
    seller.get_by_test_id("new-endpoint").click()
    seller.locator("#id_served_model").select_option(str(qwen.public_id))
    seller.locator("#id_pool").select_option(str(pool.public_id))
    seller.locator("#id_price_input").fill("0")
    seller.locator("#id_price_output").fill("8")
    seller.locator("#id_throughput_tokens_per_s").fill("1000")
    seller.get_by_test_id("save-endpoint").click()
    expect(seller.locator('[data-field-error="price_input"]')).to_be_visible()
    screenshot(seller, "tokens-endpoint-form-error")
    seller.locator("#id_price_input").fill("2")
    seller.get_by_test_id("save-endpoint").click()
    expect(seller.get_by_test_id("endpoint-row")).to_have_count(1)

    purchaser = new_page()
    log_in(purchaser, buyer.owner.email)
    purchaser.goto("/market/tokens/bids/new/")
    purchaser.locator("#id_served_model").select_option(str(qwen.public_id))
    purchaser.locator("#id_monthly_tokens").fill("500")
    purchaser.locator("#id_limit_input").fill("3")
    purchaser.locator("#id_limit_output").fill("10")
    purchaser.locator("#id_start_month").select_option(index=1)
    # The live panel shows the endpoint the bid would take and its blended price: (3 x 2 + 8) / 4 = 3.5.
    expect(purchaser.get_by_test_id("token-match")).to_contain_text("3.500")
    purchaser.locator("#id_limit_input").fill("1")
    expect(purchaser.get_by_test_id("token-no-match")).to_be_visible()
    purchaser.locator("#id_limit_input").fill("3")
    expect(purchaser.get_by_test_id("token-match")).to_be_visible()
    screenshot(purchaser, "tokens-bid-form")
    purchaser.get_by_test_id("place-token-bid").click()
    expect(purchaser).to_have_url(re.compile(r"/market/tokens/contracts/$"))
    row = purchaser.get_by_test_id("token-contract-row")
    expect(row).to_have_attribute("data-status", "pending")
    screenshot(purchaser, "tokens-contracts-buyer")

    seller.goto("/market/tokens/contracts/")
    seller.get_by_role("button", name=re.compile("确认|Confirm")).click()
    expect(seller.get_by_test_id("token-contract-row")).to_have_attribute("data-status", "active")
    screenshot(seller, "tokens-contracts-provider")
    seller.goto("/market/tokens/endpoints/")
    expect(seller.get_by_test_id("endpoint-committed")).to_have_text("500 / 2,592")
    screenshot(seller, "tokens-endpoints")
    purchaser.goto("/market/tokens/bids/")
    expect(purchaser.get_by_test_id("token-bid-row")).to_have_attribute("data-status", "filled")
    screenshot(purchaser, "tokens-bids")

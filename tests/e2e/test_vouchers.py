"""Browser test of the voucher flow: a buyer applies with an attachment, the bureau reviews the automatic checks
and approves, the buyer sees the grant."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import E2E_DB, log_in
from tests.vouchers import factories

pytestmark = [pytest.mark.e2e, E2E_DB]


def test_apply_review_approve(make_org, new_page, screenshot, tmp_path):
    issuer = make_org("issuer", name="北京市经济和信息化局（测试）")
    buyer = make_org("buyer", name="北京灵巧机器人（测试）")
    factories.profile(buyer, province="11", city="北京市", industry="industry", size_class="small")
    program = factories.program(issuer, name="北京市人工智能算力券（测试）")

    # The buyer finds the programme, eligible, and applies with a contract attached.
    buyer_page = new_page()
    log_in(buyer_page, buyer.owner.email)
    buyer_page.goto("/vouchers/")
    card = buyer_page.get_by_test_id("program-card").filter(has_text=program.name)
    expect(card).to_have_attribute("data-eligible", "yes")
    screenshot(buyer_page, "vouchers-buyer-programmes")
    buyer_page.goto(f"/vouchers/apply/?program={program.public_id}")
    form = buyer_page.get_by_test_id("apply-form")
    form.locator("#id_requested_amount").fill("0")  # below the minimum: refused beside the field
    form.locator("#id_purpose").fill("工业质检大模型微调")
    contract = tmp_path / "算力租用合同.pdf"
    contract.write_bytes(b"%PDF-1.4\n% test contract\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    form.locator("input[type=file]").set_input_files(str(contract))
    form.locator("button[type=submit]").click()
    expect(buyer_page.locator('[data-field-error="requested_amount"]')).to_be_visible()
    form = buyer_page.get_by_test_id("apply-form")
    form.locator("#id_requested_amount").fill("50000")
    form.locator("input[type=file]").set_input_files(str(contract))
    form.locator("button[type=submit]").click()
    expect(buyer_page.locator("#messages")).to_contain_text("申请已提交")

    # The bureau sees it in its queue, with the automatic checks, and approves.
    issuer_page = new_page()
    log_in(issuer_page, issuer.owner.email)
    issuer_page.goto("/issuer/applications/")
    table = issuer_page.get_by_test_id("applications-table")
    expect(table).to_contain_text(buyer.name)
    table.get_by_role("link").filter(has_text=re.compile("审核|" + re.escape(buyer.name))).first.click()
    expect(issuer_page.get_by_test_id("checks")).to_be_visible()
    screenshot(issuer_page, "vouchers-issuer-review")
    approve = issuer_page.get_by_test_id("approve-form")
    approve.locator("input[name$=amount]").fill("40000")
    approve.locator("input[type=date]").fill("2027-06-30")
    approve.locator("button[type=submit]").click()
    expect(issuer_page.locator("#messages")).to_contain_text("已批准")

    # The buyer now has a grant of ¥40,000.
    buyer_page.goto("/vouchers/")
    grant = buyer_page.get_by_test_id("grant-card")
    expect(grant).to_contain_text("40,000")
    screenshot(buyer_page, "vouchers-buyer-granted")

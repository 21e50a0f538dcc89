"""The portal shell in a real browser: sign-up, log-in, language, API keys, members, company profile.

Every page under test is saved at desktop and phone widths under test-output/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User
from tests.e2e.conftest import E2E_DB, PASSWORD, PHONE, SCREENSHOT_DIR, fill_signup

pytestmark = [pytest.mark.e2e, E2E_DB]

VALID_USCC = "91110000600037341L"
INVALID_USCC = "91110000600037341X"  # the check digit is wrong


def open_user_menu(page: Page) -> None:
    if page.locator(".navbar-toggler").is_visible():
        page.locator(".navbar-toggler").click()
    page.get_by_test_id("user-menu").click()


def test_signup_as_buyer_then_log_out_and_in_again(page: Page, signup, screenshot):
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    screenshot(page, "home")

    page.goto("/accounts/signup/")
    screenshot(page, "signup")
    account = signup(page)

    # Chinese by default: the navigation, the kind and the welcome message.
    expect(page.get_by_role("heading", level=1)).to_have_text(account.organization_name)
    expect(page.locator(".navbar")).to_contain_text("工作台")
    expect(page.locator("#messages")).to_contain_text("欢迎使用算力")
    expect(page.get_by_test_id("org-kind")).to_have_text("算力需求方")
    screenshot(page, "dashboard-buyer")

    open_user_menu(page)
    page.get_by_test_id("logout").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.locator(".navbar")).not_to_contain_text("工作台")

    page.locator("#id_username").fill(account.email)
    page.locator("#id_password").fill("not-the-password")
    page.get_by_test_id("login-submit").click()
    expect(page.locator(".form-errors-top")).to_be_visible()
    screenshot(page, "login-error")

    page.locator("#id_password").fill(account.password)
    page.get_by_test_id("login-submit").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(account.organization_name)


def test_signup_errors_are_shown_beside_the_fields(page: Page, screenshot):
    User.objects.create_user(email="taken@jinggong.example.cn", password=PASSWORD, full_name="李雷")

    page.goto("/accounts/signup/")
    fill_signup(page, email="taken@jinggong.example.cn", password="short")
    page.get_by_test_id("signup-submit").click()

    email_error = page.locator('#field-email [data-field-error="email"]')
    password_error = page.locator('#field-password [data-field-error="password"]')
    expect(email_error).to_contain_text("该邮箱已注册")
    expect(password_error).to_contain_text("密码太短")
    expect(page.locator("#id_email")).to_have_class(re.compile(r"\bis-invalid\b"))
    expect(page.locator("#id_password")).to_have_class(re.compile(r"\bis-invalid\b"))
    # What the user typed is kept, except the password.
    expect(page.locator("#id_organization_name")).to_have_value("苏州精工机械有限公司")
    expect(page.locator("#id_password")).to_have_value("")
    screenshot(page, "signup-errors")


def test_language_switch_to_english_and_back(page: Page, signup, screenshot):
    signup(page)
    nav = page.locator(".navbar")
    expect(nav).to_contain_text("工作台")

    page.get_by_test_id("lang-switch").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(nav).to_contain_text("Dashboard")
    expect(nav).not_to_contain_text("工作台")
    expect(page.get_by_test_id("org-kind")).to_have_text("Buyer")
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    screenshot(page, "dashboard-buyer-en")

    # The choice sticks across pages.
    page.goto("/settings/members/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Members")
    expect(page.get_by_test_id("members-table")).to_contain_text("Owner")
    screenshot(page, "members-en")

    page.get_by_test_id("lang-switch").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.get_by_role("heading", level=1)).to_have_text("成员")
    expect(nav).to_contain_text("工作台")


def test_create_an_api_key_shows_it_once(page: Page, signup, screenshot):
    signup(page, kind="provider", organization_name="贵安算力数据中心有限公司")
    page.goto("/settings/api-keys/")
    expect(page.locator(".empty-state")).to_be_visible()
    screenshot(page, "api-keys-empty")

    page.locator("#id_name").fill("12 号机柜计量代理")
    page.locator('input[name="scopes"][value="metering:write"]').check()
    page.get_by_test_id("create-api-key").click()

    raw_key = page.locator("#raw-key").inner_text().strip()
    prefix, _, secret = raw_key.partition(".")
    assert prefix
    assert len(secret) >= 20
    table = page.get_by_test_id("api-keys-table")
    expect(table).to_contain_text("12 号机柜计量代理")
    expect(table).to_contain_text(prefix)
    expect(table).not_to_contain_text(secret)
    screenshot(page, "api-key-created")

    page.reload()
    expect(page.get_by_test_id("new-api-key")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text(secret)
    expect(table).to_contain_text(prefix)
    expect(table.locator("tbody tr")).to_have_count(1)  # a reload does not create a second key


def test_invite_a_member(page: Page, signup, screenshot, mailoutbox, new_page):
    account = signup(page)
    page.goto("/settings/members/")
    expect(page.get_by_test_id("members-table")).to_contain_text(account.email)
    expect(page.get_by_test_id("invitations-empty")).to_be_visible()

    page.locator("#id_email").fill("zhang.wei@jinggong.example.cn")
    page.locator("#id_role").select_option("admin")
    page.get_by_test_id("send-invitation").click()

    expect(page.locator("#messages")).to_contain_text("zhang.wei@jinggong.example.cn")
    invitations = page.get_by_test_id("invitations-table")
    expect(invitations).to_contain_text("zhang.wei@jinggong.example.cn")
    expect(invitations).to_contain_text("管理员")
    screenshot(page, "members-invited")

    # Inviting the same address again is refused beside the field.
    page.locator("#id_email").fill("zhang.wei@jinggong.example.cn")
    page.get_by_test_id("send-invitation").click()
    expect(page.locator('[data-field-error="email"]')).to_be_visible()

    # The invitee gets an email with a link that opens the invitation.
    assert len(mailoutbox) == 1
    link = re.search(r"https?://\S+(/invitations/\S+/)", mailoutbox[0].body)
    assert link is not None
    invitee = new_page()
    invitee.goto(link.group(1))
    expect(invitee.get_by_role("heading", level=1)).to_contain_text(account.organization_name)
    screenshot(invitee, "invitation-accept")

    # They sign up from the invitation: the address is the invited one and no organisation of their own is made.
    invitee.get_by_test_id("invited-signup").click()
    expect(invitee.locator("main")).to_contain_text("zhang.wei@jinggong.example.cn")
    invitee.locator("#id_full_name").fill("张伟")
    invitee.locator("#id_password").fill(PASSWORD)
    screenshot(invitee, "invitation-signup")
    invitee.get_by_test_id("invited-signup-submit").click()
    expect(invitee).to_have_url(re.compile(r"/dashboard/$"))
    expect(invitee.get_by_role("heading", level=1)).to_have_text(account.organization_name)
    expect(invitee.get_by_test_id("org-switcher")).to_have_count(0)  # one organisation only

    page.reload()
    expect(page.get_by_test_id("members-table")).to_contain_text("zhang.wei@jinggong.example.cn")
    expect(page.get_by_test_id("invitations-empty")).to_be_visible()

    # Someone who already has an organisation accepts while logged in, then switches between the two.
    other_page = new_page()
    other = signup(other_page, organization_name="张伟的工作室")
    page.locator("#id_email").fill(other.email)
    page.get_by_test_id("send-invitation").click()
    expect(page.get_by_test_id("invitations-table")).to_contain_text(other.email)
    second_link = re.search(r"https?://\S+(/invitations/\S+/)", mailoutbox[-1].body)
    assert second_link is not None
    other_page.goto(second_link.group(1))
    other_page.get_by_test_id("accept-invitation").click()
    expect(other_page).to_have_url(re.compile(r"/dashboard/$"))
    expect(other_page.get_by_role("heading", level=1)).to_have_text(account.organization_name)
    switcher = other_page.get_by_test_id("org-switcher")
    switcher.get_by_role("button").first.click()
    expect(switcher.locator(".dropdown-menu")).to_be_visible()
    other_page.screenshot(path=str(SCREENSHOT_DIR / "org-switcher-desktop.png"))
    switcher.get_by_role("button", name=re.compile("张伟的工作室")).click()
    expect(other_page.get_by_role("heading", level=1)).to_have_text("张伟的工作室")


def test_company_profile_checks_the_uscc_as_you_type(page: Page, signup, screenshot):
    signup(page)
    page.goto("/settings/company/")
    uscc = page.locator("#id_uscc")
    feedback = page.locator("#uscc-feedback")

    uscc.press_sequentially(INVALID_USCC)
    expect(feedback.locator('[data-field-error="uscc"]')).to_contain_text("统一社会信用代码")
    expect(uscc).to_have_class(re.compile(r"\bis-invalid\b"))
    screenshot(page, "company-profile-invalid-uscc")

    uscc.fill("")
    uscc.press_sequentially(VALID_USCC)
    expect(feedback.locator(".valid-feedback")).to_be_visible()
    expect(uscc).not_to_have_class(re.compile(r"\bis-invalid\b"))

    page.locator("#id_legal_name").fill("苏州精工机械有限公司")
    page.locator("#id_registered_province").select_option("32")
    page.locator("#id_registered_city").fill("苏州市")
    page.locator("#id_industry").select_option("industry")
    page.locator("#id_employees").fill("150")
    page.locator("#id_annual_revenue_wan").fill("3000")
    page.locator("#id_legal_representative").fill("王小明")
    page.locator("#id_shareholders").fill(f"王小明, , 60\n苏州工业投资有限公司, {VALID_USCC}, 40")
    page.get_by_test_id("save-company-profile").click()

    expect(page.locator("#messages")).to_contain_text("企业信息已保存")
    expect(page.get_by_test_id("size-class")).to_contain_text("小型")
    expect(page.locator("#id_uscc")).to_have_value(VALID_USCC)
    screenshot(page, "company-profile-saved")

    page.goto("/dashboard/")
    expect(page.get_by_test_id("complete-profile")).to_have_count(0)


def test_navigation_fits_the_organisation_kind_and_phones(page: Page, signup, screenshot):
    # A voucher issuer starts pending verification; its dashboard says so.
    signup(page, kind="issuer", organization_name="苏州市工业和信息化局")
    expect(page.get_by_test_id("org-kind")).to_have_text("算力券发放机构")
    expect(page.get_by_test_id("org-status")).to_have_text("待审核")
    expect(page.get_by_test_id("empty-activity")).to_be_visible()
    screenshot(page, "dashboard-issuer-pending")

    page.goto("/settings/organization/")
    expect(page.get_by_role("heading", level=1)).to_have_text("组织")
    screenshot(page, "settings-organization")

    # On a phone the menu folds behind the toggler; the settings are one tap away.
    page.set_viewport_size(PHONE)
    page.goto("/dashboard/")
    expect(page.locator("#mainNav")).not_to_be_visible()
    expect(page.get_by_test_id("lang-switch")).to_be_visible()
    page.locator(".navbar-toggler").click()
    expect(page.locator("#mainNav")).to_be_visible()
    page.locator("#mainNav").get_by_role("button", name="设置").click()
    members_link = page.locator("#mainNav").get_by_role("link", name="成员")
    expect(members_link).to_be_visible()
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "nav-open-phone.png"))
    members_link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("成员")
    active = page.locator(".settings-nav .nav-link.active")
    expect(active).to_have_text("成员")
    expect(active).to_be_in_viewport()


def test_provider_dashboard_and_password_reset_pages(page: Page, signup, screenshot, mailoutbox):
    account = signup(page, kind="provider", organization_name="宁夏中卫云计算数据中心有限公司")
    expect(page.get_by_test_id("org-kind")).to_have_text("算力供给方")
    expect(page.locator("main")).to_contain_text("登记数据中心")
    screenshot(page, "dashboard-provider")

    open_user_menu(page)
    page.get_by_test_id("logout").click()
    page.goto("/accounts/password-reset/")
    screenshot(page, "password-reset")
    page.locator("#id_email").fill(account.email)
    page.locator("main form button[type=submit]").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("请查收邮件")
    assert len(mailoutbox) == 1
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mailoutbox[0].body)
    assert link is not None
    page.goto(link.group(1))
    expect(page.get_by_role("heading", level=1)).to_have_text("设置新密码")
    screenshot(page, "password-reset-confirm")


@pytest.mark.parametrize("kind", ["buyer", "provider"])
def test_desktop_navigation_never_scrolls_sideways_in_either_language(page: Page, signup, kind):
    """The longest menus (a buyer's, a provider's) with a long organisation name fit every desktop width."""
    signup(page, kind=kind, organization_name="杭州智造精密机械制造股份有限公司")
    for language in ("zh-hans", "en"):
        if page.get_by_test_id("lang-switch").get_attribute("value") == language:
            page.get_by_test_id("lang-switch").click()
        expect(page.locator("html")).to_have_attribute("lang", language)
        for width in (1200, 1280, 1399, 1400, 1600, 1920):
            page.set_viewport_size({"width": width, "height": 800})
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{language} at {width} px scrolls sideways by {overflow} px"
            expect(page.get_by_test_id("lang-switch")).to_be_in_viewport()

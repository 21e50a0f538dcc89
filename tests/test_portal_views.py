"""Portal views without a browser: redirects, the once-only API key, the live USCC check, read-only pages."""

from __future__ import annotations

import pytest

from accounts.models import Membership, OrganizationAPIKey, Role
from accounts.views import NEW_API_KEY_SESSION_KEY

pytestmark = pytest.mark.django_db

SIGNUP = {
    "full_name": "王小明",
    "email": "wang@jinggong.example.cn",
    "password": "Gpu-hours-2025!",
    "organization_name": "苏州精工机械有限公司",
    "organization_kind": "buyer",
}


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/settings/members/", "/settings/members/"),
        ("//evil.example/", "/dashboard/"),
        ("/\\evil.example/", "/dashboard/"),
        ("https://evil.example/", "/dashboard/"),
        ("", "/dashboard/"),
    ],
)
def test_signup_follows_only_local_next_urls(client, next_url, expected):
    response = client.post(f"/accounts/signup/?next={next_url}", SIGNUP)
    assert response.status_code == 302
    assert response["Location"] == expected


def test_signup_errors_come_back_in_chinese_beside_the_fields(client, make_user):
    make_user(email=SIGNUP["email"])
    response = client.post("/accounts/signup/", {**SIGNUP, "password": "short"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-field-error="email"' in html
    assert "该邮箱已注册" in html
    assert 'data-field-error="password"' in html
    assert "密码太短" in html


def test_a_new_api_key_is_shown_once_after_a_redirect(make_org, client_for):
    org = make_org("provider")
    client = client_for(org.owner)
    response = client.post("/settings/api-keys/", {"name": "agent", "scopes": ["metering:write"]})
    assert response.status_code == 302
    assert response["Location"] == "/settings/api-keys/"
    key = OrganizationAPIKey.objects.get(organization=org)

    first = client.get("/settings/api-keys/").content.decode()
    assert 'data-testid="new-api-key"' in first
    assert f'id="raw-key">{key.prefix}.' in first
    assert NEW_API_KEY_SESSION_KEY not in client.session

    second = client.get("/settings/api-keys/").content.decode()
    assert 'data-testid="new-api-key"' not in second
    assert key.prefix in second
    assert OrganizationAPIKey.objects.filter(organization=org).count() == 1


def test_a_new_api_key_is_not_shown_in_another_organisation(make_org, client_for):
    org = make_org("provider")
    client = client_for(org.owner)
    session = client.session
    session[NEW_API_KEY_SESSION_KEY] = {"organization": "00000000-0000-0000-0000-000000000000", "key": "x.secret"}
    session.save()
    assert "x.secret" not in client.get("/settings/api-keys/").content.decode()


@pytest.mark.parametrize(
    ("value", "state", "text"),
    [
        ("", "", ""),
        ("9111000060", "typing", "已输入 10/18 位"),
        ("91110000600037341X", "invalid", "统一社会信用代码无效"),
        ("91110000600037341L", "valid", "代码有效"),
        ("91110000600037341l", "valid", "代码有效"),
    ],
)
def test_uscc_check_answers_htmx_with_a_state(make_org, client_for, value, state, text):
    org = make_org("buyer")
    response = client_for(org.owner).get("/settings/company/uscc-check/", {"uscc": value}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.strip().startswith('<div id="uscc-feedback"')
    assert f'data-state="{state}"' in html
    assert text in html
    assert "<html" not in html


def test_company_profile_form_has_the_live_check_and_blank_choices(make_org, client_for):
    org = make_org("buyer")
    html = client_for(org.owner).get("/settings/company/").content.decode()
    assert 'hx-get="/settings/company/uscc-check/"' in html
    assert 'id="uscc-feedback"' in html
    assert '<option value="" selected>请选择…</option>' in html


def test_viewers_see_settings_read_only(make_org, make_user, client_for):
    org = make_org("buyer")
    viewer = make_user()
    Membership.objects.create(user=viewer, organization=org, role=Role.VIEWER)
    client = client_for(viewer)
    organization_page = client.get("/settings/organization/").content.decode()
    assert 'data-testid="save-organization"' not in organization_page
    assert "仅所有者和管理员可以修改这些设置" in organization_page
    company_page = client.get("/settings/company/").content.decode()
    assert 'data-testid="save-company-profile"' not in company_page
    members_page = client.get("/settings/members/").content.decode()
    assert 'data-testid="send-invitation"' not in members_page
    api_keys_page = client.get("/settings/api-keys/").content.decode()
    assert 'data-testid="create-api-key"' not in api_keys_page


@pytest.mark.parametrize("kind", ["buyer", "provider", "issuer", "platform"])
def test_dashboards_speak_chinese_by_default_and_english_on_request(make_org, client_for, kind):
    org = make_org(kind)
    client = client_for(org.owner)
    chinese = client.get("/dashboard/").content.decode()
    assert '<html lang="zh-hans">' in chinese
    assert "工作台" in chinese
    english = client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="en">' in english
    assert "Dashboard" in english

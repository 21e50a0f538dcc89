"""CSRF is enforced on every unsafe, cookie-authenticated request, HTMX included.

Django's test client skips CSRF checks unless ``Client(enforce_csrf_checks=True)``: every client here enforces
them. The routes come from the URL conf (the tenancy matrix's walk), so a new portal URL is covered without
editing this file. The CSRF failure view is replaced by one that marks its 403, so a refusal by CSRF is told
apart from a refusal by permissions: "no token" must be a CSRF refusal, "with the token" must never be one.

API views (``/api/v1/``) authenticate with API keys only: a session cookie authenticates nothing there, so an
unsafe request carrying only the cookie is refused (401/403) whether or not it has a token; an API-key request
needs no CSRF token (DRF applies CSRF only to SessionAuthentication, which the API does not use).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CSRF_ALLOWED_CHARS
from django.test import Client, override_settings
from django.utils.crypto import get_random_string

from tests.tenancy import OBJECT_FACTORIES
from tests.test_tenancy_matrix import ROUTES, Route

pytestmark = pytest.mark.django_db

CSRF_MARK = "X-Test-Csrf-Refused"
UNSAFE = ["post", "put", "patch", "delete"]
# Views that take unsafe requests without a CSRF token, each for a reason. Nothing else may be exempt.
CSRF_EXEMPT_ALLOWED = {
    "billing:stripe-webhook": "Stripe's server posts it, no cookie; the Stripe-Signature HMAC authenticates it",
}

PORTAL_ROUTES = [r for r in ROUTES if not r.is_api and not r.pattern.startswith("api/")]
API_ROUTES = [r for r in ROUTES if r.is_api]


def csrf_refused(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Stands in for Django's CSRF failure view: the same 403, marked."""
    return HttpResponse(status=403, headers={CSRF_MARK: reason or "refused"})


CSRF_FAILURE = override_settings(CSRF_FAILURE_VIEW="tests.core.test_csrf.csrf_refused")


def _secret() -> str:
    return get_random_string(32, allowed_chars=CSRF_ALLOWED_CHARS)


def _client(user: Any, token: str | None = None) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    if token:
        client.cookies[settings.CSRF_COOKIE_NAME] = token
    return client


def _values(route: Route, make_org) -> tuple[Any, dict[str, str]]:
    """Objects for the URL's kwargs, owned by one organisation; public URLs' tokens and codes are made up."""
    owner = None
    values: dict[str, str] = {}
    for kwarg in route.kwargs:
        if kwarg not in OBJECT_FACTORIES:
            values[kwarg] = str(uuid.uuid4()) if f"uuid:{kwarg}" in route.pattern else "x"
            continue
        organization, value = OBJECT_FACTORIES[kwarg](make_org)
        owner = owner or organization
        values[kwarg] = value
    return owner, values


def _is_csrf_exempt(route: Route) -> bool:
    return bool(getattr(route.view, "csrf_exempt", False))


def test_only_the_listed_portal_views_are_csrf_exempt():
    exempt = {r.name for r in PORTAL_ROUTES if _is_csrf_exempt(r)}
    assert exempt == set(CSRF_EXEMPT_ALLOWED), f"csrf_exempt portal views: {sorted(exempt)}"
    assert len(PORTAL_ROUTES) > 50, "the URL walk found too few portal routes"


@CSRF_FAILURE
@pytest.mark.parametrize("route", [r for r in PORTAL_ROUTES if not _is_csrf_exempt(r)], ids=lambda r: r.name)
def test_unsafe_portal_requests_need_the_token(route, make_org):
    """For every portal URL: a logged-in unsafe request without a token is refused by CSRF; the same request
    with the cookie and the token (form field, or the X-CSRFToken header that htmx sends) passes the check."""
    owner, values = _values(route, make_org)
    url = route.url(values)
    # CSRF is checked before the view, whoever asks; the objects' owner (else a buyer) is logged in.
    for user in [owner.owner if owner is not None else make_org("buyer").owner]:
        for method in UNSAFE:
            bare = getattr(_client(user), method)(url)
            assert bare.status_code == 403, f"{method.upper()} {route.name} without a token -> {bare.status_code}"
            assert bare.has_header(CSRF_MARK), f"{method.upper()} {route.name} was not refused by CSRF"
            htmx_bare = getattr(_client(user), method)(url, headers={"HX-Request": "true"})
            assert htmx_bare.has_header(CSRF_MARK), f"HTMX {method.upper()} {route.name} without a token passed"

            secret = _secret()
            if method == "post":
                with_form = _client(user, secret).post(url, {"csrfmiddlewaretoken": secret})
                assert not with_form.has_header(CSRF_MARK), f"POST {route.name} with the form token refused"
            with_header = getattr(_client(user, secret), method)(
                url, headers={"HX-Request": "true", "X-CSRFToken": secret}
            )
            assert not with_header.has_header(CSRF_MARK), f"HTMX {method.upper()} {route.name} with the token refused"


@CSRF_FAILURE
def test_a_wrong_token_is_refused(make_org):
    user = make_org("buyer").owner
    response = _client(user, _secret()).post(
        "/settings/organization/", headers={"HX-Request": "true", "X-CSRFToken": _secret()}
    )
    assert response.has_header(CSRF_MARK)


@CSRF_FAILURE
def test_htmx_sends_the_token_the_page_carries(make_org):
    """The base template gives htmx the token twice (``<body hx-headers>`` and ``<meta name="csrf-token">``, which
    portal.js copies into every htmx request): both are accepted with the cookie the page set."""
    user = make_org("buyer").owner
    client = _client(user)
    page = client.get("/settings/organization/")
    assert page.status_code == 200
    html = page.content.decode()
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    body = re.search(r"hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'", html)
    assert meta, "the base template lost <meta name=csrf-token>"
    assert body, "the base template lost <body hx-headers> with the CSRF token"
    assert settings.CSRF_COOKIE_NAME in client.cookies
    for token in (meta.group(1), body.group(1)):
        response = client.post("/settings/organization/", headers={"HX-Request": "true", "X-CSRFToken": token})
        assert not response.has_header(CSRF_MARK)
        assert response.status_code != 403


def _api_values(route: Route, make_org) -> tuple[Any, str]:
    owner, values = _values(route, make_org)
    return owner, route.url(values)


@CSRF_FAILURE
@pytest.mark.parametrize("route", API_ROUTES, ids=lambda r: r.name)
def test_api_refuses_session_cookies_and_needs_no_token_with_a_key(route, make_org, api_client_for):
    owner, url = _api_values(route, make_org)
    owner = owner or make_org("provider")
    for method in UNSAFE:
        cookie_only = getattr(_client(owner.owner), method)(url, data={}, content_type="application/json")
        assert cookie_only.status_code in (401, 403, 405), (
            f"{method.upper()} {route.name} with only a session cookie -> {cookie_only.status_code}"
        )
        keyed = api_client_for(owner)
        keyed.enforce_csrf_checks = True
        response = getattr(keyed, method)(url, data={}, format="json")
        assert not response.has_header(CSRF_MARK), f"{method.upper()} {route.name} with an API key asked for CSRF"

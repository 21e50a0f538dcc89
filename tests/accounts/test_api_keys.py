"""API keys: shown once, stored hashed, scoped, revocable, expiring, one organisation's only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.http import Http404
from rest_framework.test import APIClient

from accounts import selectors, services
from accounts.models import Membership, OrganizationAPIKey, Role
from core.errors import ApplicationError
from core.timeutils import utcnow

pytestmark = pytest.mark.django_db

ORG_URL = "/api/v1/organization"
EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


def owner(org) -> Membership:
    return Membership.objects.get(organization=org, user=org.owner)


def client_with(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return client


def create_key(org, scopes=("market:read",), name="agent"):
    return services.api_key_create(acting=owner(org), name=name, scopes=list(scopes))


def test_the_raw_key_is_returned_once_and_only_its_hash_is_stored(make_org):
    org = make_org("provider")
    api_key, raw_key = create_key(org, scopes=["metering:write", "market:read", "metering:write"])
    prefix, _dot, secret = raw_key.partition(".")
    assert api_key.prefix == prefix
    assert len(secret) >= 32
    stored = OrganizationAPIKey.objects.get(pk=api_key.pk)
    assert stored.scopes == ["market:read", "metering:write"]
    assert stored.hashed_key.startswith("sha512$$")
    for field in stored._meta.concrete_fields:
        assert secret not in str(field.value_from_object(stored))
    listed = selectors.api_key_get(org, api_key.public_id)
    assert not hasattr(listed, "key")
    assert client_with(raw_key).get(ORG_URL).status_code == 200


def test_a_revoked_key_is_refused_with_401(make_org):
    org = make_org("buyer")
    api_key, raw_key = create_key(org)
    client = client_with(raw_key)
    assert client.get(ORG_URL).status_code == 200
    services.api_key_revoke(acting=owner(org), api_key=api_key)
    response = client.get(ORG_URL, **EN)
    assert response.status_code == 401
    assert response.json() == {
        "errors": [{"field": None, "code": "authentication_failed", "message": "Unknown or revoked API key."}]
    }


def test_an_expired_key_is_refused_with_401(make_org):
    org = make_org("buyer")
    api_key, raw_key = create_key(org)
    OrganizationAPIKey.objects.filter(pk=api_key.pk).update(expiry_date=utcnow() - timedelta(seconds=1))
    assert client_with(raw_key).get(ORG_URL).status_code == 401
    OrganizationAPIKey.objects.filter(pk=api_key.pk).update(expiry_date=utcnow() + timedelta(days=1))
    assert client_with(raw_key).get(ORG_URL).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Api-Key wrongpfx.secretsecretsecretsecretsecretsecret",
        "Bearer {raw}",
        "Api-Key {prefix}.not-the-secret",
        "{raw}",
    ],
)
def test_wrong_or_malformed_keys_are_401(make_org, header):
    org = make_org("buyer")
    api_key, raw_key = create_key(org)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.format(raw=raw_key, prefix=api_key.prefix))
    response = client.get(ORG_URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.urls("tests.core.error_views")
def test_a_key_without_the_views_scope_is_403(make_org):
    org = make_org("buyer")
    _key, market_only = create_key(org, scopes=["market:read"])
    _key, billing = create_key(org, scopes=["billing:read"])
    response = client_with(market_only).get("/t/scoped", **EN)
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "permission_denied"
    assert client_with(billing).get("/t/scoped").status_code == 200


@pytest.mark.parametrize("status", ["suspended", "pending"])
def test_keys_of_inactive_organisations_are_403(make_org, status):
    org = make_org("provider")
    _key, raw_key = create_key(org)
    org.status = status
    org.save()
    response = client_with(raw_key).get(ORG_URL, **EN)
    assert response.status_code == 403
    assert response.json()["errors"][0]["message"] == "Your organisation is not active."


def test_last_used_at_is_recorded_at_most_once_a_minute(make_org):
    org = make_org("buyer")
    api_key, raw_key = create_key(org)
    assert api_key.last_used_at is None
    client = client_with(raw_key)
    client.get(ORG_URL)
    api_key.refresh_from_db()
    first_use = api_key.last_used_at
    assert first_use is not None
    assert utcnow() - first_use < timedelta(seconds=30)
    client.get(ORG_URL)
    api_key.refresh_from_db()
    assert api_key.last_used_at == first_use  # no write on every request
    long_ago = utcnow() - timedelta(minutes=5)
    OrganizationAPIKey.objects.filter(pk=api_key.pk).update(last_used_at=long_ago)
    client.get(ORG_URL)
    api_key.refresh_from_db()
    assert api_key.last_used_at > long_ago


def test_a_key_sees_only_its_own_organisation(make_org):
    mine, theirs = make_org("buyer"), make_org("buyer")
    their_key, their_raw = create_key(theirs)
    _my_key, my_raw = create_key(mine)
    assert client_with(my_raw).get(ORG_URL).json()["id"] == str(mine.public_id)
    assert client_with(their_raw).get(ORG_URL).json()["id"] == str(theirs.public_id)
    # Another organisation's key is invisible to my reads and untouched by my writes.
    with pytest.raises(Http404):
        selectors.api_key_get(mine, their_key.public_id)
    assert their_key not in selectors.api_key_list(mine)
    services.api_key_revoke(acting=owner(mine), api_key=their_key)
    their_key.refresh_from_db()
    assert not their_key.revoked
    assert client_with(their_raw).get(ORG_URL).status_code == 200


def test_only_admins_manage_keys(make_org, make_user):
    org = make_org("buyer")
    admin = Membership.objects.create(user=make_user(), organization=org, role=Role.ADMIN)
    member = Membership.objects.create(user=make_user(), organization=org, role=Role.MEMBER)
    api_key, _raw = services.api_key_create(acting=admin, name="ci", scopes=["market:read"])
    for acting in (member,):
        with pytest.raises(ApplicationError) as exc:
            services.api_key_create(acting=acting, name="x", scopes=["market:read"])
        assert exc.value.status_code == 403
        with pytest.raises(ApplicationError) as exc:
            services.api_key_revoke(acting=acting, api_key=api_key)
        assert exc.value.status_code == 403
    api_key.refresh_from_db()
    assert not api_key.revoked
    assert api_key.created_by == admin.user


@pytest.mark.parametrize(
    ("name", "scopes", "expected"),
    [
        ("", ["market:read"], {"name": "required"}),
        ("  ", ["market:read"], {"name": "required"}),
        ("x" * 51, ["market:read"], {"name": "max_length"}),
        ("ok", [], {"scopes": "required"}),
        ("ok", ["market:read", "root:all"], {"scopes": "invalid_scope"}),
    ],
)
def test_key_input_is_checked_per_field(make_org, name, scopes, expected):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.api_key_create(acting=owner(org), name=name, scopes=scopes)
    assert {e.field: e.code for e in exc.value.errors} == expected
    assert not OrganizationAPIKey.objects.exists()


def test_a_fifty_character_name_is_fine(make_org):
    org = make_org("buyer")
    api_key, _raw = services.api_key_create(acting=owner(org), name="x" * 50, scopes=["market:read"])
    assert len(api_key.name) == 50

"""Tenancy matrix: every URL x method x {own organisation, another of the same kind, another kind, anonymous,
another organisation's API key}. No cross-tenant 2xx; a foreign id is a 404.

The URLs come from the URL conf itself, so a new URL is covered without editing this file. Public views
declare themselves with ``core.tenancy.public``; tenant-owned objects named in URLs get a factory in
``tests/tenancy.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from core.tenancy import is_public
from tests.tenancy import OBJECT_FACTORIES

METHODS = ["get", "post", "put", "patch", "delete"]
# Django's admin has its own staff-only guard, proved separately below.
SKIPPED_NAMESPACES = {"admin"}
KINDS = ["buyer", "provider", "issuer", "platform"]


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str  # with <converter:kwarg> placeholders
    kwargs: tuple[str, ...]
    view: Any
    is_api: bool

    def url(self, values: dict[str, str]) -> str:
        path = self.pattern
        for kwarg in self.kwargs:
            path = _replace_placeholder(path, kwarg, values[kwarg])
        return "/" + path


def _replace_placeholder(path: str, kwarg: str, value: str) -> str:
    start = path.index("<")
    while start != -1:
        end = path.index(">", start)
        placeholder = path[start + 1 : end]
        if placeholder.split(":")[-1] == kwarg:
            return path[:start] + value + path[end + 1 :]
        start = path.find("<", end)
    raise AssertionError(f"{kwarg} not in {path}")


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> list[Route]:
    routes: list[Route] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = entry.namespace or namespace
            if ns in SKIPPED_NAMESPACES:
                continue
            routes.extend(_walk(entry.url_patterns, prefix + str(entry.pattern), ns))
        elif isinstance(entry, URLPattern):
            pattern = prefix + str(entry.pattern)
            if "(?P" in pattern or pattern.startswith("^"):
                continue  # regex routes: static/media in DEBUG only
            kwargs = tuple(part.split(">")[0].split(":")[-1] for part in pattern.split("<")[1:])
            name = f"{namespace}:{entry.name}" if namespace else (entry.name or pattern)
            routes.append(Route(name, pattern, kwargs, entry.callback, pattern.startswith("api/")))
    return routes


ROUTES = _walk(get_resolver().url_patterns)
TENANT_ROUTES = [r for r in ROUTES if not is_public(r.view)]
OBJECT_ROUTES = [r for r in TENANT_ROUTES if r.kwargs]


def test_the_matrix_sees_the_project_urls():
    names = {r.name for r in ROUTES}
    assert {"accounts:dashboard", "accounts:api-key-revoke", "api:organization"} <= names
    assert OBJECT_ROUTES, "no tenant-owned object URLs found: the walk is broken"


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=lambda r: r.name)
def test_every_tenant_url_has_object_factories(route):
    missing = [k for k in route.kwargs if k not in OBJECT_FACTORIES]
    assert not missing, f"{route.name}: add a factory for {missing} to tests/tenancy.py"


def _anonymous_denied(response, route: Route) -> bool:
    if response.status_code in (401, 403, 404, 405):
        return True
    if response.status_code == 302:
        return "/accounts/login/" in response["Location"]
    return False


@pytest.mark.django_db
@pytest.mark.parametrize("route", TENANT_ROUTES, ids=lambda r: r.name)
def test_anonymous_gets_nothing(route, client, make_org):
    values = {k: OBJECT_FACTORIES[k](make_org)[1] for k in route.kwargs} if route.kwargs else {}
    for method in METHODS:
        response = getattr(client, method)(route.url(values))
        assert _anonymous_denied(response, route), f"anonymous {method.upper()} {route.name} -> {response.status_code}"


def _owned(route: Route, make_org) -> tuple[Any, dict[str, str]]:
    """Objects for every kwarg, all owned by one organisation (the first factory's)."""
    owner = None
    values: dict[str, str] = {}
    for kwarg in route.kwargs:
        organization, value = OBJECT_FACTORIES[kwarg](make_org)
        if owner is not None and organization.pk != owner.pk:
            # Several objects in one URL: they must belong together; factories that need a shared owner
            # take care of it by creating nested objects. Here we keep the first owner.
            pass
        owner = owner or organization
        values[kwarg] = value
    return owner, values


@pytest.mark.django_db
@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=lambda r: r.name)
def test_foreign_ids_are_404_for_every_other_organisation(route, make_org, client_for, api_client_for):
    owner, values = _owned(route, make_org)
    url = route.url(values)
    intruders = [make_org(owner.kind)] + [make_org(kind) for kind in KINDS if kind != owner.kind]
    for intruder in intruders:
        same_kind = intruder.kind == owner.kind
        client = api_client_for(intruder) if route.is_api else client_for(intruder.owner)
        for method in METHODS:
            response = getattr(client, method)(url)
            status = response.status_code
            who = f"{intruder.kind} intruder {method.upper()} {route.name}"
            if same_kind:
                # The only thing a foreign id may reveal is that it does not exist (or the method is wrong).
                assert status in (404, 405), f"{who} -> {status}"
            else:
                assert status in (403, 404, 405), f"{who} -> {status}"


@pytest.mark.django_db
@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=lambda r: r.name)
def test_owner_reaches_own_objects(route, make_org, client_for, api_client_for):
    """The other side of the matrix: the same URL works for its owner, so the 404s above are not vacuous."""
    owner, values = _owned(route, make_org)
    client = api_client_for(owner) if route.is_api else client_for(owner.owner)
    statuses = {method: getattr(client, method)(route.url(values)).status_code for method in ("get", "post")}
    assert any(s < 400 or s == 400 for s in statuses.values()), f"owner of {route.name} got {statuses}"
    assert 404 not in statuses.values(), f"owner of {route.name} got {statuses}"


@pytest.mark.django_db
@pytest.mark.parametrize("route", [r for r in TENANT_ROUTES if r.is_api], ids=lambda r: r.name)
def test_api_refuses_missing_and_unknown_keys(route, make_org, client):
    values = {k: OBJECT_FACTORIES[k](make_org)[1] for k in route.kwargs}
    url = route.url(values)
    for method in METHODS:
        bare = getattr(client, method)(url)
        forged = getattr(client, method)(url, HTTP_AUTHORIZATION=f"Api-Key {uuid.uuid4().hex}.{uuid.uuid4().hex}")
        for response in (bare, forged):
            assert response.status_code in (401, 403, 405), f"{method.upper()} {route.name} -> {response.status_code}"
            if response.status_code != 405:
                assert "errors" in response.json()


@pytest.mark.django_db
def test_admin_is_staff_only(client, client_for, make_org):
    from django.contrib import admin

    member = make_org("platform").owner  # a platform organisation's member who is not staff
    urls = ["/admin/"] + [f"/admin/{model._meta.app_label}/{model._meta.model_name}/" for model in admin.site._registry]
    for url in urls:
        for who, c in (("anonymous", client), ("non-staff", client_for(member))):
            response = c.get(url)
            assert response.status_code == 302, f"{who} {url}"
            assert "/admin/login/" in response["Location"], f"{who} {url}"


def test_every_model_has_a_staff_admin():
    """Platform staff see every model of ours in the admin (read-only for money), new ones included."""
    from django.apps import apps
    from django.contrib import admin

    ours = ["core", "accounts", "marketplace", "metering", "vouchers", "green", "billing"]
    # Django's admin cannot show composite primary keys; staff see usage through UsageHour and SignedBatch.
    composite_keys = {"metering.UsageRecord", "metering.UsageRecordKey"}
    missing = [
        model._meta.label
        for app in ours
        for model in apps.get_app_config(app).get_models()
        if model not in admin.site._registry and model._meta.label not in composite_keys
    ]
    assert not missing, f"register these in their app's admin.py: {missing}"


@pytest.mark.django_db
def test_every_admin_changelist_renders_for_staff(client, make_user):
    from django.contrib import admin

    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    for model in admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url

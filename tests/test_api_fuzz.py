"""API fuzzing: schemathesis generates requests from the project's own OpenAPI schema, for every operation.

Each operation is called through the Django WSGI application with a valid API key (all scopes) of an
organisation of a kind the view serves, and with real objects of that organisation in its path (so that the
fuzzer reaches the handler, not only the 404 of an unknown id). Checks: no 5xx, responses (status, content
type, body) conform to the schema, invalid input is refused with a 4xx, and every 4xx carries the error
envelope ``{"errors": [{"field", "code", "message"}]}``.

The bounded run (a few examples per operation) is part of ``make test``; ``make fuzz`` runs the same test with
many more examples and schemathesis' coverage phase (``SUANLI_FUZZ_EXAMPLES``, ``SUANLI_FUZZ_COVERAGE``).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import ApiScope, OrganizationAPIKey, OrganizationKind

MAX_EXAMPLES = int(os.environ.get("SUANLI_FUZZ_EXAMPLES", "10"))
COVERAGE = os.environ.get("SUANLI_FUZZ_COVERAGE", "") == "1"


class _TestWSGIApp(WSGIHandler):
    """Django's WSGI application without closing the database connection after each request.

    Like Django's test client: the test's transaction (pytest-django's ``db``) must survive the request.
    """

    def __call__(self, environ: Any, start_response: Any) -> Any:
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        try:
            return super().__call__(environ, start_response)
        finally:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)


APP = _TestWSGIApp()

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.config.generation.update(
    modes=["positive", "negative"], max_examples=MAX_EXAMPLES, with_security_parameters=False
)
schema.config.phases.update(phases=["examples", "fuzzing", *(["coverage"] if COVERAGE else [])])

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _view_class(path_template: str) -> Any:
    """The API view of a schema path such as ``/api/v1/pools/{pool_id}`` (ids filled with a UUID)."""
    concrete = path_template
    while "{" in concrete:
        start, end = concrete.index("{"), concrete.index("}")
        concrete = concrete[:start] + "00000000-0000-0000-0000-000000000000" + concrete[end + 1 :]
    return resolve(concrete).func.view_class


def _kind_for(path_template: str) -> str:
    kinds = getattr(_view_class(path_template), "organization_kinds", None) or [OrganizationKind.BUYER]
    return str(kinds[0])


def _own_object(kwarg: str, organization: Any, make_org: Any) -> str | None:
    """An object of ``organization`` for the path keyword, made by the tenancy matrix' factories."""
    from tests.tenancy import OBJECT_FACTORIES

    factory = OBJECT_FACTORIES.get(kwarg)
    if factory is None:
        return None
    first_call = True

    def own_org_first(kind: str = "buyer", **fields: object) -> Any:
        # The factory's first organisation is the owner: ours. Others it needs (a second person...) are new.
        nonlocal first_call
        if first_call and kind == organization.kind:
            first_call = False
            return organization
        return make_org(kind, **fields)

    owner, value = factory(own_org_first)
    return value if owner.pk == organization.pk else None


def _public_object(kwarg: str) -> str | None:
    from tests.marketplace.factories import accelerator, ensure_reference_data

    if kwarg == "model_id":
        ensure_reference_data()
        return str(accelerator().public_id)
    return None


def _assert_error_envelope(response: Any) -> None:
    if not 400 <= response.status_code < 500:
        return
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"errors"}, body
    assert isinstance(body["errors"], list), body
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) == {"field", "code", "message"}, error
        assert error["field"] is None or isinstance(error["field"], str), error
        assert isinstance(error["code"], str), error
        assert error["code"], error
        assert isinstance(error["message"], str), error
        assert error["message"], error


@pytest.fixture
def fuzz_context(make_org) -> dict[str, Any]:
    """The key and owned path values for the operation under test, made once per operation."""
    return {"make_org": make_org, "by_kind": {}}


def _auth_for(context: dict[str, Any], path_template: str, path_names: list[str]) -> dict[str, Any]:
    key = (path_template, tuple(path_names))
    if key in context["by_kind"]:
        return context["by_kind"][key]
    make_org = context["make_org"]
    organization = make_org(_kind_for(path_template))
    _api_key, raw = OrganizationAPIKey.objects.create_key(
        name="fuzz", organization=organization, scopes=list(ApiScope.values)
    )
    values: dict[str, str] = {}
    for name in path_names:
        value = _public_object(name) or _own_object(name, organization, make_org)
        if value is not None:
            values[name] = value
    context["by_kind"][key] = {"headers": {"Authorization": f"Api-Key {raw}"}, "path": values}
    return context["by_kind"][key]


@pytest.mark.django_db
@schema.parametrize()
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
def test_api_operation(case, fuzz_context):
    path_names = [p.name for p in case.operation.path_parameters]
    auth = _auth_for(fuzz_context, case.operation.path, path_names)
    if case.meta is None or not case.meta.generation.mode.is_negative:
        # Positive cases act on real objects of the caller; negative ones keep what the fuzzer made.
        case.path_parameters = {**(case.path_parameters or {}), **auth["path"]}
    case.headers = {**(case.headers or {}), **auth["headers"]}
    response = case.call(app=APP)
    case.validate_response(response, checks=CHECKS, headers=auth["headers"])
    _assert_error_envelope(response)


# --- Regression tests of what the fuzzer found -------------------------------------------------------------


def test_every_operation_documents_the_error_envelope():
    for operations in schema.raw_schema["paths"].values():
        for operation in operations.values():
            assert operation["responses"]["4XX"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorEnvelope"
            }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "status", "field"),
    [
        ("/api/v1/pools/not-a-uuid", 404, None),  # was Django's HTML 404 page
        ("/api/v1/no-such-endpoint", 404, None),
        ("/api/v1/listings/pools?limit=true", 400, "limit"),  # was ignored
        ("/api/v1/listings/pools?limit=0", 400, "limit"),
        ("/api/v1/listings/pools?offset=-1", 400, "offset"),
        ("/api/v1/catalog/accelerators?domestic=-19", 400, "domestic"),  # was read as false
    ],
)
def test_refusals_found_by_the_fuzzer_are_json_envelopes(client, url, status, field):
    response = client.get(url, HTTP_ACCEPT="application/json")
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    [error] = response.json()["errors"]
    assert error["field"] == field


@pytest.mark.django_db
def test_valid_catalog_filters_and_pages_still_work(client):
    assert client.get("/api/v1/catalog/accelerators?domestic=true").status_code == 200
    assert client.get("/api/v1/listings/pools?limit=5&offset=0").status_code == 200


def test_portal_pages_keep_the_html_404(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/catalog/accelerators?vendor=S%00x", "vendor"),  # was a DataError: 500
        ("/api/v1/catalog/accelerators?a%00b=1", None),
    ],
)
def test_nul_characters_in_query_parameters_are_refused(client, url, field):
    response = client.get(url)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["field"], error["code"]) == (field, "null_characters_not_allowed")


def test_nul_characters_in_portal_query_parameters_are_a_bad_request(client, db):
    assert client.get("/?q=%00").status_code == 400

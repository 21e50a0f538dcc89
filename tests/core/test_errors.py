"""The API's error envelope: {"errors": [{"field", "code", "message"}]}, zh-hans by default, en on request."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import translation
from django.utils.translation import gettext
from rest_framework.test import APIClient

from accounts.models import Organization

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.core.error_views")]

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


def zh(msgid: str) -> str:
    """The zh-hans translation of a message (ours, or Django's and DRF's own, whichever the catalogs give);
    skips the calling test while it has none yet."""
    with translation.override("zh-hans"):
        text = gettext(msgid)
    if text == msgid:
        pytest.skip(f"no zh-hans translation yet for {msgid!r}")
    return text


@pytest.fixture
def api():
    return APIClient()


def errors(response) -> list[dict]:
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"errors"}
    for error in body["errors"]:
        assert set(error) == {"field", "code", "message"}
        assert isinstance(error["message"], str)
        assert error["message"]
    return body["errors"]


def test_application_error(api):
    response = api.get("/t/application-error", **EN)
    assert response.status_code == 400
    assert errors(response) == [
        {"field": "email", "code": "email_taken", "message": "An account with this email already exists."}
    ]


def test_application_error_message_in_chinese_by_default(api):
    expected = zh("An account with this email already exists.")
    response = api.get("/t/application-error")
    assert errors(response)[0]["message"] == expected


def test_validation_failed_lists_every_field(api):
    response = api.get("/t/validation-failed", **EN)
    assert response.status_code == 400
    assert errors(response) == [
        {"field": "name", "code": "required", "message": "This field is required."},
        {"field": "scopes", "code": "invalid_scope", "message": "Unknown scope: x:y"},
        {"field": None, "code": "last_owner", "message": "An organisation needs at least one owner."},
    ]


def test_validation_failed_speaks_chinese_by_default(api):
    # "This field is required." is also one of Django's and DRF's own messages, translated by them.
    response = api.get("/t/validation-failed")
    assert errors(response)[0]["message"] == zh("This field is required.")


def test_conflict_is_409(api):
    response = api.get("/t/conflict")
    assert response.status_code == 409
    assert errors(response)[0]["code"] == "idempotency_key_reused"


def test_django_validation_error(api):
    response = api.get("/t/django-validation")
    assert response.status_code == 400
    assert sorted(errors(response), key=lambda e: e["code"]) == [
        {"field": None, "code": "inconsistent", "message": "Inconsistent."},
        {"field": "uscc", "code": "invalid_uscc", "message": "Bad check digit."},
    ]


def test_drf_validation_error_names_nested_fields(api):
    body = {
        "count": "many",
        "scopes": ["market:read", "root"],
        "profile": {"uscc": "9" * 19},
        "shareholders": [{"name": "张三", "share_pct": "10"}, {"name": "", "share_pct": "-1"}],
    }
    response = api.post("/t/nested", body, format="json", **EN)
    assert response.status_code == 400
    found = {(e["field"], e["code"]) for e in errors(response)}
    assert found == {
        ("name", "required"),
        ("count", "invalid"),
        ("scopes[1]", "invalid_choice"),
        ("profile.uscc", "max_length"),
        ("shareholders[1].name", "blank"),
        ("shareholders[1].share_pct", "min_value"),
    }
    by_field = {e["field"]: e["message"] for e in errors(response)}
    assert by_field["name"] == "This field is required."
    assert by_field["count"] == "A valid integer is required."


def test_drf_validation_error_in_chinese_by_default(api):
    response = api.post("/t/nested", {"count": "many"}, format="json")
    by_field = {e["field"]: e["message"] for e in errors(response)}
    assert by_field["name"] == zh("This field is required.")
    assert by_field["count"] == zh("A valid integer is required.")


def test_drf_non_field_error_has_no_field(api):
    body = {
        "name": "x",
        "count": 1,
        "scopes": [],
        "profile": {"uscc": "91350100M000100Y43"},
        "shareholders": [{"name": "a", "share_pct": "60"}, {"name": "b", "share_pct": "60"}],
    }
    response = api.post("/t/nested", body, format="json", **EN)
    assert response.status_code == 400
    assert errors(response) == [
        {"field": None, "code": "shares_over_100", "message": "Shareholdings add up to more than 100%."}
    ]


def test_batch_errors_name_the_item(api):
    """A list body (a batch): each error says which item it concerns."""
    body = [{"name": "ok", "share_pct": "1"}, {"name": "ok", "share_pct": "1"}, {"share_pct": "x"}]
    response = api.post("/t/list", body, format="json", **EN)
    assert response.status_code == 400
    assert {(e["field"], e["code"]) for e in errors(response)} == {
        ("[2].name", "required"),
        ("[2].share_pct", "invalid"),
    }


def test_malformed_json_is_a_parse_error(api):
    response = api.post("/t/nested", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert errors(response)[0]["code"] == "parse_error"


def test_not_found_in_both_languages(api):
    response = api.get("/t/not-found")
    assert response.status_code == 404
    assert errors(response) == [{"field": None, "code": "not_found", "message": zh("Not found.")}]
    response = api.get("/t/not-found", **EN)
    assert errors(response) == [{"field": None, "code": "not_found", "message": "Not found."}]


def test_django_permission_denied_is_a_403_envelope(api):
    response = api.get("/t/forbidden", **EN)
    assert response.status_code == 403
    assert errors(response) == [
        {"field": None, "code": "permission_denied", "message": "You do not have permission to perform this action."}
    ]


def test_missing_api_key_is_401_with_challenge(api):
    response = api.get("/t/scoped", **EN)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert errors(response) == [
        {
            "field": None,
            "code": "not_authenticated",
            "message": "Send your API key: Authorization: Api-Key <key>.",
        }
    ]


def test_missing_api_key_message_in_chinese(api):
    expected = zh("Send your API key: Authorization: Api-Key <key>.")
    assert errors(api.get("/t/scoped"))[0]["message"] == expected


def test_unknown_api_key_is_401(api):
    response = api.get("/t/scoped", HTTP_AUTHORIZATION="Api-Key abcdefgh.notarealkey", **EN)
    assert response.status_code == 401
    assert errors(response) == [
        {"field": None, "code": "authentication_failed", "message": "Unknown or revoked API key."}
    ]


def test_missing_scope_is_403(make_org, api_client_for):
    client = api_client_for(make_org("buyer"), scopes=["market:read"])
    response = client.get("/t/scoped", **EN)
    assert response.status_code == 403
    [error] = errors(response)
    assert error["code"] == "permission_denied"
    assert error["field"] is None
    assert "billing:read" in error["message"]
    assert "market:read" not in error["message"]


def test_with_the_scope_the_view_answers(make_org, api_client_for):
    org = make_org("buyer")
    response = api_client_for(org, scopes=["billing:read"]).get("/t/scoped")
    assert response.status_code == 200
    assert response.json() == {"organization": org.name}


def test_method_not_allowed(api):
    response = api.delete("/t/not-found")
    assert response.status_code == 405
    assert errors(response)[0]["code"] == "method_not_allowed"


def test_server_errors_are_not_disguised_as_client_errors(api):
    with pytest.raises(RuntimeError, match="boom"):
        api.get("/t/crash")


@pytest.mark.django_db(transaction=True)
def test_a_refused_request_writes_nothing_even_with_atomic_requests(api, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    response = api.post("/t/half-write", {}, format="json")
    assert response.status_code == 400
    assert not Organization.objects.filter(name="half-written").exists()


def test_list_shaped_errors_keep_the_item_position():
    """The older list format of list-serializer errors ([{}, {...}]) also names the item."""
    from rest_framework.exceptions import ErrorDetail, ValidationError

    from core.errors import api_exception_handler

    detail = [{}, {"name": [ErrorDetail("This field is required.", code="required")]}]
    response = api_exception_handler(ValidationError(detail), {})
    assert response.status_code == 400
    assert response.data == {
        "errors": [{"field": "[1].name", "code": "required", "message": "This field is required."}]
    }

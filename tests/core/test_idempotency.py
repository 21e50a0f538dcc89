"""Idempotency-Key on API writes: one execution per key, replays identical, other bodies refused."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from core.audit import audit_record
from core.idempotency import idempotent
from core.models import AuditLog, IdempotencyRecord


class CreateThing(APIView):
    """A stand-in write API: each execution appends one audit row (a visible side effect)."""

    def post(self, request):
        def handler():
            if request.data.get("fail"):
                return Response({"errors": [{"field": "fail", "code": "invalid", "message": "no"}]}, status=400)
            entry = audit_record(
                action="thing.created",
                target_type="thing",
                target_id=str(uuid.uuid4()),
                organization=request.organization,
            )
            return Response({"id": entry.target_id, "name": request.data["name"]}, status=201)

        return idempotent(request, handler)


def _post(api_client_for_org, body, key=None):
    _organization, raw = api_client_for_org
    headers = {"HTTP_AUTHORIZATION": f"Api-Key {raw}"}
    if key:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    request = APIRequestFactory().post("/things", body, format="json", **headers)
    return CreateThing.as_view()(request)


@pytest.fixture
def keyed_org(make_org):
    from accounts.models import OrganizationAPIKey

    organization = make_org("provider")
    _key, raw = OrganizationAPIKey.objects.create_key(name="t", organization=organization, scopes=[])
    return organization, raw


def _created(organization):
    return AuditLog.objects.filter(organization=organization, action="thing.created").count()


@pytest.mark.django_db
def test_retry_with_same_key_replays_and_runs_once(keyed_org):
    first = _post(keyed_org, {"name": "a"}, key="k-1")
    second = _post(keyed_org, {"name": "a"}, key="k-1")
    assert first.status_code == second.status_code == 201
    assert second.data == first.data
    assert second["Idempotent-Replayed"] == "true"
    assert _created(keyed_org[0]) == 1


@pytest.mark.django_db
def test_same_key_other_body_is_409_and_changes_nothing(keyed_org):
    _post(keyed_org, {"name": "a"}, key="k-2")
    conflict = _post(keyed_org, {"name": "b"}, key="k-2")
    assert conflict.status_code == 409
    assert conflict.data["errors"][0]["code"] == "idempotency_key_reused"
    assert _created(keyed_org[0]) == 1


@pytest.mark.django_db
def test_failed_request_is_not_remembered(keyed_org):
    failed = _post(keyed_org, {"name": "a", "fail": True}, key="k-3")
    assert failed.status_code == 400
    assert not IdempotencyRecord.objects.filter(key="k-3").exists()
    fixed = _post(keyed_org, {"name": "a"}, key="k-3")
    assert fixed.status_code == 201


@pytest.mark.django_db
def test_keys_are_per_organisation(keyed_org, make_org):
    from accounts.models import OrganizationAPIKey

    other = make_org("provider")
    _key, raw = OrganizationAPIKey.objects.create_key(name="t", organization=other, scopes=[])
    assert _post(keyed_org, {"name": "a"}, key="shared").status_code == 201
    response = _post((other, raw), {"name": "a"}, key="shared")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert _created(other) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_run_once(keyed_org):
    """8 threads, own connections, same key at the same instant: exactly one execution, 8 identical answers."""
    barrier = threading.Barrier(8)
    results = []

    def worker():
        try:
            barrier.wait()
            results.append(_post(keyed_org, {"name": "race"}, key="race-key"))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [201] * 8
    assert len({r.data["id"] for r in results}) == 1
    assert _created(keyed_org[0]) == 1

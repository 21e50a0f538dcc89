"""``Idempotency-Key`` for API writes (DESIGN.md §3).

The first request with a key runs and its response is stored in the same transaction as the business change.
A retry with the same key and the same body gets the stored response again (header ``Idempotent-Replayed:
true``) and changes nothing; the same key with another body is a 409. The uniqueness lives in the database
(``idempotency_key_unique_per_org``): two racing requests with one key run the handler once; the second waits
for the first to commit and then replays it. A request that fails (4xx/5xx) stores nothing, so the client can
correct it and retry with the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.utils.translation import gettext_lazy as _
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import ApplicationError, Conflict
from core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def request_fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method}\n{request.path}\n".encode())
    # Read before the view parses request.data, so Django keeps the raw body for both.
    digest.update(request.body)
    return digest.hexdigest()


def idempotent(request: Request, handler: Callable[[], Response], *, required: bool = False) -> Response:
    """Run ``handler`` at most once per (organisation, Idempotency-Key)."""
    key = request.headers.get(HEADER, "").strip()
    if not key:
        if required:
            raise ApplicationError(
                "idempotency_key_required", _("Send an Idempotency-Key header with this request."), field=HEADER
            )
        return handler()
    if len(key) > MAX_KEY_LENGTH:
        raise ApplicationError("idempotency_key_too_long", _("The Idempotency-Key is too long."), field=HEADER)
    organization = request.organization  # type: ignore[attr-defined]
    fingerprint = request_fingerprint(request)

    with transaction.atomic():
        with connection.cursor() as cursor:
            # Waits for a concurrent holder of the same key to commit or roll back, then decides.
            cursor.execute(
                "INSERT INTO core_idempotencyrecord"
                " (organization_id, key, method, path, fingerprint, created_at)"
                " VALUES (%s, %s, %s, %s, %s, now())"
                " ON CONFLICT (organization_id, key) DO NOTHING RETURNING id",
                [organization.pk, key, request.method, request.path[:500], fingerprint],
            )
            inserted = cursor.fetchone()
        if inserted is None:
            return _replay(organization, key, fingerprint)
        response = handler()
        if response.status_code >= 400:
            transaction.set_rollback(True)  # failures are not remembered: correct and retry with the same key
            return response
        IdempotencyRecord.objects.filter(pk=inserted[0]).update(
            status_code=response.status_code, response_body=json.loads(JSONRenderer().render(response.data))
        )
        return response


def _replay(organization: Any, key: str, fingerprint: str) -> Response:
    record = IdempotencyRecord.objects.get(organization=organization, key=key)
    if record.fingerprint != fingerprint:
        raise Conflict(
            "idempotency_key_reused",
            _("This Idempotency-Key was used with a different request."),
            field=HEADER,
        )
    response = Response(record.response_body, status=record.status_code or 200)
    response["Idempotent-Replayed"] = "true"
    return response

"""Reads of the metering app; every read takes the organisation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from core.errors import ApplicationError
from core.timeutils import month_start
from marketplace import selectors as market_selectors
from metering import ingest, signing
from metering.ingest import LeaseFacts
from metering.models import SignedBatch, SigningKey


def signing_key_list(organization: Organization) -> QuerySet[SigningKey]:
    return SigningKey.objects.filter(organization=organization)


def signing_key_get(organization: Organization, public_id: UUID) -> SigningKey:
    return get_object_or_404(signing_key_list(organization), public_id=public_id)


def signing_key_for_request(
    organization: Organization,
    *,
    timestamp: str | None,
    signature: str | None,
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
) -> SigningKey:
    """The organisation's active key that signed this request; 401 errors say what is wrong."""
    if not timestamp or not signature:
        raise ApplicationError(
            "signature_missing",
            _("Sign the request: headers X-Suanli-Timestamp and X-Suanli-Signature."),
            status_code=401,
        )
    try:
        stamp = int(timestamp)
    except ValueError:
        raise ApplicationError(
            "timestamp_invalid",
            _("X-Suanli-Timestamp must be unix seconds."),
            field=signing.TIMESTAMP_HEADER,
            status_code=401,
        ) from None
    if not signing.timestamp_fresh(stamp, time.time() if now is None else now):
        raise ApplicationError(
            "timestamp_skew",
            _("X-Suanli-Timestamp is more than 300 seconds from the server's clock: check the agent's clock."),
            field=signing.TIMESTAMP_HEADER,
            status_code=401,
        )
    message = signing.canonical_message(stamp, method, path, body)
    for key in signing_key_list(organization).filter(revoked_at__isnull=True):
        if signing.verify(bytes(key.public_key), message, signature):
            return key
    raise ApplicationError(
        "signature_invalid",
        _("The signature does not match the body with any active signing key of your organisation."),
        field=signing.SIGNATURE_HEADER,
        status_code=401,
    )


def subject_facts(organization: Organization, public_ids: set[str]) -> dict[str, LeaseFacts]:
    """The provider's leases named in a batch, as facts for validation (cancelled leases are not usable).

    Token contracts do not exist yet (issue 4 builds capacity leases first); their ids stay unknown.
    """
    wanted = {str(u) for u in (_as_uuid(p) for p in public_ids) if u is not None}
    if not wanted:
        return {}
    return {
        str(lease.public_id): LeaseFacts(
            public_id=str(lease.public_id),
            provider_id=lease.provider_id,
            accelerators=lease.accelerators,
            start=lease.start,
            end=lease.end,
            kind="lease",
        )
        for lease in market_selectors.lease_facts_for_provider(organization, wanted)
    }


def _as_uuid(value: str) -> UUID | None:
    try:
        return UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def usage_closed_before(now: datetime) -> datetime:
    """Windows ending at or before this instant belong to closed billing periods (monthly, after the grace)."""
    current = month_start(now)
    if now < current + settings.METERING_CLOSE_GRACE:
        return month_start(current - timedelta(days=1))
    return current


def batch_list(organization: Organization, *, limit: int = 50) -> QuerySet[SignedBatch]:
    """The provider's latest signed batches (without their bodies), newest first."""
    return (
        SignedBatch.objects.filter(organization=organization)
        .select_related("signing_key")
        .defer("body")
        .order_by("-received_at", "-id")[:limit]
    )


def ingest_health(organization: Organization, *, since: datetime) -> dict[str, Any]:
    """Totals over the provider's batches since an instant: records by outcome, rejections by code, last batch."""
    totals: dict[str, Any] = {"batches": 0, "accepted": 0, "duplicate": 0, "conflict": 0, "rejected": {}}
    last = None
    for received_at, outcome in (
        SignedBatch.objects.filter(organization=organization, received_at__gte=since)
        .order_by("received_at")
        .values_list("received_at", "outcome")
    ):
        totals["batches"] += 1
        last = received_at
        for status in ("accepted", "duplicate", "conflict"):
            totals[status] += int(outcome.get(status, 0))
        for code, count in outcome.get("rejected", {}).items():
            totals["rejected"][code] = totals["rejected"].get(code, 0) + int(count)
    totals["rejected_total"] = sum(totals["rejected"].values())
    totals["last_batch_at"] = last
    return totals


@dataclass(frozen=True)
class BatchVerification:
    batch: SignedBatch
    signature_valid: bool
    body_hash_matches: bool
    public_key: str
    records: list[dict[str, Any]]

    @property
    def valid(self) -> bool:
        return self.signature_valid and self.body_hash_matches


def batch_verification(public_id: UUID, *, max_records: int = 200) -> BatchVerification:
    """Re-verify a kept batch from scratch: its body against its hash, its signature against the provider's key.

    Public by design: the batch id is the capability a provider shares with its buyers or a voucher issuer.
    """
    batch = get_object_or_404(SignedBatch.objects.select_related("signing_key", "organization"), public_id=public_id)
    body = bytes(batch.body)
    public_raw = bytes(batch.signing_key.public_key)
    message = signing.canonical_message(batch.timestamp, batch.method, batch.path, body)
    try:
        parsed = ingest.parse_batch(body, batch.content_type)
        records = [r if isinstance(r, dict) else {"value": r} for r in parsed[:max_records]]
    except ingest.BatchError:
        records = []
    return BatchVerification(
        batch=batch,
        signature_valid=signing.verify(public_raw, message, batch.signature),
        body_hash_matches=signing.body_sha256(body) == batch.body_sha256,
        public_key=signing.public_key_text(public_raw),
        records=records,
    )

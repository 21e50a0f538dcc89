"""Reads of the metering app; every read takes the organisation."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from core.errors import ApplicationError
from core.timeutils import Window, floor_hour, month_start, utcnow
from marketplace import selectors as market_selectors
from marketplace import selectors_tokens as market_token_selectors
from metering import ingest, reconcile, signing
from metering.ingest import LeaseFacts
from metering.models import (
    Dispute,
    DisputeStatus,
    SignedBatch,
    SigningKey,
    UsageHour,
    UsageObservation,
    UsageRecord,
)


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
    """The provider's leases and token contracts named in a batch, as facts for validation (cancelled ones are
    not usable). A token contract holds no accelerators (0): its records carry tokens_in, tokens_out, requests."""
    wanted = [str(u) for u in (_as_uuid(p) for p in public_ids) if u is not None]
    return {
        public_id: LeaseFacts(public_id, provider_id, accelerators, start, end, kind)
        for kind, public_id, provider_id, accelerators, start, end in market_selectors.metering_subject_facts(
            provider_id=organization.pk, public_ids=wanted
        )
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


# --- Reconciliation and billing reads ------------------------------------------------------------------


def sla_tiers() -> tuple[tuple[Decimal, Decimal], ...]:
    return reconcile.parse_tiers(getattr(settings, "METERING_SLA_CREDIT_TIERS", reconcile.DEFAULT_SLA_TIERS))


@dataclass(frozen=True)
class LeasePeriodUsage:
    lease_public_id: UUID
    contracted_accelerator_seconds: int  # lease accelerators x seconds of [lease.start, lease.end) ∩ window
    delivered_accelerator_seconds: int
    energy_wh: int  # measured IT energy + estimates where missing
    energy_estimated_wh: int  # the estimated part of energy_wh
    availability: Decimal | None  # delivered / contracted over elapsed hours; None if nothing elapsed
    sla_credit_ratio: Decimal  # fraction (0..1) of the window's capacity charge credited
    dispute_credit_accelerator_seconds: int  # from disputes resolved in the buyer's favour, inside the window


_PERIOD_SQL = """
WITH l(subject_id, accelerators, tdp_w) AS (SELECT * FROM unnest(%(ids)s::uuid[], %(acc)s::int[], %(tdp)s::int[]))
SELECT h.subject_id,
       SUM(h.accelerator_seconds),
       SUM(h.energy_wh),
       SUM((2 * l.tdp_w::bigint * COALESCE(h.utilization_bp, 10000) * h.accelerator_seconds_without_energy
            + 36000000) / 72000000),
       COALESCE(SUM(LEAST(h.accelerator_seconds, l.accelerators::bigint * 3600))
                FILTER (WHERE h.hour_start < %(elapsed_end)s), 0)
FROM metering_usagehour h JOIN l USING (subject_id)
WHERE h.subject_kind = 'lease' AND h.hour_start >= %(start)s AND h.hour_start < %(end)s
GROUP BY h.subject_id
"""


def lease_period_usage(
    *, lease_public_ids: Collection[UUID], window: Window, now: datetime | None = None
) -> dict[UUID, LeasePeriodUsage]:
    """Usage of leases over a billing window, for billing: three set-based queries whatever the lease count.

    Availability is delivered / contracted over the window's elapsed hours (before the current hour), the
    delivered seconds of each hour capped at the lease's capacity; the SLA credit follows the tiers of
    ``METERING_SLA_CREDIT_TIERS`` (metering/reconcile.py). Dispute credits count in the window in which the
    dispute was resolved (an issued invoice is never edited; a later credit lands on the next one).
    Unknown and cancelled leases are absent from the answer.
    """
    if not lease_public_ids:
        return {}
    now = now or utcnow()
    terms = market_selectors.lease_terms(public_ids=lease_public_ids)
    if not terms:
        return {}
    elapsed_end = min(window.end, floor_hour(now))
    hour_floor = floor_hour(window.start)
    with connection.cursor() as cursor:
        cursor.execute(
            _PERIOD_SQL,
            {
                "ids": [t.public_id for t in terms],
                "acc": [t.accelerators for t in terms],
                "tdp": [t.tdp_w or 0 for t in terms],
                "elapsed_end": elapsed_end,
                "start": hour_floor,
                "end": window.end,
            },
        )
        usage = {row[0]: row[1:] for row in cursor.fetchall()}
    credits = dict(
        Dispute.objects.filter(
            lease__public_id__in=[t.public_id for t in terms],
            status=DisputeStatus.RESOLVED_BUYER,
            resolved_at__gte=window.start,
            resolved_at__lt=window.end,
        )
        .values("lease__public_id")
        .annotate(total=Sum("credited_accelerator_seconds"))
        .values_list("lease__public_id", "total")
    )
    tiers = sla_tiers()
    answer: dict[UUID, LeasePeriodUsage] = {}
    for t in terms:
        lease_window = Window(t.start, t.end)
        delivered, measured, estimated, elapsed_delivered = usage.get(t.public_id, (0, 0, 0, 0))
        elapsed_contracted = (
            reconcile.contracted_seconds(t.accelerators, lease_window, Window(window.start, elapsed_end))
            if elapsed_end > window.start
            else 0
        )
        avail = reconcile.availability(int(elapsed_delivered), elapsed_contracted)
        answer[t.public_id] = LeasePeriodUsage(
            lease_public_id=t.public_id,
            contracted_accelerator_seconds=reconcile.contracted_seconds(t.accelerators, lease_window, window),
            delivered_accelerator_seconds=int(delivered),
            energy_wh=int(measured) + int(estimated),
            energy_estimated_wh=int(estimated),
            availability=avail,
            sla_credit_ratio=reconcile.sla_credit_ratio(avail, tiers),
            dispute_credit_accelerator_seconds=int(credits.get(t.public_id, 0) or 0),
        )
    return answer


@dataclass(frozen=True)
class ContractPeriodUsage:
    contract_public_id: UUID
    tokens_in: int
    tokens_out: int
    requests: int


def contract_period_usage(*, contract_public_ids: Collection[UUID], window: Window) -> dict[UUID, ContractPeriodUsage]:
    """Token usage of contracts over a window (hours starting inside it), one query; contracts without usage
    in the window are answered with zeros."""
    if not contract_public_ids:
        return {}
    wanted = [UUID(str(c)) for c in contract_public_ids]
    rows = (
        UsageHour.objects.filter(
            subject_kind="contract",
            subject_id__in=wanted,
            hour_start__gte=floor_hour(window.start),
            hour_start__lt=window.end,
        )
        .values("subject_id")
        .annotate(tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"), requests=Sum("requests"))
    )
    found: dict[UUID, dict[str, Any]] = {row["subject_id"]: dict(row) for row in rows}
    empty: dict[str, Any] = {}
    return {
        cid: ContractPeriodUsage(
            contract_public_id=cid,
            tokens_in=int(found.get(cid, empty).get("tokens_in") or 0),
            tokens_out=int(found.get(cid, empty).get("tokens_out") or 0),
            requests=int(found.get(cid, empty).get("requests") or 0),
        )
        for cid in wanted
    }


@dataclass(frozen=True)
class LeaseUsageView:
    """A lease's usage page: hourly reconciliation and the summary over the shown window."""

    lease: Any
    window: Window
    summary: reconcile.PeriodSummary
    hours: list[reconcile.HourReconciliation]
    disputes: list[Dispute]
    tiers: tuple[tuple[Decimal, Decimal], ...]
    observed_seconds: dict[datetime, int]  # the buyer's own measurement by hour, where it posted one

    def attention(self, limit: int = 48) -> list[tuple[reconcile.HourReconciliation, int | None, bool]]:
        """Hours worth a look: no usage, over-reported, or the buyer observed clearly less than the provider
        reported (by more than ``METERING_OBSERVATION_GAP`` of the contracted seconds)."""
        gap_ratio = Decimal(settings.METERING_OBSERVATION_GAP)
        rows = []
        for hour in self.hours:
            observed = self.observed_seconds.get(hour.hour_start)
            below = (
                observed is not None
                and hour.delivered_accelerator_seconds - observed > gap_ratio * hour.contracted_accelerator_seconds
            )
            if hour.missing or hour.over_reported or below:
                rows.append((hour, observed, below))
        return rows[:limit]


def lease_usage(organization: Organization, lease_public_id: UUID, *, now: datetime | None = None) -> LeaseUsageView:
    """The usage of a lease the organisation bought or sold (404 otherwise), hour by hour, computed live from
    the rollups (the page shows at most the lease's last 31 days)."""
    now = now or utcnow()
    lease = market_selectors.lease_get(organization, lease_public_id)
    end = lease.end
    start = max(lease.start, end - timedelta(days=31))
    window = Window(start, end)
    rows = UsageHour.objects.filter(
        subject_kind="lease", subject_id=lease.public_id, hour_start__gte=floor_hour(start), hour_start__lt=end
    ).values_list(
        "hour_start", "accelerator_seconds", "energy_wh", "accelerator_seconds_without_energy", "utilization_bp",
        "record_count",
    )  # fmt: skip
    usage = {row[0]: reconcile.HourUsage(*row[1:]) for row in rows}
    tiers = sla_tiers()
    summary, hours = reconcile.reconcile_period(
        accelerators=lease.accelerators,
        lease=Window(lease.start, lease.end),
        window=window,
        usage_by_hour=usage,
        tdp_w=lease.pool.accelerator_model.tdp_w,
        now=now,
        tiers=tiers,
    )
    disputes = list(Dispute.objects.filter(lease=lease).order_by("-created_at"))
    observed = dict(
        UsageObservation.objects.filter(lease=lease, hour_start__gte=floor_hour(start), hour_start__lt=end).values_list(
            "hour_start", "accelerator_seconds"
        )
    )
    return LeaseUsageView(
        lease=lease,
        window=window,
        summary=summary,
        hours=hours,
        disputes=disputes,
        tiers=tiers,
        observed_seconds=observed,
    )


def dispute_list(organization: Organization) -> QuerySet[Dispute]:
    """Disputes of leases the organisation bought or sold."""
    return (
        Dispute.objects.filter(Q(buyer=organization) | Q(provider=organization))
        .select_related("lease__pool", "buyer", "provider")
        .order_by("-created_at", "-id")
    )


def dispute_get(organization: Organization, public_id: UUID) -> Dispute:
    return get_object_or_404(dispute_list(organization), public_id=public_id)


def usage_observation_list(organization: Organization) -> QuerySet[UsageObservation]:
    """The buyer's own observations, newest hours first."""
    return (
        UsageObservation.objects.filter(buyer=organization)
        .select_related("lease", "dispute")
        .order_by("-hour_start", "lease_id")
    )


def dispute_observation_hours(dispute: Dispute) -> list[tuple[datetime, int, int]]:
    """(hour, buyer observed, provider reported) accelerator-seconds for the observations behind a dispute."""
    observed = list(dispute.usage_observations.order_by("hour_start").values_list("hour_start", "accelerator_seconds"))
    reported = dict(
        UsageHour.objects.filter(
            subject_kind="lease", subject_id=dispute.lease.public_id, hour_start__in=[h for h, _s in observed]
        ).values_list("hour_start", "accelerator_seconds")
    )
    return [(hour, seconds, reported.get(hour, 0)) for hour, seconds in observed]


USAGE_SERIES_SPANS = {"day": 30, "hour": 48}  # buckets shown


@dataclass(frozen=True)
class UsageBucket:
    start: datetime  # in the current time zone
    accelerator_seconds: int
    energy_wh: int
    utilization_bp: int | None  # weighted by accelerator-seconds
    tokens_in: int
    tokens_out: int
    requests: int = 0


def organization_usage_series(
    organization: Organization, *, by: str = "day", now: datetime | None = None
) -> list[UsageBucket]:
    """The organisation's metered usage (all its leases and token contracts, bought or sold) per day of the last
    30 days or per hour of the last 48, in the current time zone; empty buckets included."""
    rows = UsageHour.objects.all()
    if organization.kind == "provider":
        rows = rows.filter(provider=organization)
    else:
        rows = rows.filter(
            Q(subject_id__in=market_selectors.lease_list(organization).values("public_id"))
            | Q(subject_id__in=market_token_selectors.token_contract_list(organization).values("public_id"))
        )
    return _usage_series(rows, by=by, now=now)


def _usage_series(rows: QuerySet[UsageHour], *, by: str, now: datetime | None) -> list[UsageBucket]:
    if by not in USAGE_SERIES_SPANS:
        raise ValueError(by)
    zone = timezone.get_current_timezone()
    now = timezone.localtime(now or utcnow(), zone)
    if by == "day":
        step = timedelta(days=1)
        last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        step = timedelta(hours=1)
        last = now.replace(minute=0, second=0, microsecond=0)
    first = last - (USAGE_SERIES_SPANS[by] - 1) * step
    rows = rows.filter(hour_start__gte=first, hour_start__lt=last + step)
    trunc = TruncDay if by == "day" else TruncHour
    totals = {
        row["bucket"]: row
        for row in rows.annotate(bucket=trunc("hour_start", tzinfo=zone))
        .values("bucket")
        .annotate(
            seconds=Sum("accelerator_seconds"),
            energy=Sum("energy_wh"),
            weighted=Sum(F("utilization_bp") * F("accelerator_seconds")),
            weighted_seconds=Sum("accelerator_seconds", filter=Q(utilization_bp__isnull=False)),
            tokens_in=Sum("tokens_in"),
            tokens_out=Sum("tokens_out"),
            requests=Sum("requests"),
        )
    }
    series = []
    start = first
    while start <= last:
        row = totals.get(start)
        if row is None:
            series.append(UsageBucket(start, 0, 0, None, 0, 0))
        else:
            weighted_seconds = row["weighted_seconds"] or 0
            series.append(
                UsageBucket(
                    start,
                    int(row["seconds"]),
                    int(row["energy"]),
                    round(row["weighted"] / weighted_seconds) if weighted_seconds else None,
                    int(row["tokens_in"]),
                    int(row["tokens_out"]),
                    int(row["requests"]),
                )
            )
        start = timezone.localtime(start + step, zone)  # across DST changes too
    return series


@dataclass(frozen=True)
class ContractUsageView:
    """A token contract's usage page: tokens per day or hour, and this month's use against the monthly volume."""

    contract: Any
    series: list[UsageBucket]
    month_start: datetime
    month_tokens: int  # input + output tokens since the start of the current UTC month
    month_requests: int

    @property
    def month_share(self) -> Decimal:
        return Decimal(self.month_tokens) / Decimal(self.contract.monthly_tokens)

    @property
    def over_volume(self) -> bool:
        return self.month_tokens > self.contract.monthly_tokens


def contract_usage(
    organization: Organization, contract_public_id: UUID, *, by: str = "day", now: datetime | None = None
) -> ContractUsageView:
    """The usage of a token contract the organisation bought or sold (404 otherwise)."""
    now = now or utcnow()
    contract = market_token_selectors.token_contract_get(organization, contract_public_id)
    rows = UsageHour.objects.filter(subject_kind="contract", subject_id=contract.public_id)
    month = month_start(now)
    totals = rows.filter(hour_start__gte=month).aggregate(
        tokens=Sum(F("tokens_in") + F("tokens_out")), requests=Sum("requests")
    )
    return ContractUsageView(
        contract=contract,
        series=_usage_series(rows, by=by, now=now),
        month_start=month,
        month_tokens=int(totals["tokens"] or 0),
        month_requests=int(totals["requests"] or 0),
    )


@dataclass(frozen=True)
class EvidenceBatch:
    public_id: UUID  # the verification link's id
    received_at: datetime
    records: int  # of this subject in the window


@dataclass(frozen=True)
class SubjectEvidence:
    """The metered usage behind one lease or token contract over a window, and the signed batches it came in."""

    subject_id: str
    subject_kind: str
    accelerator_seconds: int
    tokens: int
    energy_wh: int
    record_count: int
    batches: list[EvidenceBatch]  # newest first, at most the limit asked for
    batch_count: int


def usage_evidence(
    *, subject_ids: Collection[str], window: Window | None = None, batches_per_subject: int = 20
) -> list[SubjectEvidence]:
    """For a voucher issuer or auditor: per subject, the rolled-up usage in the window (all time without one) and
    the signed batches that carry its records, each of which anyone can re-verify (``batch_verification``)."""
    ids = [str(i) for i in subject_ids]
    if not ids:
        return []
    hours = UsageHour.objects.filter(subject_id__in=ids)
    records = UsageRecord.objects.filter(subject_id__in=ids)
    if window is not None:
        hours = hours.filter(hour_start__gte=floor_hour(window.start), hour_start__lt=window.end)
        records = records.filter(window_start__gte=window.start, window_start__lt=window.end)
    totals: dict[str, dict[str, Any]] = {
        str(row["subject_id"]): dict(row)
        for row in hours.values("subject_id", "subject_kind").annotate(
            seconds=Sum("accelerator_seconds"),
            tokens=Sum(F("tokens_in") + F("tokens_out")),
            energy=Sum("energy_wh"),
            count=Sum("record_count"),
        )
    }
    per_batch = list(records.values("subject_id", "batch_id").annotate(records=Count("record_id")))
    batch_ids = {row["batch_id"] for row in per_batch}
    batches = {
        pk: (public_id, received_at)
        for pk, public_id, received_at in SignedBatch.objects.filter(pk__in=batch_ids).values_list(
            "pk", "public_id", "received_at"
        )
    }
    by_subject: dict[str, list[EvidenceBatch]] = {}
    for row in per_batch:
        if row["batch_id"] in batches:
            public_id, received_at = batches[row["batch_id"]]
            by_subject.setdefault(str(row["subject_id"]), []).append(
                EvidenceBatch(public_id, received_at, row["records"])
            )
    out = []
    for subject in ids:
        total = totals.get(subject, {})
        found = sorted(by_subject.get(subject, []), key=lambda b: b.received_at, reverse=True)
        out.append(
            SubjectEvidence(
                subject_id=subject,
                subject_kind=total.get("subject_kind", ""),
                accelerator_seconds=int(total.get("seconds") or 0),
                tokens=int(total.get("tokens") or 0),
                energy_wh=int(total.get("energy") or 0),
                record_count=int(total.get("count") or 0),
                batches=found[:batches_per_subject],
                batch_count=len(found),
            )
        )
    return out

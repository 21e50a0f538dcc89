"""Writes of the metering app."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, OuterRef, Subquery, Sum
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from psycopg.types.json import Jsonb

from accounts.models import Organization, OrganizationKind
from core.audit import audit_record
from core.errors import ApplicationError, FieldError, ValidationFailed
from core.ids import new_public_id
from core.timeutils import HOUR, Window, floor_hour, month_start, utcnow
from marketplace import selectors as market_selectors
from marketplace import services as market_services
from marketplace.models import Lease, LeaseStatus
from metering import ingest, reconcile, rollup, selectors, signing
from metering.models import (
    Dispute,
    DisputeStatus,
    LeaseHourReconciliation,
    ReconciliationCursor,
    SigningKey,
    UsageDirtyHour,
    UsageHour,
    UsageObservation,
)


def signing_key_register(
    *, organization: Organization, name: str, public_key: str, actor: Any = None, actor_label: str | None = None
) -> SigningKey:
    """Register a provider's Ed25519 public key (PEM or base64 of the 32 raw bytes)."""
    errors: list[FieldError] = []
    if organization.kind != OrganizationKind.PROVIDER:
        raise ApplicationError("not_a_provider", _("Only providers report usage."), status_code=403)
    if not name.strip():
        errors.append(FieldError("required", _("This field is required."), "name"))
    raw = b""
    try:
        raw = signing.parse_public_key(public_key)
    except signing.KeyFormatError:
        errors.append(
            FieldError(
                "invalid_public_key",
                _("Paste an Ed25519 public key: PEM, or base64 of its 32 bytes (suanli-agent keygen prints it)."),
                "public_key",
            )
        )
    if errors:
        raise ValidationFailed(errors)
    fingerprint = signing.fingerprint(raw)
    try:
        with transaction.atomic():
            key = SigningKey.objects.create(
                organization=organization,
                name=name.strip(),
                public_key=raw,
                fingerprint=fingerprint,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            audit_record(
                action="signing_key.registered",
                target=key,
                actor=actor,
                actor_label=actor_label,
                organization=organization,
                after={"name": key.name, "fingerprint": fingerprint},
            )
    except IntegrityError:
        raise ApplicationError(
            "duplicate_public_key", _("This key is registered already."), field="public_key", status_code=409
        ) from None
    return key


def signing_key_revoke(
    *, organization: Organization, key: SigningKey, actor: Any = None, actor_label: str | None = None
) -> None:
    """Revoke a key: requests signed with it are refused from now on; batches it signed stay verifiable."""
    with transaction.atomic():
        updated = SigningKey.objects.filter(pk=key.pk, organization=organization, revoked_at__isnull=True).update(
            revoked_at=utcnow()
        )
        if updated:
            audit_record(
                action="signing_key.revoked",
                target=key,
                actor=actor,
                actor_label=actor_label,
                organization=organization,
                before={"fingerprint": key.fingerprint, "revoked": False},
                after={"revoked": True},
            )


# --- Usage ingest ------------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: frozen costs an object.__setattr__ per field, up to 10,000 times a request
class RecordResult:
    record_id: str | None
    status: str  # accepted | duplicate | conflict | rejected
    code: str | None = None
    field: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class IngestResult:
    batch_id: int
    results: list[RecordResult]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)


# The per-record columns a batch COPYs into the staging table; provider, batch and receipt time are the same for
# every row of a batch and are added by the set-based insert (less text to build, send and parse per row).
_COPY_COLUMNS = (
    "record_id",
    "subject_kind",
    "subject_id",
    "window_start",
    "window_end",
    "accelerator_seconds",
    "utilization_bp",
    "energy_wh",
    "tokens_in",
    "tokens_out",
    "requests",
    "content_hash",
)


def usage_batch_ingest(
    *,
    organization: Organization,
    method: str,
    path: str,
    body: bytes,
    content_type: str,
    timestamp: str | None,
    signature: str | None,
    subjects: Mapping[str, ingest.LeaseFacts] | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Verify, validate and store a signed batch of usage records; each record's outcome in input order.

    Accepted records are committed before this returns (the API answers 2xx only after that); the batch is one
    transaction, so it is never half-applied. Record ids are deduplicated per provider by the primary key of
    metering_usagerecordkey, which also serialises concurrent batches carrying the same id.
    """
    key = selectors.signing_key_for_request(
        organization, timestamp=timestamp, signature=signature, method=method, path=path, body=body
    )
    try:
        raw_records = ingest.parse_batch(body, content_type)
    except ingest.BatchError as error:
        raise ApplicationError(error.code, str(error), status_code=error.status) from None
    now = now or utcnow()
    if subjects is None:
        wanted = {str(r.get("lease_id") or r.get("contract_id")) for r in raw_records if isinstance(r, dict)}
        subjects = selectors.subject_facts(organization, wanted)
    closed_before = selectors.usage_closed_before(now)

    verdicts = ingest.validate_batch(
        raw_records, provider_id=organization.pk, subjects=subjects, now=now, closed_before=closed_before
    )
    results: list[RecordResult | None] = [None] * len(verdicts)
    fresh: dict[str, tuple[int, ingest.Record]] = {}  # record_id -> (position, record), first occurrence
    repeats: list[tuple[int, ingest.Record]] = []  # the same id again inside this batch
    for position, verdict in enumerate(verdicts):
        if isinstance(verdict, ingest.Rejection):
            results[position] = RecordResult(
                verdict.record_id, "rejected", verdict.code, verdict.field, verdict.message
            )
        elif verdict.record_id in fresh:
            repeats.append((position, verdict))
        else:
            fresh[verdict.record_id] = (position, verdict)

    with transaction.atomic():
        batch_id, not_stored = _store(organization.pk, now, [record for _pos, record in fresh.values()])
        stored_hashes = _stored_hashes(organization.pk, not_stored)
        earlier = set(not_stored)
        for record_id, (position, record) in fresh.items():
            if record_id not in earlier:
                results[position] = RecordResult(record_id, "accepted")
            else:
                status = "duplicate" if stored_hashes.get(record_id) == record.content_hash else "conflict"
                results[position] = _repeat_result(record_id, status)
        for position, record in repeats:
            # Judged against what is stored: the version stored earlier, else this batch's first copy.
            stored = stored_hashes.get(record.record_id) or fresh[record.record_id][1].content_hash
            same = stored == record.content_hash
            results[position] = _repeat_result(record.record_id, "duplicate" if same else "conflict")
        final = [r for r in results if r is not None]
        # The batch row last, in the same transaction, with its outcome (no second write of the row). The hours the
        # accepted records touch were marked for the rollup by _store, in this transaction too.
        batch_id = _batch_insert(
            batch_id=batch_id,
            organization_id=organization.pk,
            signing_key_id=key.pk,
            method=method,
            path=path,
            timestamp=int(timestamp or 0),
            signature=signature or "",
            content_type=content_type[:100],
            body=body,
            records_total=len(raw_records),
            records_accepted=len(fresh) - len(earlier),
            outcome=_outcome(final),
        )
    return IngestResult(batch_id=batch_id, results=final)


def _outcome(results: list[RecordResult]) -> dict[str, Any]:
    """Counts per status, and rejections per code, for the provider's ingest health page."""
    statuses = Counter(r.status for r in results)
    rejected = Counter(r.code for r in results if r.status == "rejected" and r.code)
    return {
        **{status: statuses[status] for status in ("accepted", "duplicate", "conflict")},
        "rejected": dict(rejected),
    }


def _repeat_result(record_id: str, status: str) -> RecordResult:
    if status == "duplicate":
        return RecordResult(record_id, "duplicate")
    return RecordResult(
        record_id,
        "conflict",
        "conflict",
        "record_id",
        "This record_id was sent before with other content; the first version stands.",
    )


def _batch_insert(
    *,
    batch_id: int | None,
    organization_id: int,
    signing_key_id: int,
    method: str,
    path: str,
    timestamp: int,
    signature: str,
    content_type: str,
    body: bytes,
    records_total: int,
    records_accepted: int,
    outcome: dict[str, Any],
) -> int:
    """Keep the signed batch (a SignedBatch row) under the id its records carry; returns that id.

    Raw SQL through a server-side-binding cursor, so that the body travels as one binary parameter: the ORM's
    client-side binding would escape it to hex text twice its size, which the server then decodes (about a third of
    the cost of a whole 1,000-record batch)."""
    # wrap_database_errors: psycopg's errors become Django's, and a broken connection is marked for closing.
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            _BATCH_INSERT,
            [
                batch_id,
                new_public_id(),
                organization_id,
                signing_key_id,
                utcnow(),
                method,
                path,
                timestamp,
                signature,
                content_type,
                body,
                signing.body_sha256(body),
                records_total,
                records_accepted,
                Jsonb(outcome),
            ],
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


_NEXT_BATCH_ID = "nextval(pg_get_serial_sequence('metering_signedbatch', 'id'))"
_BATCH_INSERT = f"""
INSERT INTO metering_signedbatch (id, public_id, organization_id, signing_key_id, received_at, method, path,
    "timestamp", signature, content_type, body, body_sha256, records_total, records_accepted, outcome)
VALUES (coalesce(%s, {_NEXT_BATCH_ID}), %s, %s, %s, %s, %s, %s, %s, %s, %s, %b, %s, %s, %s, %s)
RETURNING id
"""  # noqa: S608 - no user input in the text, only parameters

# The staging table: a temporary table of this connection, emptied at every commit. Created when missing (a
# rolled-back transaction takes a table it created with it) and emptied first (ingest may run twice inside one
# enclosing transaction), in one round trip.
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS metering_usage_stage (
    record_id text NOT NULL,
    subject_kind varchar(8) NOT NULL,
    subject_id uuid NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    accelerator_seconds bigint NOT NULL,
    utilization_bp integer,
    energy_wh bigint,
    tokens_in bigint NOT NULL,
    tokens_out bigint NOT NULL,
    requests bigint NOT NULL,
    content_hash char(64) NOT NULL
) ON COMMIT DELETE ROWS;
DELETE FROM metering_usage_stage;
"""

# One statement from the staging table: the new ids claim their key (ON CONFLICT: an id stored before, or being
# stored by a concurrent batch, is skipped, after that batch commits or rolls back), in record_id order (index
# locality, and concurrent batches sharing ids take their key locks in one order); only the records that claimed
# their key are stored, under the batch id taken here; the hours they touch are marked for the rollup (UTC hours:
# date_bin on the epoch is date_trunc('hour', ..., 'UTC') without a time-zone lookup per row). Answers the batch id
# and the ids that were not stored (their verdict is duplicate or conflict).
_STORE = f"""
WITH batch AS (SELECT {_NEXT_BATCH_ID} AS id)
, new_keys AS (
    INSERT INTO metering_usagerecordkey (provider_id, record_id, content_hash, window_start)
    SELECT %(provider)s, record_id, content_hash, window_start FROM metering_usage_stage ORDER BY record_id
    ON CONFLICT (provider_id, record_id) DO NOTHING
    RETURNING record_id
)
, stored AS (
    INSERT INTO metering_usagerecord (provider_id, batch_id, received_at, {", ".join(_COPY_COLUMNS)})
    SELECT %(provider)s, (SELECT id FROM batch), %(received_at)s, {", ".join("s." + c for c in _COPY_COLUMNS)}
    FROM metering_usage_stage s JOIN new_keys USING (record_id)
    RETURNING subject_id, window_start, window_end
)
, dirty AS (
    INSERT INTO metering_usagedirtyhour (subject_id, hour_start)
    SELECT subject_id, date_bin('1 hour', window_start, timestamptz 'epoch') FROM stored
    UNION
    SELECT subject_id, date_bin('1 hour', window_end - interval '1 microsecond', timestamptz 'epoch') FROM stored
)
SELECT (SELECT id FROM batch),
       ARRAY(SELECT record_id FROM metering_usage_stage EXCEPT SELECT record_id FROM new_keys)
"""  # noqa: S608 - fixed column names, no user input


def _store(provider_id: int, received_at: datetime, records: list[ingest.Record]) -> tuple[int | None, list[str]]:
    """COPY into the staging table, then store the records whose id is new; returns the batch id the stored
    records carry (None: nothing to store, the batch row takes the next id) and the ids not stored.

    The records' ids must be distinct (usage_batch_ingest judges repeats inside a batch itself): a repeat would
    be stored twice."""
    if not records:
        return None, []
    with connection.cursor() as cursor:
        cursor.execute(_STAGE)
        with cursor.cursor.copy(f"COPY metering_usage_stage ({', '.join(_COPY_COLUMNS)}) FROM STDIN") as copy:
            copy.write(_copy_text(records))
        cursor.execute(_STORE, {"provider": provider_id, "received_at": received_at})
        row = cursor.fetchone()
    return int(row[0]), list(row[1])


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(records: list[ingest.Record]) -> str:
    """The rows in COPY's text format, built in one go (psycopg's per-row adaptation is the slower path).

    Only record_id is free text from the client: it is escaped when it holds a backslash or a control character;
    the other fields are numbers, UUIDs, fixed words, hex digests and ISO timestamps, which need no escaping. NUL
    cannot reach here: validation refuses record ids containing it (PostgreSQL's text type cannot hold it)."""
    stamps: dict[datetime, str] = {}  # the records of a batch share a few window bounds: format each once
    escapes = _COPY_ESCAPES
    null = "\\N"
    lines: list[str] = []
    append = lines.append
    for r in records:
        start = stamps.get(r.window_start) or stamps.setdefault(r.window_start, r.window_start.isoformat())
        end = stamps.get(r.window_end) or stamps.setdefault(r.window_end, r.window_end.isoformat())
        record_id = r.record_id
        if "\\" in record_id or not record_id.isprintable():
            record_id = record_id.translate(escapes)
        utilisation, energy = r.utilization_bp, r.energy_wh
        append(
            f"{record_id}\t{r.subject_kind}\t{r.subject_id}\t{start}\t{end}\t{r.accelerator_seconds}\t"
            f"{null if utilisation is None else utilisation}\t{null if energy is None else energy}\t"
            f"{r.tokens_in}\t{r.tokens_out}\t{r.requests}\t{r.content_hash}\n"
        )
    return "".join(lines)


def usage_rollup_dirty(*, limit: int = 20_000, now: datetime | None = None) -> int:
    """Roll up the hours marked by ingests since the last run, then reconcile them: the periodic job.

    Ingest appends (subject, hour) marks in the transaction that stores the records, so a mark is visible only
    with its records. A run takes a set of marks (skipping those another run holds), recomputes those hours from
    the committed records, and deletes exactly the marks it took: a mark added meanwhile stays for the next run.
    Idempotent and order-free like usage_rollup_hours. Returns the number of marks consumed (0: nothing to do).
    """
    with transaction.atomic():
        marks = list(
            UsageDirtyHour.objects.select_for_update(skip_locked=True)
            .order_by("id")
            .values_list("id", "subject_id", "hour_start")[:limit]
        )
        if not marks:
            return 0
        by_subject: dict[str, set[datetime]] = {}
        for _id, mark_subject, hour in marks:
            by_subject.setdefault(str(mark_subject), set()).add(hour)
        for subject, hours in by_subject.items():
            usage_rollup_hours(subject_id=subject, hours=sorted(hours))
        span_start = min(h for hours in by_subject.values() for h in hours)
        span_end = max(h for hours in by_subject.values() for h in hours) + HOUR
        lease_hours_reconcile(window=Window(span_start, span_end), lease_public_ids=list(by_subject), now=now)
        UsageDirtyHour.objects.filter(id__in=[m[0] for m in marks]).delete()
    return len(marks)


def _stored_hashes(provider_id: int, record_ids: list[str]) -> dict[str, str]:
    if not record_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT record_id, content_hash FROM metering_usagerecordkey"
            " WHERE provider_id = %s AND record_id = ANY(%s)",
            [provider_id, record_ids],
        )
        return {record_id: content for record_id, content in cursor.fetchall()}


def usage_partitions_ensure(*, months_ahead: int = 2, now: datetime | None = None) -> list[str]:
    """Create the monthly partitions of metering_usagerecord from this month to ``months_ahead`` ahead."""
    start = month_start(now or utcnow())
    created = []
    with connection.cursor() as cursor:
        for _ in range(months_ahead + 1):
            end = (start + timedelta(days=32)).replace(day=1)
            name = f"metering_usagerecord_{start:%Y%m}"
            cursor.execute("SELECT to_regclass(%s)", [name])
            if cursor.fetchone()[0] is None:
                cursor.execute(
                    f"CREATE TABLE {name} PARTITION OF metering_usagerecord FOR VALUES FROM (%s) TO (%s)",
                    [start, end],
                )
                created.append(name)
            start = end
    return created


# Records inside one hour (nearly all of them) are summed by PostgreSQL, hour by hour; the few straddling two
# hours are split by rollup.rollup (largest remainder), and both are added up: the same totals as rolling every
# record up in Python (tests/metering/test_ingest_stateful.py compares them), ~10x faster.
_WHOLE_HOURS = """
SELECT date_trunc('hour', window_start, 'UTC'), min(provider_id), min(subject_kind), count(*),
       sum(accelerator_seconds), coalesce(sum(energy_wh), 0), count(*) FILTER (WHERE energy_wh IS NULL),
       coalesce(sum(accelerator_seconds) FILTER (WHERE energy_wh IS NULL), 0),
       sum(tokens_in), sum(tokens_out), sum(requests),
       coalesce(sum(utilization_bp::numeric * accelerator_seconds) FILTER (WHERE utilization_bp IS NOT NULL), 0),
       coalesce(sum(accelerator_seconds) FILTER (WHERE utilization_bp IS NOT NULL), 0)
FROM metering_usagerecord
WHERE subject_id = %s AND window_start >= %s AND window_start < %s
  AND date_trunc('hour', window_start, 'UTC') = date_trunc('hour', window_end - interval '1 microsecond', 'UTC')
GROUP BY 1
"""
_STRADDLING = """
SELECT provider_id, subject_kind, window_start, window_end, accelerator_seconds, utilization_bp, energy_wh,
       tokens_in, tokens_out, requests
FROM metering_usagerecord
WHERE subject_id = %s AND window_start >= %s AND window_start < %s
  AND date_trunc('hour', window_start, 'UTC') <> date_trunc('hour', window_end - interval '1 microsecond', 'UTC')
"""


def _hour_totals(
    subject_id: str, hour_starts: list[datetime]
) -> tuple[dict[datetime, rollup.HourTotals], int, str] | None:
    """Totals of the given hours of one subject (hours without records are absent), its provider and kind;
    None when those hours hold no record."""
    wanted = set(hour_starts)
    totals: dict[datetime, rollup.HourTotals] = {}
    provider_id: int | None = None
    subject_kind: str | None = None
    with connection.cursor() as cursor:
        cursor.execute(_WHOLE_HOURS, [subject_id, hour_starts[0], hour_starts[-1] + HOUR])
        for hour, provider, kind, count, *sums in cursor.fetchall():
            if hour not in wanted:
                continue
            provider_id, subject_kind = provider, kind
            seconds, energy, without, seconds_without, tokens_in, tokens_out, requests, weight, weighted = map(
                int, sums
            )
            totals[hour] = rollup.HourTotals(
                record_count=count,
                accelerator_seconds=seconds,
                energy_wh=energy,
                records_without_energy=without,
                accelerator_seconds_without_energy=seconds_without,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                requests=requests,
                _utilization_weight=weight,
                _utilization_seconds=weighted,
            )
        # A straddling record starts at most an hour before the first wanted hour.
        cursor.execute(_STRADDLING, [subject_id, hour_starts[0] - HOUR, hour_starts[-1] + HOUR])
        straddling = cursor.fetchall()
    if straddling:
        provider_id, subject_kind = straddling[0][0], straddling[0][1]
        for hour, part in rollup.rollup(rollup.RawUsage(*row[2:]) for row in straddling).items():
            if hour not in wanted:
                continue
            whole = totals.setdefault(hour, rollup.HourTotals())
            for name in _TOTAL_FIELDS:
                setattr(whole, name, getattr(whole, name) + getattr(part, name))
    if not totals or provider_id is None or subject_kind is None:
        return None
    return totals, provider_id, subject_kind


_TOTAL_FIELDS = (
    "record_count",
    "accelerator_seconds",
    "energy_wh",
    "records_without_energy",
    "accelerator_seconds_without_energy",
    "tokens_in",
    "tokens_out",
    "requests",
    "_utilization_weight",
    "_utilization_seconds",
)


def usage_rollup_hours(*, subject_id: str, hours: list[datetime]) -> int:
    """Recompute the hourly rollups of one lease or contract for the given hours, from its raw records.

    Idempotent and order-free: it reads whatever is committed and overwrites those hours. A per-subject
    advisory lock makes concurrent recomputations run one after the other, so an older snapshot never
    overwrites a newer one (each statement after the lock sees everything committed before it).
    """
    if not hours:
        return 0
    hour_starts = sorted({h.replace(minute=0, second=0, microsecond=0) for h in hours})
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"usage-rollup:{subject_id}"])
        found = _hour_totals(subject_id, hour_starts)
        if found is None:
            return 0
        totals, provider_id, subject_kind = found
        rows = [
            UsageHour(
                provider_id=provider_id,
                subject_kind=subject_kind,
                subject_id=subject_id,
                hour_start=hour,
                record_count=t.record_count,
                accelerator_seconds=t.accelerator_seconds,
                energy_wh=t.energy_wh,
                records_without_energy=t.records_without_energy,
                accelerator_seconds_without_energy=t.accelerator_seconds_without_energy,
                utilization_bp=t.utilization_bp,
                tokens_in=t.tokens_in,
                tokens_out=t.tokens_out,
                requests=t.requests,
            )
            for hour, t in totals.items()
            if hour in hour_starts
        ]
        UsageHour.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["subject_id", "hour_start"],
            update_fields=[
                "record_count",
                "accelerator_seconds",
                "energy_wh",
                "records_without_energy",
                "accelerator_seconds_without_energy",
                "utilization_bp",
                "tokens_in",
                "tokens_out",
                "requests",
                "updated_at",
            ],
        )
    return len(rows)


# --- Reconciliation ------------------------------------------------------------------------------------

_RECON_FIELDS = [
    "provider",
    "buyer",
    "contracted_accelerator_seconds",
    "delivered_accelerator_seconds",
    "energy_wh",
    "energy_estimated_wh",
    "utilization_bp",
    "over_reported",
    "missing",
    "reconciled_at",
]


def lease_hours_reconcile(
    *, window: Window, lease_public_ids: Collection[str] | None = None, now: datetime | None = None
) -> int:
    """Reconcile every elapsed lease-hour inside the window (of these leases, or of all overlapping leases).

    Set-based: one query for the leases, one for their rollups, one upsert. Idempotent: it overwrites the rows
    of those hours with what the rollups say now, so running it twice or late changes nothing more.
    """
    now = now or utcnow()
    end = min(window.end, floor_hour(now))
    if end <= window.start:
        return 0
    span = Window(floor_hour(window.start), end)
    terms = market_selectors.lease_terms(public_ids=lease_public_ids, overlapping=(span.start, span.end))
    if not terms:
        return 0
    usage: dict[tuple[Any, datetime], reconcile.HourUsage] = {}
    for subject_id, hour, seconds, energy, without, util, count in UsageHour.objects.filter(
        subject_kind="lease",
        subject_id__in=[t.public_id for t in terms],
        hour_start__gte=span.start,
        hour_start__lt=span.end,
    ).values_list(
        "subject_id", "hour_start", "accelerator_seconds", "energy_wh", "accelerator_seconds_without_energy",
        "utilization_bp", "record_count",
    ):  # fmt: skip
        usage[(subject_id, hour)] = reconcile.HourUsage(seconds, energy, without, util, count)
    rows = []
    for t in terms:
        lease_window = Window(t.start, t.end)
        covered = lease_window.intersection(span)
        if covered is None:
            continue
        hour = floor_hour(covered.start)
        while hour < covered.end:
            result = reconcile.reconcile_hour(
                hour_start=hour,
                accelerators=t.accelerators,
                lease=lease_window,
                usage=usage.get((t.public_id, hour)),
                tdp_w=t.tdp_w,
            )
            rows.append(
                LeaseHourReconciliation(
                    lease_id=t.public_id,
                    provider_id=t.provider_id,
                    buyer_id=t.buyer_id,
                    hour_start=hour,
                    contracted_accelerator_seconds=result.contracted_accelerator_seconds,
                    delivered_accelerator_seconds=result.delivered_accelerator_seconds,
                    energy_wh=result.energy_wh,
                    energy_estimated_wh=result.energy_estimated_wh,
                    utilization_bp=result.utilization_bp,
                    over_reported=result.over_reported,
                    missing=result.missing,
                )
            )
            hour += HOUR
    for start in range(0, len(rows), 5000):
        LeaseHourReconciliation.objects.bulk_create(
            rows[start : start + 5000],
            update_conflicts=True,
            unique_fields=["lease_id", "hour_start"],
            update_fields=_RECON_FIELDS,
        )
    return len(rows)


RECONCILE_CURSOR = "lease-hours"


def lease_hours_reconcile_due(*, now: datetime | None = None, max_hours: int = 24 * 7) -> int:
    """The periodic job: reconcile closed hours since the cursor (at most ``max_hours`` per run), always
    including the hours still inside the grace period (late records may change them), then open the disputes
    buyers' observations call for. Idempotent."""
    now = now or utcnow()
    until = floor_hour(now)
    with transaction.atomic():
        cursor, _created = ReconciliationCursor.objects.select_for_update().get_or_create(
            name=RECONCILE_CURSOR, defaults={"reconciled_until": until - timedelta(days=2)}
        )
        start = min(cursor.reconciled_until, until - settings.METERING_CLOSE_GRACE - HOUR)
        end = min(until, start + timedelta(hours=max_hours))
        if end <= start:
            return 0
        count = lease_hours_reconcile(window=Window(start, end), now=now)
        cursor.reconciled_until = max(cursor.reconciled_until, end)
        cursor.save(update_fields=["reconciled_until"])
    # Provider reports that arrived after the buyer's observations may now exceed them.
    usage_observation_disputes_open(now=now)
    return count


# --- Disputes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisputeInput:
    period_start: datetime | None
    period_end: datetime | None
    reason: str
    observed_downtime_minutes: int | None = None
    observations: str = ""


DISPUTABLE_STATUSES = (LeaseStatus.ACTIVE, LeaseStatus.COMPLETED)


def _range_seconds(lease: Lease, start: datetime, end: datetime) -> tuple[int, int]:
    """(contracted, delivered) accelerator-seconds of a lease over [start, end)."""
    contracted = reconcile.contracted_seconds(lease.accelerators, Window(lease.start, lease.end), Window(start, end))
    delivered = (
        UsageHour.objects.filter(
            subject_kind="lease", subject_id=lease.public_id, hour_start__gte=floor_hour(start), hour_start__lt=end
        ).aggregate(total=Sum("accelerator_seconds"))["total"]
        or 0
    )
    return contracted, int(delivered)


def dispute_open(
    *,
    organization: Organization,
    lease: Lease,
    data: DisputeInput,
    actor: Any = None,
    actor_label: str | None = None,
    now: datetime | None = None,
) -> Dispute:
    """The buyer contests a lease's usage over whole hours that have started; the lease becomes ``disputed``.

    The claim is the buyer's measured downtime x the lease's accelerators when given, else the shortfall the
    rollups show (contracted - delivered), never more than the contracted seconds of the range.
    """
    if organization.kind != OrganizationKind.BUYER:
        raise ApplicationError("not_a_buyer", _("Only the buyer of a lease opens a dispute."), status_code=403)
    if lease.buyer_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    now = now or utcnow()
    errors: list[FieldError] = []
    start, end = data.period_start, data.period_end
    if start is None:
        errors.append(FieldError("required", _("This field is required."), "period_start"))
    if end is None:
        errors.append(FieldError("required", _("This field is required."), "period_end"))
    if start is not None and end is not None:
        if end <= start:
            errors.append(FieldError("invalid_period", _("The end must be after the start."), "period_end"))
        elif start < lease.start or end > lease.end:
            errors.append(FieldError("outside_lease", _("The hours must lie inside the lease."), "period_start"))
        elif start >= now:
            errors.append(FieldError("in_future", _("You can only dispute hours that have started."), "period_start"))
        elif start != floor_hour(start) or end != floor_hour(end):
            errors.append(FieldError("whole_hours", _("Give whole hours."), "period_start"))
    if not data.reason.strip():
        errors.append(FieldError("required", _("This field is required."), "reason"))
    if data.observed_downtime_minutes is not None and data.observed_downtime_minutes < 0:
        errors.append(FieldError("negative_value", _("Cannot be negative."), "observed_downtime_minutes"))
    if errors:
        raise ValidationFailed(errors)
    assert start is not None  # checked above
    assert end is not None
    if lease.status not in DISPUTABLE_STATUSES:
        raise ApplicationError(
            "lease_not_disputable",
            _("Only an active or completed lease can be disputed; this one is %(status)s.")
            % {"status": lease.get_status_display()},
            status_code=409,
        )
    contracted, delivered = _range_seconds(lease, start, end)
    if data.observed_downtime_minutes is not None:
        claimed = data.observed_downtime_minutes * 60 * lease.accelerators
    else:
        claimed = contracted - delivered
    claimed = max(0, min(claimed, contracted))
    try:
        dispute = _dispute_create(
            lease=lease,
            period=Window(start, end),
            reason=data.reason.strip()[:2000],
            observed_downtime_minutes=data.observed_downtime_minutes,
            observations=data.observations.strip()[:4000],
            claimed=claimed,
            delivered=delivered,
            actor=actor,
            actor_label=actor_label,
        )
    except IntegrityError:
        raise ApplicationError("dispute_open", _("This lease has an open dispute already."), status_code=409) from None
    return dispute


def _dispute_create(
    *,
    lease: Lease,
    period: Window,
    reason: str,
    claimed: int,
    delivered: int,
    observed_downtime_minutes: int | None = None,
    observations: str = "",
    automatic: bool = False,
    actor: Any = None,
    actor_label: str | None = None,
) -> Dispute:
    """Create the dispute and mark the lease ``disputed``, audited; IntegrityError when one is open already."""
    with transaction.atomic():
        dispute = Dispute.objects.create(
            lease=lease,
            buyer_id=lease.buyer_id,
            provider_id=lease.provider_id,
            period_start=period.start,
            period_end=period.end,
            reason=reason,
            observed_downtime_minutes=observed_downtime_minutes,
            observations=observations,
            claimed_accelerator_seconds=claimed,
            lease_status_before=lease.status,
            opened_automatically=automatic,
            opened_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        market_services.lease_set_disputed(lease=lease, disputed=True, actor=actor, note="dispute opened")
        audit_record(
            action="dispute.opened",
            target=dispute,
            actor=actor,
            actor_label=actor_label,
            organization=lease.buyer,
            after={
                "lease": str(lease.public_id),
                "period": [period.start.isoformat(), period.end.isoformat()],
                "claimed_accelerator_seconds": claimed,
                "delivered_accelerator_seconds": delivered,
                "automatic": automatic,
            },
        )
    return dispute


def dispute_respond(
    *, organization: Organization, dispute: Dispute, response: str, actor: Any = None, now: datetime | None = None
) -> Dispute:
    """The provider answers an open dispute (again if it likes: the latest answer stands)."""
    if dispute.provider_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    if not response.strip():
        raise ValidationFailed([FieldError("required", _("This field is required."), "provider_response")])
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().get(pk=dispute.pk)
        if not dispute.is_open:
            raise ApplicationError("dispute_closed", _("This dispute is resolved."), status_code=409)
        before = {"status": dispute.status}
        dispute.provider_response = response.strip()[:4000]
        dispute.responded_at = now or utcnow()
        dispute.status = DisputeStatus.ANSWERED
        dispute.save(update_fields=["provider_response", "responded_at", "status"])
        audit_record(
            action="dispute.answered",
            target=dispute,
            actor=actor,
            organization=organization,
            before=before,
            after={"status": dispute.status},
        )
    return dispute


def dispute_resolve(
    *,
    dispute: Dispute,
    actor: Any,
    buyer_favour: bool,
    credited_accelerator_seconds: int | None = None,
    note: str = "",
    now: datetime | None = None,
) -> Dispute:
    """Platform staff close a dispute. In the buyer's favour the credit defaults to the claim and never exceeds
    the contracted seconds of the disputed hours; billing deducts it in the period of the resolution. The lease
    gets its status back."""
    if not getattr(actor, "is_staff", False):
        raise ApplicationError("staff_only", _("Only platform staff resolve disputes."), status_code=403)
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().select_related("lease").get(pk=dispute.pk)
        if not dispute.is_open:
            raise ApplicationError("dispute_closed", _("This dispute is resolved."), status_code=409)
        contracted, _delivered = _range_seconds(dispute.lease, dispute.period_start, dispute.period_end)
        credit = 0
        if buyer_favour:
            wanted = (
                dispute.claimed_accelerator_seconds
                if credited_accelerator_seconds is None
                else credited_accelerator_seconds
            )
            if wanted < 0:
                raise ValidationFailed(
                    [FieldError("negative_value", _("Cannot be negative."), "credited_accelerator_seconds")]
                )
            credit = min(wanted, contracted)
        before = {"status": dispute.status}
        dispute.status = DisputeStatus.RESOLVED_BUYER if buyer_favour else DisputeStatus.RESOLVED_PROVIDER
        dispute.credited_accelerator_seconds = credit
        dispute.resolution_note = note.strip()[:2000]
        dispute.resolved_at = now or utcnow()
        dispute.resolved_by = actor if getattr(actor, "is_authenticated", False) else None
        dispute.save(
            update_fields=["status", "credited_accelerator_seconds", "resolution_note", "resolved_at", "resolved_by"]
        )
        market_services.lease_set_disputed(
            lease=dispute.lease,
            disputed=False,
            restore_status=dispute.lease_status_before,
            actor=actor,
            note="dispute resolved",
        )
        audit_record(
            action="dispute.resolved",
            target=dispute,
            actor=actor,
            organization=dispute.buyer,
            before=before,
            after={"status": dispute.status, "credited_accelerator_seconds": credit},
        )
    return dispute


# --- Buyers' own observations --------------------------------------------------------------------------

OBSERVATIONS_PER_REQUEST = 1000
OBSERVABLE_STATUSES = (LeaseStatus.ACTIVE, LeaseStatus.COMPLETED, LeaseStatus.DISPUTED)


@dataclass(frozen=True)
class ObservationInput:
    lease_id: str
    hour_start: datetime | None
    accelerator_seconds: int | None
    note: str = ""


@dataclass(frozen=True)
class ObservationResult:
    lease_id: str
    hour_start: datetime | None
    status: str  # accepted | duplicate | conflict | rejected
    code: str = ""
    field: str = ""
    message: str = ""


@dataclass(frozen=True)
class ObservationOutcome:
    results: list[ObservationResult]
    disputes: list[Dispute]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)


def _observation_error(
    item: ObservationInput, code: str, field: str, message: Any, status: str = "rejected"
) -> ObservationResult:
    return ObservationResult(item.lease_id, item.hour_start, status, code, field, str(message))


def _observation_check(item: ObservationInput, lease: Lease | None, now: datetime) -> ObservationResult | None:
    """The reason to refuse one observation, or None."""
    if lease is None:
        return _observation_error(item, "unknown_lease", "lease_id", _("No lease of yours has this id."))
    if lease.status not in OBSERVABLE_STATUSES:
        return _observation_error(
            item, "lease_not_active", "lease_id", _("Only an active or completed lease takes observations.")
        )
    hour = item.hour_start
    if hour is None:
        return _observation_error(item, "required", "hour_start", _("This field is required."))
    if hour != floor_hour(hour):
        return _observation_error(item, "whole_hours", "hour_start", _("Give the start of a whole UTC hour."))
    if not (floor_hour(lease.start) <= hour < lease.end):
        return _observation_error(item, "outside_lease", "hour_start", _("The hour must lie inside the lease."))
    if hour + HOUR > now:
        return _observation_error(item, "in_future", "hour_start", _("Observe an hour once it has ended."))
    seconds = item.accelerator_seconds
    if seconds is None:
        return _observation_error(item, "required", "accelerator_seconds", _("This field is required."))
    if seconds < 0:
        return _observation_error(item, "negative_value", "accelerator_seconds", _("Cannot be negative."))
    contracted = reconcile.contracted_seconds(
        lease.accelerators, Window(lease.start, lease.end), Window(hour, hour + HOUR)
    )
    if seconds > contracted:
        return _observation_error(
            item,
            "above_contracted",
            "accelerator_seconds",
            _("More than the %(seconds)s accelerator-seconds the lease has in this hour.") % {"seconds": contracted},
        )
    return None


def usage_observations_submit(
    *,
    organization: Organization,
    observations: list[ObservationInput],
    actor: Any = None,
    actor_label: str | None = None,
    now: datetime | None = None,
) -> ObservationOutcome:
    """The buyer posts what it measured itself, per lease-hour (idempotent by lease and hour). Valid ones are
    stored in one transaction; then every lease whose provider reported clearly more than the buyer saw gets a
    dispute over those hours (``usage_observation_disputes_open``)."""
    if organization.kind != OrganizationKind.BUYER:
        raise ApplicationError("not_a_buyer", _("Only the buyer of a lease posts observations."), status_code=403)
    if not observations:
        raise ValidationFailed([FieldError("required", _("Send at least one observation."), "observations")])
    if len(observations) > OBSERVATIONS_PER_REQUEST:
        raise ValidationFailed(
            [
                FieldError(
                    "too_many",
                    _("At most %(count)s observations a request.") % {"count": OBSERVATIONS_PER_REQUEST},
                    "observations",
                )
            ]
        )
    now = now or utcnow()
    leases = {
        str(lease.public_id): lease
        for lease in Lease.objects.filter(
            buyer=organization, public_id__in=[o.lease_id for o in observations if _is_uuid(o.lease_id)]
        )
    }
    results: list[ObservationResult | None] = []
    valid: dict[tuple[int, datetime], tuple[int, ObservationInput]] = {}
    for index, item in enumerate(observations):
        lease = leases.get(str(item.lease_id))
        refusal = _observation_check(item, lease, now)
        if refusal is None:
            assert lease is not None  # checked above
            assert item.hour_start is not None
            key = (lease.pk, item.hour_start)
            if key in valid:
                refusal = _observation_error(
                    item, "duplicate_in_request", "hour_start", _("This hour appears twice in the request.")
                )
            else:
                valid[key] = (index, item)
        results.append(refusal)
    with transaction.atomic():
        # Lock the leases so that concurrent requests observing the same hours see each other's rows.
        list(Lease.objects.select_for_update().filter(pk__in={k[0] for k in valid}).order_by("pk").values_list("pk"))
        existing = {
            (lease_pk, hour): (seconds, note)
            for lease_pk, hour, seconds, note in UsageObservation.objects.filter(
                lease_id__in={k[0] for k in valid}, hour_start__in={k[1] for k in valid}
            ).values_list("lease_id", "hour_start", "accelerator_seconds", "note")
        }
        fresh = []
        for key, (index, item) in valid.items():
            note = item.note.strip()[:500]
            if key in existing:
                if existing[key] == (item.accelerator_seconds, note):
                    results[index] = ObservationResult(item.lease_id, item.hour_start, "duplicate")
                else:
                    results[index] = _observation_error(
                        item,
                        "conflict",
                        "accelerator_seconds",
                        _("This hour was observed already with another figure."),
                        status="conflict",
                    )
                continue
            assert item.accelerator_seconds is not None  # checked in _observation_check
            fresh.append(
                UsageObservation(
                    lease_id=key[0],
                    buyer=organization,
                    hour_start=key[1],
                    accelerator_seconds=item.accelerator_seconds,
                    note=note,
                )
            )
            results[index] = ObservationResult(item.lease_id, item.hour_start, "accepted")
        UsageObservation.objects.bulk_create(fresh)
        if fresh:
            audit_record(
                action="usage_observations.submitted",
                target=organization,
                actor=actor,
                actor_label=actor_label,
                organization=organization,
                after={"accepted": len(fresh)},
            )
    disputes = usage_observation_disputes_open(lease_pks={k[0] for k in valid}, now=now) if valid else []
    return ObservationOutcome([r for r in results if r is not None], disputes)


def _is_uuid(value: str) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return True


OBSERVATION_LOOKBACK = timedelta(days=31)  # the periodic check looks at hours this recent


def usage_observation_disputes_open(
    *, lease_pks: Collection[int] | None = None, now: datetime | None = None
) -> list[Dispute]:
    """Open a dispute on every lease whose provider reported more accelerator-seconds than the buyer observed, by
    more than ``METERING_OBSERVATION_GAP`` of the contracted seconds, in hours no dispute covered yet.

    The dispute spans the first to the last such hour and claims the summed gap. Leases with an open dispute
    wait for its resolution. Idempotent: the hours are linked to the dispute they opened. Without ``lease_pks``
    (the periodic job) only hours of the last ``OBSERVATION_LOOKBACK`` are looked at.
    """
    now = now or utcnow()
    gap_ratio = Decimal(settings.METERING_OBSERVATION_GAP)
    reported = UsageHour.objects.filter(
        subject_kind="lease", subject_id=OuterRef("lease__public_id"), hour_start=OuterRef("hour_start")
    ).values("accelerator_seconds")[:1]
    candidates = (
        UsageObservation.objects.filter(dispute__isnull=True, lease__status__in=DISPUTABLE_STATUSES)
        .annotate(reported=Subquery(reported))
        .filter(reported__gt=F("accelerator_seconds"))
        .select_related("lease")
        .order_by("lease_id", "hour_start")
    )
    if lease_pks is not None:
        candidates = candidates.filter(lease_id__in=list(lease_pks))
    else:
        candidates = candidates.filter(hour_start__gte=now - OBSERVATION_LOOKBACK)
    flagged: dict[int, list[tuple[UsageObservation, int]]] = {}
    for observation in candidates:
        lease = observation.lease
        hour = observation.hour_start
        contracted = reconcile.contracted_seconds(
            lease.accelerators, Window(lease.start, lease.end), Window(hour, hour + HOUR)
        )
        gap = observation.reported - observation.accelerator_seconds
        if gap > gap_ratio * contracted:
            flagged.setdefault(lease.pk, []).append((observation, gap))
    covered = {
        (lease_pk, start, end)
        for lease_pk, start, end in Dispute.objects.filter(lease_id__in=list(flagged)).values_list(
            "lease_id", "period_start", "period_end"
        )
    }
    opened = []
    for lease_pk, candidate_hours in flagged.items():
        hours = [
            (o, gap)
            for o, gap in candidate_hours
            if not any(pk == lease_pk and start <= o.hour_start < end for pk, start, end in covered)
        ]
        if not hours:
            continue
        lease = hours[0][0].lease
        period = Window(hours[0][0].hour_start, hours[-1][0].hour_start + HOUR)
        contracted, delivered = _range_seconds(lease, period.start, period.end)
        claimed = min(sum(gap for _o, gap in hours), contracted)
        with translation.override(settings.LANGUAGE_CODE):
            reason = _(
                "Opened automatically: in %(hours)s hours the provider reported %(gap)s accelerator-seconds more "
                "than the buyer observed (more than %(percent)s%% of the contracted seconds)."
            ) % {"hours": len(hours), "gap": claimed, "percent": (gap_ratio * 100).normalize()}
            reason = str(reason)
        try:
            with transaction.atomic():
                dispute = _dispute_create(
                    lease=lease,
                    period=period,
                    reason=reason,
                    claimed=claimed,
                    delivered=delivered,
                    automatic=True,
                    actor_label="metering:observations",
                )
                UsageObservation.objects.filter(
                    lease_id=lease_pk, hour_start__gte=period.start, hour_start__lt=period.end, dispute__isnull=True
                ).update(dispute=dispute)
        except IntegrityError:
            continue  # someone opened one meanwhile; these hours wait for its resolution
        opened.append(dispute)
    return opened

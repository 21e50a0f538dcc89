"""Writes of the metering app."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, OrganizationKind
from core.audit import audit_record
from core.errors import ApplicationError, FieldError, ValidationFailed
from core.outbox import outbox_enqueue
from core.timeutils import HOUR, Window, month_start, utcnow
from metering import ingest, rollup, selectors, signing
from metering.models import SignedBatch, SigningKey, UsageHour, UsageRecord


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


@dataclass(frozen=True)
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


_COPY_COLUMNS = (
    "provider_id",
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
    "batch_id",
    "received_at",
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

    results: list[RecordResult | None] = []
    fresh: dict[str, tuple[int, ingest.Record]] = {}  # record_id -> (position, record), first occurrence
    repeats: list[tuple[int, ingest.Record]] = []  # the same id again inside this batch
    for position, raw in enumerate(raw_records):
        verdict = ingest.validate_record(
            raw, provider_id=organization.pk, subjects=subjects, now=now, closed_before=closed_before
        )
        if isinstance(verdict, ingest.Rejection):
            results.append(RecordResult(verdict.record_id, "rejected", verdict.code, verdict.field, verdict.message))
            continue
        results.append(None)
        if verdict.record_id in fresh:
            repeats.append((position, verdict))
        else:
            fresh[verdict.record_id] = (position, verdict)

    with transaction.atomic():
        batch = SignedBatch.objects.create(
            organization=organization,
            signing_key=key,
            method=method,
            path=path,
            timestamp=int(timestamp or 0),
            signature=signature or "",
            content_type=content_type[:100],
            body=body,
            body_sha256=signing.body_sha256(body),
            records_total=len(raw_records),
            records_accepted=0,
        )
        accepted = _store(organization.pk, batch.pk, now, [record for _pos, record in fresh.values()])
        stored_hashes = _stored_hashes(organization.pk, [rid for rid in fresh if rid not in accepted])
        for record_id, (position, record) in fresh.items():
            if record_id in accepted:
                results[position] = RecordResult(record_id, "accepted")
            else:
                status = "duplicate" if stored_hashes.get(record_id) == record.content_hash else "conflict"
                results[position] = _repeat_result(record_id, status)
        for position, record in repeats:
            first = fresh[record.record_id][1]
            same = first.content_hash == record.content_hash
            results[position] = _repeat_result(record.record_id, "duplicate" if same else "conflict")
        final = [r for r in results if r is not None]
        SignedBatch.objects.filter(pk=batch.pk).update(records_accepted=len(accepted), outcome=_outcome(final))
        if accepted:
            new_records = [record for record_id, (_pos, record) in fresh.items() if record_id in accepted]
            outbox_enqueue("metering.tasks.usage_rollup", kwargs={"hours_by_subject": _affected_hours(new_records)})
    return IngestResult(batch_id=batch.pk, results=final)


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


def _store(provider_id: int, batch_id: int, received_at: datetime, records: list[ingest.Record]) -> set[str]:
    """COPY into a staging table, then keep the records whose id is new: returns their ids."""
    if not records:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS metering_usage_staging"
            " (LIKE metering_usagerecord INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE metering_usage_staging")  # empty even inside an enclosing transaction
        columns = ", ".join(_COPY_COLUMNS)
        with cursor.cursor.copy(f"COPY metering_usage_staging ({columns}) FROM STDIN") as copy:
            for r in records:
                copy.write_row(
                    (
                        provider_id,
                        r.record_id,
                        r.subject_kind,
                        r.subject_id,
                        r.window_start,
                        r.window_end,
                        r.accelerator_seconds,
                        r.utilization_bp,
                        r.energy_wh,
                        r.tokens_in,
                        r.tokens_out,
                        r.requests,
                        r.content_hash,
                        batch_id,
                        received_at,
                    )
                )
        cursor.execute(
            f"""
            WITH new_keys AS (
                INSERT INTO metering_usagerecordkey (provider_id, record_id, content_hash, window_start)
                SELECT provider_id, record_id, content_hash, window_start FROM metering_usage_staging
                ON CONFLICT (provider_id, record_id) DO NOTHING
                RETURNING record_id
            )
            INSERT INTO metering_usagerecord ({columns})
            SELECT {", ".join("s." + c for c in _COPY_COLUMNS)}
            FROM metering_usage_staging s JOIN new_keys USING (record_id)
            RETURNING record_id
            """  # noqa: S608 - fixed column names, no user input
        )
        return {row[0] for row in cursor.fetchall()}


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
        records = list(
            UsageRecord.objects.filter(
                subject_id=subject_id,
                window_start__lt=hour_starts[-1] + HOUR,
                window_end__gt=hour_starts[0],
            ).values_list(
                "provider_id",
                "subject_kind",
                "window_start",
                "window_end",
                "accelerator_seconds",
                "utilization_bp",
                "energy_wh",
                "tokens_in",
                "tokens_out",
                "requests",
            )
        )
        if not records:
            return 0
        provider_id, subject_kind = records[0][0], records[0][1]
        totals = rollup.rollup(rollup.RawUsage(*row[2:]) for row in records)
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
                "utilization_bp",
                "tokens_in",
                "tokens_out",
                "requests",
                "updated_at",
            ],
        )
    return len(rows)


def _affected_hours(records: list[ingest.Record]) -> dict[str, list[str]]:
    """subject id -> ISO hour starts touched by these records (the rollup task's arguments, JSON-ready)."""
    touched: dict[str, set[datetime]] = {}
    for record in records:
        hours = touched.setdefault(record.subject_id, set())
        for piece in Window(record.window_start, record.window_end).hours():
            hours.add(piece.start.replace(minute=0, second=0, microsecond=0))
    return {subject: sorted(h.isoformat() for h in hours) for subject, hours in touched.items()}

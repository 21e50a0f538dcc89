"""Models of the metering app (DESIGN.md §4.4)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from core.ids import PublicIdModel, new_public_id


class SigningKey(PublicIdModel):
    """An Ed25519 public key a provider registered; its agent signs usage reports with the private half."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="signing_keys")
    name = models.CharField(_("name"), max_length=100)
    public_key = models.BinaryField(_("public key"), max_length=32)
    fingerprint = models.CharField(_("fingerprint"), max_length=60)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "fingerprint"], name="signing_key_unique_per_org"),
            models.CheckConstraint(condition=Q(fingerprint__startswith="SHA256:"), name="signing_key_fingerprint"),
        ]
        ordering = ["revoked_at", "-created_at"]
        verbose_name = _("signing key")
        verbose_name_plural = _("signing keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class SignedBatch(models.Model):
    """A usage batch exactly as the provider sent and signed it: anyone with the public key can re-verify it.

    ``public_id`` is the batch's verification link (an unguessable capability the provider shares with its buyer or
    a voucher issuer); ``outcome`` summarises the per-record results for the provider's ingest health page.
    """

    public_id = models.UUIDField(default=new_public_id, unique=True, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    signing_key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="batches")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=200)
    timestamp = models.BigIntegerField(help_text="X-Suanli-Timestamp, unix seconds")
    signature = models.CharField(max_length=120)
    content_type = models.CharField(max_length=100)
    body = models.BinaryField()
    body_sha256 = models.CharField(max_length=64)
    records_total = models.PositiveIntegerField()
    records_accepted = models.PositiveIntegerField()
    # {"accepted": n, "duplicate": n, "conflict": n, "rejected": {code: n}}
    outcome = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["organization", "-received_at"])]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.records_accepted}/{self.records_total})"


class UsageRecord(models.Model):
    """One accepted usage record. The table is partitioned by month of window_start (migration 0002), so
    Django does not manage it; ingest writes it in bulk with SQL (metering/services.py). Record ids are unique per
    provider through UsageRecordKey (a partitioned table cannot hold that constraint without the partition key):
    ingest stores a record only in the statement where its id claimed that key. The table itself has no primary key
    (migration 0008: a second unique index guarded nothing more); ``pk`` names a row for the ORM only."""

    pk = models.CompositePrimaryKey("provider_id", "record_id", "window_start")
    provider = models.ForeignKey(
        "accounts.Organization", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    record_id = models.TextField()
    subject_kind = models.CharField(max_length=8)
    subject_id = models.UUIDField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    accelerator_seconds = models.BigIntegerField()
    utilization_bp = models.IntegerField(null=True)
    energy_wh = models.BigIntegerField(null=True)
    tokens_in = models.BigIntegerField()
    tokens_out = models.BigIntegerField()
    requests = models.BigIntegerField()
    content_hash = models.CharField(max_length=64)
    batch = models.ForeignKey(SignedBatch, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    received_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "metering_usagerecord"

    def __str__(self) -> str:
        return self.record_id


class UsageRecordKey(models.Model):
    """The idempotency key of a usage record: (provider, record_id) once, with its content hash."""

    pk = models.CompositePrimaryKey("provider_id", "record_id")
    provider = models.ForeignKey(
        "accounts.Organization", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    record_id = models.TextField()
    content_hash = models.CharField(max_length=64)
    window_start = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "metering_usagerecordkey"

    def __str__(self) -> str:
        return self.record_id


class UsageHour(models.Model):
    """Hourly rollup of usage per lease or token contract, recomputed from the raw records of that hour.

    A record straddling an hour boundary is split between the hours by its seconds in each (exact integer
    split, core.money.allocate_minor), so sums over hours equal sums over records.
    """

    provider = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    subject_kind = models.CharField(max_length=8)
    subject_id = models.UUIDField()
    hour_start = models.DateTimeField()
    record_count = models.PositiveIntegerField()
    accelerator_seconds = models.BigIntegerField()
    energy_wh = models.BigIntegerField(help_text="measured IT energy of the records that reported it")
    records_without_energy = models.PositiveIntegerField()
    accelerator_seconds_without_energy = models.BigIntegerField(
        default=0, help_text="accelerator-seconds of the records without energy_wh (estimated from TDP)"
    )
    utilization_bp = models.IntegerField(null=True, help_text="average weighted by accelerator-seconds")
    tokens_in = models.BigIntegerField()
    tokens_out = models.BigIntegerField()
    requests = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subject_id", "hour_start"], name="usage_hour_unique")]
        indexes = [models.Index(fields=["provider", "hour_start"])]

    def __str__(self) -> str:
        return f"{self.subject_id} {self.hour_start:%Y-%m-%d %H}:00"


class UsageDirtyHour(models.Model):
    """A (lease or contract, hour) whose rollup is stale: ingest appends one per touched hour in the transaction
    that stores the records; the periodic rollup (metering.services.usage_rollup_dirty) consumes them."""

    subject_id = models.UUIDField()
    hour_start = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.subject_id} {self.hour_start:%Y-%m-%d %H}:00"


class LeaseHourReconciliation(models.Model):
    """One closed lease-hour reconciled against the contract (metering/reconcile.py), recomputed idempotently."""

    lease_id = models.UUIDField(help_text="the lease's public id")
    provider = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    buyer = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    hour_start = models.DateTimeField()
    contracted_accelerator_seconds = models.BigIntegerField()
    delivered_accelerator_seconds = models.BigIntegerField()
    energy_wh = models.BigIntegerField(help_text="measured + estimated")
    energy_estimated_wh = models.BigIntegerField()
    utilization_bp = models.IntegerField(null=True)
    over_reported = models.BooleanField()
    missing = models.BooleanField()
    reconciled_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["lease_id", "hour_start"], name="lease_hour_recon_unique")]
        indexes = [
            models.Index(fields=["provider", "hour_start"]),
            models.Index(fields=["buyer", "hour_start"]),
        ]
        verbose_name = _("lease-hour reconciliation")
        verbose_name_plural = _("lease-hour reconciliations")

    def __str__(self) -> str:
        return f"{self.lease_id} {self.hour_start:%Y-%m-%d %H}:00"


class ReconciliationCursor(models.Model):
    """How far the periodic reconciliation has gone: hours before ``reconciled_until`` are done (one row)."""

    name = models.CharField(max_length=40, unique=True)
    reconciled_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.reconciled_until:%Y-%m-%d %H}:00"


class DisputeStatus(models.TextChoices):
    OPEN = "open", _("Open")
    ANSWERED = "answered", _("Provider answered")
    RESOLVED_BUYER = "resolved_buyer", _("Resolved for the buyer")
    RESOLVED_PROVIDER = "resolved_provider", _("Resolved for the provider")


OPEN_DISPUTE_STATUSES = (DisputeStatus.OPEN, DisputeStatus.ANSWERED)


class Dispute(PublicIdModel):
    """A buyer contests the usage of a lease over a range of hours; platform staff resolve it.

    While a dispute is open the lease is ``disputed``; one open dispute per lease (partial unique constraint).
    A resolution in the buyer's favour credits accelerator-seconds, which billing deducts in the period of
    the resolution (metering.selectors.lease_period_usage).
    """

    lease = models.ForeignKey("marketplace.Lease", on_delete=models.PROTECT, related_name="disputes")
    buyer = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    provider = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField(_("from"))
    period_end = models.DateTimeField(_("until"))
    reason = models.TextField(_("reason"), max_length=2000)
    observed_downtime_minutes = models.PositiveIntegerField(_("downtime you measured (minutes)"), null=True, blank=True)
    observations = models.TextField(_("your observations"), max_length=4000, blank=True)
    claimed_accelerator_seconds = models.BigIntegerField(_("claimed accelerator-seconds"))
    status = models.CharField(max_length=20, choices=DisputeStatus.choices, default=DisputeStatus.OPEN)
    lease_status_before = models.CharField(max_length=12)
    provider_response = models.TextField(_("provider's response"), max_length=4000, blank=True)
    responded_at = models.DateTimeField(null=True, blank=True)
    resolution_note = models.TextField(_("resolution"), max_length=2000, blank=True)
    credited_accelerator_seconds = models.BigIntegerField(default=0)
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Opened by the platform because the buyer's observations differ from the provider's reports.
    opened_automatically = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lease"], condition=Q(status__in=["open", "answered"]), name="dispute_one_open_per_lease"
            ),
            models.CheckConstraint(condition=Q(period_end__gt=models.F("period_start")), name="dispute_period_order"),
            models.CheckConstraint(
                condition=Q(credited_accelerator_seconds__gte=0) & Q(claimed_accelerator_seconds__gte=0),
                name="dispute_seconds_non_negative",
            ),
        ]
        verbose_name = _("dispute")
        verbose_name_plural = _("disputes")

    def __str__(self) -> str:
        return f"dispute {self.public_id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_DISPUTE_STATUSES


class UsageObservation(models.Model):
    """What the buyer itself measured for one hour of a lease (accelerator-seconds it could use).

    Keyed by (lease, hour): posting the same hour again is a duplicate, or a conflict when the figure differs.
    When the provider's reports exceed it by more than ``METERING_OBSERVATION_GAP`` of the contracted seconds,
    the platform opens a dispute over those hours (``dispute``).
    """

    lease = models.ForeignKey("marketplace.Lease", on_delete=models.PROTECT, related_name="usage_observations")
    buyer = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    hour_start = models.DateTimeField(_("hour"))
    accelerator_seconds = models.BigIntegerField(_("observed accelerator-seconds"))
    note = models.CharField(_("note"), max_length=500, blank=True)
    dispute = models.ForeignKey(
        Dispute, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_observations"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["lease", "hour_start"]
        constraints = [
            models.UniqueConstraint(fields=["lease", "hour_start"], name="usage_observation_unique_hour"),
            models.CheckConstraint(condition=Q(accelerator_seconds__gte=0), name="usage_observation_non_negative"),
        ]
        verbose_name = _("usage observation")
        verbose_name_plural = _("usage observations")

    def __str__(self) -> str:
        return f"{self.lease_id} {self.hour_start:%Y-%m-%d %H}:00 {self.accelerator_seconds} s"

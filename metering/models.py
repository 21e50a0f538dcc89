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
    provider through UsageRecordKey (a partitioned table cannot hold that constraint without the partition key)."""

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

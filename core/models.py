"""Cross-cutting records: the append-only audit log, the transactional outbox, API idempotency keys."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from core.ids import PublicIdModel


class AuditLog(models.Model):
    """Who did what to which object, when, for which organisation, with the state before and after.

    Append-only: a database trigger (migration 0002) refuses UPDATE and DELETE. Users and organisations
    are deactivated, never deleted, so the foreign keys PROTECT.
    """

    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # "user:<email>", "api-key:<prefix>", "system:<task>": readable even without joins.
    actor_label = models.CharField(max_length=200)
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="audit_entries"
    )
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100)
    target_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-occurred_at"]),
            models.Index(fields=["target_type", "target_id"]),
        ]
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")

    def __str__(self) -> str:
        return (
            f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.target_type}:{self.target_id}"
        )


class OutboxMessage(PublicIdModel):
    """A Celery task recorded in the same transaction as the business change that calls for it.

    The relay publishes pending rows to the broker (task id = public_id) and marks them published. A broker
    that is down only delays the work: the row stays until a publish succeeds. When a worker has run the task
    (successfully or not) it marks the row completed; a row published but never completed (the worker was
    killed mid-task and the broker lost the message, as kombu's filesystem transport does) is published again
    after ``OUTBOX_REDELIVER_AFTER`` seconds. Delivery is at least once, so every task run through the outbox
    must be idempotent.
    """

    task_name = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["id"], name="outbox_pending_idx", condition=Q(published_at__isnull=True)),
            models.Index(
                fields=["published_at"],
                name="outbox_unfinished_idx",
                condition=Q(published_at__isnull=False, completed_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        state = "published" if self.published_at else "pending"
        return f"{self.task_name} ({state})"


class IdempotencyRecord(models.Model):
    """An API write made with an ``Idempotency-Key``: the first response is replayed for the same key."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    fingerprint = models.CharField(max_length=64)  # sha256 of method, path and body
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="idempotency_key_unique_per_org")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"

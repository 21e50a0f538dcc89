"""A Celery task for the outbox tests: idempotent, and leaves a row a test can look for."""

from __future__ import annotations

from celery import shared_task

from core.models import AuditLog

PING_ACTION = "test.outbox_ping"


@shared_task(name="tests.core.ping", ignore_result=True)
def ping(token: str) -> None:
    """Record that the worker ran the task for ``token`` (once, however often it is delivered)."""
    if not AuditLog.objects.filter(action=PING_ACTION, target_id=token).exists():
        AuditLog.objects.create(action=PING_ACTION, target_type="test", target_id=token, actor_label="system:test")

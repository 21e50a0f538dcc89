"""Transactional outbox: enqueue Celery work in the same transaction as the business change.

``outbox_enqueue`` writes a row; after commit it tries to publish at once. ``outbox_relay`` (run by Celery
beat every few seconds, or ``manage.py outbox_relay``) publishes whatever is still pending, so a broker that
was down or frozen loses nothing. A worker marks the row completed when the task has run
(``outbox_complete``, from Celery's ``task_postrun`` signal, see config/celery.py); a row published but not
completed after ``OUTBOX_REDELIVER_AFTER`` seconds is published again, so a worker killed mid-task loses
nothing either, even on a broker that forgets delivered messages (kombu's filesystem transport deletes a
message when a worker fetches it, so ``acks_late`` cannot bring it back). Publishing is at least once: tasks
must be idempotent.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from core.models import OutboxMessage
from core.timeutils import utcnow

logger = logging.getLogger(__name__)


def outbox_enqueue(
    task_name: str, *, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
) -> OutboxMessage:
    """Record a task to run once the surrounding transaction commits. Arguments must be JSON."""
    message = OutboxMessage.objects.create(task_name=task_name, args=args or [], kwargs=kwargs or {})
    # robust: the change has committed by then; a failure to publish now must not turn it into an error for
    # the caller (who would retry the business action). The row stays pending for the next relay.
    transaction.on_commit(lambda: _publish_after_commit(message.pk), robust=True)
    return message


# Monotonic time until which this process leaves publishing to the relay. A broker that is down or frozen
# costs a publish its socket timeouts; after one failure, the requests that follow commit at full speed and
# the beat relay (which still tries every time) delivers their work once the broker is back.
_publish_paused_until = 0.0


def _publish_after_commit(message_id: int) -> None:
    if time.monotonic() < _publish_paused_until:
        return
    outbox_relay(message_ids=[message_id])


def _pause_publishing(seconds: float) -> None:
    global _publish_paused_until
    _publish_paused_until = time.monotonic() + seconds


def outbox_publish_resume() -> None:
    """Publish on commit again at once (tests; the pause also ends by itself)."""
    _pause_publishing(0.0)


def _publish(message: OutboxMessage) -> None:
    from config.celery import app

    app.send_task(
        message.task_name,
        args=message.args,
        kwargs=message.kwargs,
        task_id=str(message.public_id),
        retry=True,
        retry_policy=settings.OUTBOX_PUBLISH_RETRY_POLICY,
    )


def outbox_relay(*, message_ids: list[int] | None = None, batch_size: int = 500) -> int:
    """Publish pending messages (all, or the given ones). Returns how many were published.

    Rows are claimed with FOR UPDATE SKIP LOCKED, so several relays never publish the same row at once.
    A publish failure keeps the row pending with the error; the next relay retries it.
    """
    published = 0
    redeliver_before = utcnow() - timedelta(seconds=settings.OUTBOX_REDELIVER_AFTER)
    while True:
        with transaction.atomic():
            pending = OutboxMessage.objects.select_for_update(skip_locked=True).filter(
                Q(published_at__isnull=True) | Q(published_at__lt=redeliver_before, completed_at__isnull=True)
            )
            if message_ids is not None:
                pending = pending.filter(pk__in=message_ids)
            batch = list(pending.order_by("id")[:batch_size])
            if not batch:
                return published
            for message in batch:
                message.attempts += 1
                try:
                    _publish(message)
                except Exception as exc:  # the broker is down: keep the row, try again later
                    _pause_publishing(settings.OUTBOX_PUBLISH_PAUSE_AFTER_FAILURE)
                    message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                    message.save(update_fields=["attempts", "last_error"])
                    logger.warning("outbox: could not publish %s: %s", message.task_name, message.last_error)
                    return published
                message.published_at = utcnow()
                message.last_error = ""
                message.save(update_fields=["attempts", "published_at", "last_error"])
                published += 1
        if message_ids is not None or len(batch) < batch_size:
            return published


def outbox_complete(task_id: str) -> bool:
    """Mark the row whose task has run (its id is the row's public id). False for tasks not from the outbox."""
    try:
        public_id = uuid.UUID(str(task_id))
    except ValueError:
        return False
    return (
        OutboxMessage.objects.filter(public_id=public_id, completed_at__isnull=True).update(completed_at=utcnow()) > 0
    )

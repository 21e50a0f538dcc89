"""Celery tasks for the fault-injection suite, loaded by the worker subprocesses (``celery worker -I``).

``slow_effect`` records each attempt (``fault.attempt``, not idempotent on purpose: the test counts runs), and
applies its effect (``fault.effect``) once per token however often it runs. Its first attempt sleeps before
or after the effect, so that a test can kill the worker mid-task on either side of it; a rerun does not.
"""

from __future__ import annotations

import time

from celery import shared_task
from django.db import connection, transaction

from core.models import AuditLog

ATTEMPT = "fault.attempt"
EFFECT = "fault.effect"


def _record(action: str, token: str) -> None:
    AuditLog.objects.create(action=action, target_type="fault-test", target_id=token, actor_label="system:fault")


@shared_task(name="tests.faults.slow_effect", ignore_result=True)
def slow_effect(token: str, sleep_before: float = 0.0, sleep_after: float = 0.0) -> None:
    _record(ATTEMPT, token)
    if AuditLog.objects.filter(action=ATTEMPT, target_id=token).count() > 1:
        sleep_before = sleep_after = 0.0  # a rerun: no need to wait for a kill any more
    time.sleep(sleep_before)
    with transaction.atomic():
        # The idempotency guard: one effect per token, even if two runs overlap (a redelivery while the
        # first run is still going).
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"fault-effect:{token}"])
        if not AuditLog.objects.filter(action=EFFECT, target_id=token).exists():
            _record(EFFECT, token)
    time.sleep(sleep_after)

"""A frozen broker (Redis under SIGSTOP) while business writes continue: nothing is lost or repeated.

A frozen broker is the nasty case: the kernel still accepts connections and buffers what is sent, nothing
answers. The outbox must keep every piece of work, a request must not hang on the broker, and once Redis
runs again every task must run with its effect once (a publish that timed out may still have reached Redis,
so the relay may deliver it twice: the task is idempotent).
"""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import transaction

from core.models import AuditLog, OutboxMessage
from core.outbox import outbox_enqueue, outbox_relay
from tests.faults.conftest import wait_for
from tests.faults.tasks import ATTEMPT, EFFECT

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASK = "tests.faults.slow_effect"
WRITES = 10


def count(action: str, token: str | None = None) -> int:
    rows = AuditLog.objects.filter(action=action)
    return rows.filter(target_id=token).count() if token else rows.count()


def test_a_frozen_redis_holds_no_request_for_long_and_loses_no_work(redis_broker, redis_workers, settings):
    settings.OUTBOX_REDELIVER_AFTER = 3600
    redis_workers.start()
    with transaction.atomic():  # the broker works: published at once
        warm_up = outbox_enqueue(TASK, args=["warm-up"])
    wait_for(lambda: OutboxMessage.objects.get(pk=warm_up.pk).completed_at is not None, what="the warm-up task")

    redis_broker.freeze()
    tokens = [uuid.uuid4().hex for _ in range(WRITES)]
    durations = []
    try:
        for token in tokens:
            started = time.monotonic()
            with transaction.atomic():  # a business change and its work, in one transaction
                AuditLog.objects.create(
                    action="fault.business", target_type="fault-test", target_id=token, actor_label="system:fault"
                )
                outbox_enqueue(TASK, args=[token])
            durations.append(time.monotonic() - started)
        assert AuditLog.objects.filter(action="fault.business", target_id__in=tokens).count() == WRITES
        rows = OutboxMessage.objects.filter(args__0__in=tokens)
        assert rows.count() == WRITES  # every business change committed with its work
        assert not rows.filter(published_at__isnull=False).exists()  # a timed-out publish is not "done"
        # The first write waits for the socket timeouts (publish and one retry), never forever; the others
        # leave publishing to the relay and commit at full speed.
        durations.sort()
        assert durations[-1] < 20, durations
        assert durations[-2] < 1, durations
    finally:
        redis_broker.thaw()

    assert outbox_relay() >= 1  # the beat relay publishes what is pending once Redis answers
    wait_for(
        lambda: not OutboxMessage.objects.filter(completed_at__isnull=True).exists(),
        timeout=90,
        what="the worker to run every task",
    )
    assert outbox_relay() == 0
    for token in tokens:
        assert count(ATTEMPT, token) >= 1
        assert count(EFFECT, token) == 1  # a timed-out publish that did reach Redis runs twice, its effect once

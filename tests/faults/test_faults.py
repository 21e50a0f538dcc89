"""Fault injection (``make faults``): workers killed mid-task and a broker outage lose no work and repeat none.

DESIGN.md §5: Celery runs with ``acks_late`` and ``task_reject_on_worker_lost``, work is enqueued through the
transactional outbox, and tasks are safe to run twice. These tests attack that promise with real worker
subprocesses on the embedded broker (kombu's filesystem transport), loopback and local processes only.

Finding behind the outbox's redelivery: the filesystem transport deletes a message when a worker fetches it,
so with it ``acks_late`` cannot bring back the task of a worker killed by SIGKILL (Redis would, but only after
its visibility timeout). The outbox therefore marks a row completed when a worker has run its task, and
publishes again a row published but never completed (``OUTBOX_REDELIVER_AFTER``); the tests set that lease to
zero so as not to wait for it.
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

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

TASK = "tests.faults.slow_effect"


def count(action: str, token: str | None = None) -> int:
    rows = AuditLog.objects.filter(action=action)
    return rows.filter(target_id=token).count() if token else rows.count()


@pytest.mark.parametrize(
    ("sleep_before", "sleep_after"),
    [pytest.param(60.0, 0.0, id="killed-before-the-effect"), pytest.param(0.0, 60.0, id="killed-after-the-effect")],
)
def test_a_worker_killed_mid_task_loses_nothing_and_the_effect_happens_once(
    workers, broker, settings, sleep_before, sleep_after
):
    settings.OUTBOX_REDELIVER_AFTER = 0  # no lease to wait for in a test
    token = uuid.uuid4().hex
    with transaction.atomic():
        message = outbox_enqueue(TASK, args=[token], kwargs={"sleep_before": sleep_before, "sleep_after": sleep_after})
    message.refresh_from_db()
    assert message.published_at is not None
    assert len(broker.messages()) == 1

    first = workers.start()
    wait_for(lambda: count(ATTEMPT, token) == 1, what="the first worker to start the task")
    if sleep_after:
        wait_for(lambda: count(EFFECT, token) == 1, what="the effect of the first run")
    workers.kill(first)  # SIGKILL, mid-task: no shutdown, no ack, no task_postrun
    # The filesystem transport deleted the message when the worker fetched it: acks_late has nothing to give
    # back, and without the outbox's redelivery the task would be lost.
    assert broker.messages() == []
    message.refresh_from_db()
    assert message.completed_at is None  # the task did not finish

    # The outbox publishes again what was published but never completed (the beat relay does this).
    assert outbox_relay() == 1

    workers.start()
    wait_for(lambda: OutboxMessage.objects.get(pk=message.pk).completed_at is not None, what="the rerun")
    assert count(ATTEMPT, token) == 2  # it ran again
    assert count(EFFECT, token) == 1  # and its effect happened once
    assert outbox_relay() == 0  # completed: never published again


def test_a_broker_outage_while_business_writes_continue_loses_nothing(workers, broker, settings):
    """The broker is unreachable while 20 business changes commit; once it is back, all 20 run, each once."""
    settings.OUTBOX_REDELIVER_AFTER = 3600
    workers.start()
    broker.down()
    tokens = [uuid.uuid4().hex for _ in range(20)]
    slowest = 0.0
    for token in tokens:
        started = time.monotonic()
        with transaction.atomic():  # the business change and its work, in one transaction
            AuditLog.objects.create(
                action="fault.business", target_type="fault-test", target_id=token, actor_label="system:fault"
            )
            outbox_enqueue(TASK, args=[token])
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 10  # writes are not held up for long by the dead broker
    assert count("fault.business") == 20  # every business change committed
    pending = OutboxMessage.objects.filter(published_at__isnull=True)
    assert pending.count() == 20  # and every piece of work is kept
    assert pending.exclude(last_error="").count() == 1  # the first write tried; the rest left it to the relay
    assert outbox_relay() == 0  # a relay while it is still down publishes nothing and loses nothing
    assert pending.count() == 20
    assert broker.messages() == []
    assert count(ATTEMPT) == 0

    broker.up()  # the broker is back: the beat relay (core.tasks.outbox_relay) publishes what is pending
    from core.tasks import outbox_relay as relay_task

    assert relay_task() == 20
    assert relay_task() == 0  # once
    wait_for(
        lambda: not OutboxMessage.objects.filter(completed_at__isnull=True).exists(),
        timeout=60,
        what="the worker to run the 20 tasks",
    )
    for token in tokens:
        assert count(ATTEMPT, token) == 1
        assert count(EFFECT, token) == 1

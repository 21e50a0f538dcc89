"""The transactional outbox: work is published only when its transaction commits, survives a broker outage,
and is published once however many relays run. A real Celery worker runs what is published.

The broker is kombu's filesystem transport in a temporary folder (the project's embedded default); an
outage is a Redis URL on a port nobody listens on.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from config.celery import app as celery_app
from core import outbox
from core.models import AuditLog, OutboxMessage
from core.outbox import outbox_enqueue, outbox_relay
from tests.core.celery_tasks import PING_ACTION

pytestmark = pytest.mark.django_db(transaction=True)

DOWN_URL = "redis://127.0.0.1:1/0"
PING = "tests.core.ping"


def _reset_connections() -> None:
    """Forget pooled broker connections, so that the next publish uses the current broker settings."""
    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@dataclass
class Broker:
    folder: Path

    @property
    def options(self) -> dict[str, object]:
        return {
            "data_folder_in": str(self.folder / "queue"),
            "data_folder_out": str(self.folder / "queue"),
            "control_folder": str(self.folder / "control"),
            "store_processed": False,
            "polling_interval": 0.05,
        }

    def up(self) -> None:
        celery_app.conf.broker_url = "filesystem://"
        celery_app.conf.broker_transport_options = self.options
        _reset_connections()

    def down(self) -> None:
        celery_app.conf.broker_url = DOWN_URL
        celery_app.conf.broker_transport_options = {}
        _reset_connections()

    def messages(self) -> list[dict]:
        """The task messages waiting in the broker: their protocol-2 headers (id, task, argsrepr...)."""
        files = sorted((self.folder / "queue").glob("*.msg"))
        return [json.loads(f.read_text())["headers"] for f in files]


@pytest.fixture(scope="module")
def celery_conf() -> Iterator[None]:
    """Keeps the embedded workers quiet and quick, and restores the app's configuration afterwards."""
    keys = [
        "broker_url",
        "broker_transport_options",
        "worker_hijack_root_logger",
        "worker_redirect_stdouts",
        "worker_enable_remote_control",
    ]
    saved = {key: celery_app.conf[key] for key in keys}
    celery_app.conf.worker_hijack_root_logger = False
    celery_app.conf.worker_redirect_stdouts = False
    celery_app.conf.worker_enable_remote_control = False  # no pidbox: the worker starts faster
    yield
    for key, value in saved.items():
        celery_app.conf[key] = value
    _reset_connections()


def _new_broker(folder: Path) -> Broker:
    (folder / "queue").mkdir(parents=True)
    (folder / "control").mkdir()
    broker = Broker(folder)
    broker.up()
    return broker


@pytest.fixture
def broker(tmp_path, celery_conf) -> Broker:
    """A broker of this test's own, that no worker consumes: what is published stays there to be looked at."""
    return _new_broker(tmp_path / "broker")


@pytest.fixture(scope="module")
def worker_broker(tmp_path_factory, celery_conf) -> Iterator[Broker]:
    """A real Celery worker (solo pool, in a thread) consuming a broker of its own, for the whole module.

    Starting and stopping a worker takes seconds, so the tests that need one share it.
    """
    broker = _new_broker(tmp_path_factory.mktemp("worker-broker"))
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=15, loglevel="WARNING"):
        yield broker


@pytest.fixture
def worker(worker_broker) -> Broker:
    worker_broker.up()  # publish where the worker listens
    return worker_broker


@pytest.fixture
def publishes(monkeypatch) -> list[int]:
    """Records every publish (the row's id), then publishes for real."""
    calls: list[int] = []
    lock = threading.Lock()
    real_publish = outbox._publish

    def recording_publish(message: OutboxMessage) -> None:
        real_publish(message)
        with lock:
            calls.append(message.pk)

    monkeypatch.setattr(outbox, "_publish", recording_publish)
    return calls


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def pinged(token: str) -> bool:
    return AuditLog.objects.filter(action=PING_ACTION, target_id=token).exists()


def test_work_of_a_rolled_back_transaction_is_never_published(broker, publishes):
    def business_change_that_fails() -> None:
        with transaction.atomic():
            outbox_enqueue(PING, args=["rolled-back"])
            raise RuntimeError("the business change failed")

    with pytest.raises(RuntimeError):
        business_change_that_fails()
    assert not OutboxMessage.objects.exists()
    assert outbox_relay() == 0
    assert publishes == []
    assert broker.messages() == []


def test_work_is_published_only_when_the_transaction_commits(broker, publishes):
    with transaction.atomic():
        message = outbox_enqueue(PING, args=["later"], kwargs={})
        assert broker.messages() == []  # not while the change is uncommitted
    assert publishes == [message.pk]
    [headers] = broker.messages()
    assert headers["task"] == PING
    assert headers["id"] == str(message.public_id)  # the task id is the row's public id
    message.refresh_from_db()
    assert message.published_at is not None
    assert message.attempts == 1
    assert message.last_error == ""
    assert outbox_relay() == 0  # nothing left to publish twice


def test_committed_work_is_run_by_a_worker(worker):
    token = uuid.uuid4().hex
    with transaction.atomic():
        outbox_enqueue(PING, args=[token])
    wait_for(lambda: pinged(token))
    assert OutboxMessage.objects.get().published_at is not None


def test_a_broker_outage_delays_work_but_loses_none(worker):
    worker.down()
    token = uuid.uuid4().hex
    started = time.monotonic()
    with transaction.atomic():
        message = outbox_enqueue(PING, args=[token])
    assert time.monotonic() - started < 10  # the short retry policy: the request is not held up for long
    message.refresh_from_db()
    assert message.published_at is None
    assert message.attempts == 1
    assert message.last_error  # e.g. "OperationalError: Error 111 connecting to 127.0.0.1:1. Connection refused."

    assert outbox_relay() == 0  # still down
    message.refresh_from_db()
    assert message.published_at is None
    assert message.attempts == 2

    worker.up()  # the broker is back
    assert outbox_relay() == 1
    wait_for(lambda: pinged(token))
    message.refresh_from_db()
    assert message.published_at is not None
    assert message.last_error == ""
    assert message.attempts == 3


def test_after_a_failed_publish_the_next_requests_leave_it_to_the_relay(broker):
    broker.down()
    with transaction.atomic():
        first = outbox_enqueue(PING, args=["first"])  # pays for the broker's failure
    started = time.monotonic()
    with transaction.atomic():
        second = outbox_enqueue(PING, args=["second"])
    assert time.monotonic() - started < 1  # does not wait for the broker again
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.attempts, second.attempts) == (1, 0)
    assert second.published_at is None  # kept for the relay, which still tries every time
    broker.up()
    assert outbox_relay() == 2
    assert [h["argsrepr"] for h in broker.messages()] == ["['first']", "['second']"]


def test_while_the_broker_is_down_a_relay_stops_at_the_first_failure(broker):
    OutboxMessage.objects.bulk_create(OutboxMessage(task_name=PING, args=[str(i)]) for i in range(3))
    broker.down()
    assert outbox_relay() == 0
    assert list(OutboxMessage.objects.order_by("id").values_list("attempts", flat=True)) == [1, 0, 0]
    broker.up()
    assert outbox_relay() == 3
    assert [h["argsrepr"] for h in broker.messages()] == ["['0']", "['1']", "['2']"]  # in order


def test_a_failing_publish_after_commit_does_not_fail_the_committed_change(broker, monkeypatch):
    def relay_crashes(**kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(outbox, "outbox_relay", relay_crashes)
    with transaction.atomic():
        message = outbox_enqueue(PING, args=["x"])  # the caller sees its change committed, not an error
    monkeypatch.undo()
    assert OutboxMessage.objects.filter(pk=message.pk, published_at__isnull=True).exists()
    assert outbox_relay() == 1


def test_racing_relays_never_publish_a_row_twice(broker, publishes, monkeypatch):
    count = 60
    OutboxMessage.objects.bulk_create(OutboxMessage(task_name=PING, args=[str(i)]) for i in range(count))
    real_publish = outbox._publish

    def slow_publish(message: OutboxMessage) -> None:
        time.sleep(0.002)  # widen the window in which the two relays overlap
        real_publish(message)

    monkeypatch.setattr(outbox, "_publish", slow_publish)
    barrier = threading.Barrier(2)
    results: list[int] = []
    failures: list[BaseException] = []

    def relay() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(outbox_relay(batch_size=5))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert sorted(publishes) == sorted(OutboxMessage.objects.values_list("pk", flat=True))  # each exactly once
    assert sum(results) == count
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()
    ids = [h["id"] for h in broker.messages()]
    assert len(ids) == len(set(ids)) == count


def test_relay_command_and_task_publish_what_is_pending(broker, capsys):
    from core.tasks import outbox_relay as relay_task

    OutboxMessage.objects.bulk_create(OutboxMessage(task_name=PING, args=[str(i)]) for i in range(2))
    call_command("outbox_relay")
    assert "published 2" in capsys.readouterr().out
    OutboxMessage.objects.create(task_name=PING, args=["3"])
    assert relay_task() == 1
    assert len(broker.messages()) == 3


def test_the_worker_marks_the_row_completed(worker):
    token = uuid.uuid4().hex
    with transaction.atomic():
        message = outbox_enqueue(PING, args=[token])
    wait_for(lambda: OutboxMessage.objects.get(pk=message.pk).completed_at is not None)
    assert pinged(token)


def test_published_but_never_completed_work_is_published_again_after_the_lease(broker, settings):
    """A worker killed mid-task on a broker that forgot the message (tests/faults proves it with real workers)."""
    settings.OUTBOX_REDELIVER_AFTER = 3600
    with transaction.atomic():
        message = outbox_enqueue(PING, args=["killed"])
    assert outbox_relay() == 0  # published a moment ago: still within its lease
    settings.OUTBOX_REDELIVER_AFTER = 0
    assert outbox_relay() == 1  # the lease is over and no worker completed it: published again
    assert [h["id"] for h in broker.messages()] == [str(message.public_id)] * 2  # same task id: one task
    assert outbox.outbox_complete(str(message.public_id))
    assert outbox_relay() == 0  # completed: never again
    assert not outbox.outbox_complete("not-a-task-id-of-the-outbox")

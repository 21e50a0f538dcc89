"""Fault injection: real Celery worker subprocesses, killed with SIGKILL; a broker that goes away.

Loopback and local processes only. Every wait is bounded (``wait_for``), and every worker started is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
DOWN_URL = "redis://127.0.0.1:1/0"  # nobody listens on port 1: connection refused at once


def _reset_connections() -> None:
    """Forget pooled broker connections, so that the next publish uses the current broker settings."""
    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Broker:
    """kombu's filesystem transport (the embedded default) in a folder of the test's own."""

    folder: Path

    def options(self) -> dict[str, object]:
        return {
            "data_folder_in": str(self.folder / "queue"),
            "data_folder_out": str(self.folder / "queue"),
            "control_folder": str(self.folder / "control"),
            "store_processed": False,
        }

    def up(self) -> None:
        celery_app.conf.broker_url = "filesystem://"
        celery_app.conf.broker_transport_options = self.options()
        _reset_connections()

    def down(self) -> None:
        """The broker is unreachable for publishers (a Redis URL on a port nobody listens on)."""
        celery_app.conf.broker_url = DOWN_URL
        celery_app.conf.broker_transport_options = {}
        _reset_connections()

    def messages(self) -> list[dict]:
        return [json.loads(f.read_text())["headers"] for f in sorted((self.folder / "queue").glob("*.msg"))]

    def worker_env(self) -> dict[str, str]:
        return {"CELERY_BROKER_URL": "filesystem://", "SUANLI_BROKER_DIR": str(self.folder)}


@pytest.fixture
def broker(tmp_path) -> Iterator[Broker]:
    keys = ["broker_url", "broker_transport_options"]
    saved = {key: celery_app.conf[key] for key in keys}
    (tmp_path / "broker" / "queue").mkdir(parents=True)
    (tmp_path / "broker" / "control").mkdir()
    broker = Broker(tmp_path / "broker")
    broker.up()
    yield broker
    for key, value in saved.items():
        celery_app.conf[key] = value
    _reset_connections()


def _test_database_url() -> str:
    """DATABASE_URL of the test database (the one this test's committed rows are in)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@dataclass
class Workers:
    """Starts real ``celery worker`` subprocesses on the broker; stops (or kills) them."""

    broker: Broker | RedisBroker
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "SUANLI_TESTING": "1",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **self.broker.worker_env(),
        }
        number = len(self.processes) + 1
        log = (self.logs / f"worker{number}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "--include=tests.faults.tasks",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--hostname=fault{number}@localhost",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # warm shutdown
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _workers(broker: Broker | RedisBroker, logs: Path) -> Iterator[Workers]:
    assert settings.CELERY_TASK_ACKS_LATE
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    pool = Workers(broker=broker, logs=logs)
    yield pool
    pool.stop_all()


@pytest.fixture
def workers(broker, tmp_path) -> Iterator[Workers]:
    yield from _workers(broker, tmp_path)


@dataclass
class RedisBroker:
    """A real redis-server of the test's own on a free loopback port, which a test can freeze (SIGSTOP).

    Production runs Celery on Redis; a frozen Redis is worse than a dead one for a client: the connection is
    accepted by the kernel and then nothing answers, so only socket timeouts end a publish.
    """

    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def worker_env(self) -> dict[str, str]:
        return {"CELERY_BROKER_URL": self.url}

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def queued(self) -> int:
        import redis

        return int(redis.Redis(port=self.port, socket_timeout=5).llen("celery"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_broker(tmp_path) -> Iterator[RedisBroker]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=(tmp_path / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    broker = RedisBroker(process=process, port=port)
    keys = ["broker_url", "broker_transport_options"]
    saved = {key: celery_app.conf[key] for key in keys}
    try:
        wait_for(lambda: _answers(broker), timeout=10, what="redis-server to start")
        celery_app.conf.broker_url = broker.url
        celery_app.conf.broker_transport_options = settings.REDIS_BROKER_TRANSPORT_OPTIONS
        _reset_connections()
        yield broker
    finally:
        for key, value in saved.items():
            celery_app.conf[key] = value
        _reset_connections()
        process.send_signal(signal.SIGCONT)  # a stopped process ignores SIGTERM until continued
        process.terminate()
        process.wait(timeout=10)


def _answers(broker: RedisBroker) -> bool:
    try:
        broker.queued()
    except Exception:
        return False
    return True


@pytest.fixture
def redis_workers(redis_broker, tmp_path) -> Iterator[Workers]:
    yield from _workers(redis_broker, tmp_path)

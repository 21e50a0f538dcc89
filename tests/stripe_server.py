"""Pytest plugin: a local Stripe (devtools/stripe_server.py: localstripe + the Connect fake) for the session.

Register it with ``pytest_plugins = ["tests.stripe_server"]`` in tests/conftest.py (or import the fixtures
into a test module). Fixtures:

- ``stripe_server`` (session): starts the server on a free loopback port, points ``settings.STRIPE_API_BASE``
  / ``STRIPE_JS_URL`` and the ``stripe`` module at it, yields its base URL, stops it at the end.
- ``stripe_webhook_endpoint`` (function): ``register(url, events=None) -> webhook id``; the server then POSTs
  its events to ``url``, signed with ``settings.STRIPE_WEBHOOK_SECRET`` (after about one second, like
  localstripe). Endpoints registered through it are removed at the end of the test.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
_webhook_ids = itertools.count(1)


def start_stripe_server(log_path: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m devtools.stripe_server --port 0`` and return the process and its base URL once ready."""
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115  (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.stripe_server", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + READY_TIMEOUT
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("stripe server ready on "):
            url = line.split(" on ", 1)[1].strip()
            _wait_http(f"{url}/_config/ready", deadline)
            return process, url
    process.kill()
    raise RuntimeError(f"devtools.stripe_server did not start (exit {process.poll()}); see {log_path}")


def _wait_http(url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  (loopback)
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop_stripe_server(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()


def register_webhook(
    base_url: str, *, url: str, secret: str, events: list[str] | None = None, webhook_id: str | None = None
) -> str:
    """``POST /_config/webhooks/<id>`` (localstripe's way to add an endpoint); returns the id."""
    webhook_id = webhook_id or f"wh_{os.getpid()}_{next(_webhook_ids)}"
    fields: list[tuple[str, str]] = [("url", url), ("secret", secret)]
    fields += [("events[]", event) for event in events or []]
    request = urllib.request.Request(  # noqa: S310  (loopback)
        f"{base_url}/_config/webhooks/{webhook_id}", data=urllib.parse.urlencode(fields).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200, response.status
    return webhook_id


def unregister_webhook(base_url: str, webhook_id: str) -> None:
    request = urllib.request.Request(f"{base_url}/_config/webhooks/{webhook_id}", method="DELETE")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


# One server per test process even when a module re-exports the fixture beside the plugin (two fixture
# definitions): the first user starts it, the last one stops it.
_shared: dict[str, Any] = {"users": 0}


@pytest.fixture(scope="session")
def stripe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import stripe
    from django.conf import settings

    if not _shared["users"]:
        log_path = tmp_path_factory.mktemp("stripe") / "stripe_server.log"
        process, url = start_stripe_server(log_path)
        _shared.update(
            process=process,
            url=url,
            saved={name: getattr(settings, name) for name in ("STRIPE_API_BASE", "STRIPE_JS_URL")},
            saved_module=(stripe.api_base, stripe.api_key),
        )
        settings.STRIPE_API_BASE = url
        settings.STRIPE_JS_URL = f"{url}/js.stripe.com/v3/"
        stripe.api_base = url
        stripe.api_key = settings.STRIPE_API_KEY
    _shared["users"] += 1
    try:
        yield str(_shared["url"])
    finally:
        _shared["users"] -= 1
        if not _shared["users"]:
            for name, value in _shared.pop("saved").items():
                setattr(settings, name, value)
            stripe.api_base, stripe.api_key = _shared.pop("saved_module")
            stop_stripe_server(_shared.pop("process"))


@pytest.fixture
def stripe_webhook_endpoint(stripe_server: str) -> Iterator[Callable[..., str]]:
    from django.conf import settings

    registered: list[str] = []

    def register(url: str, events: list[str] | None = None, secret: str | None = None) -> str:
        webhook_id = register_webhook(
            stripe_server, url=url, secret=secret or settings.STRIPE_WEBHOOK_SECRET, events=events
        )
        registered.append(webhook_id)
        return webhook_id

    yield register
    for webhook_id in registered:
        unregister_webhook(stripe_server, webhook_id)

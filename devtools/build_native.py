"""Compile the matching engine (marketplace/matching.py) with mypyc into the virtual environment.

python -m devtools.build_native   (run by `make setup`, hence `make run`, `make test` and .ci/run)

The build goes to <venv>/suanli-native/marketplace (never into the source tree), stamped with the SHA-256 of the
source it was built from; marketplace/matching.py swaps the compiled module in at import only when that stamp is
its own source's. Without a C compiler or mypyc, or when the build fails, this prints one line saying so and exits
0: the pure-Python module then runs, as it does everywhere the build is absent. SUANLI_NATIVE_BUILD=0 skips it.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shlex
import shutil
import subprocess  # nosec B404  # the developer's own compiler, on a fixed command line
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "marketplace" / "matching.py"
TARGET = Path(sys.prefix) / "suanli-native" / "marketplace"  # marketplace.matching.NATIVE_DIR
LIBRARIES = ("matching__mypyc", "matching")  # the shared library and the module's shim
PREFIX = "matching engine:"


def _compiler() -> str | None:
    """The C compiler setuptools will call (CC, else the one Python was built with), if it is installed."""
    command = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    words = shlex.split(command)
    return shutil.which(words[0]) if words else None


def _fail(reason: str) -> int:
    print(f"{PREFIX} {reason}; the pure-Python engine will run (slower, same trades)", flush=True)
    return 0


def _verify() -> str | None:
    """Import the installed build in a fresh interpreter and match a small book; an error message, or None."""
    check = (
        "import marketplace.matching as m, sys\n"
        "assert m.COMPILED, 'the compiled module was not loaded'\n"
        "pool = m.PoolAttributes('p', 'H20', 'NVIDIA', False, True, 'nx', '64', 60, 1200, 148, 96, 148000, 4000000)\n"
        "book = m.OrderBook()\n"
        "assert book.add_offer(m.Offer('o', pool, 8, 0, 48, 6 * m.MICRO)) == []\n"
        "trades = book.add_bid(m.Bid('b', 8, 24, 0, 48, 7 * m.MICRO))\n"
        "assert [(t.offer_id, t.accelerators, t.start_hour, t.price_micro) for t in trades] == "
        "[('o', 8, 0, 6 * m.MICRO)], trades\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SUANLI_MATCHING", None)
    result = subprocess.run(  # nosec B603  # fixed arguments
        [sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode == 0 and not result.stderr.strip():
        return None
    return (result.stderr.strip().splitlines() or ["no output"])[-1]


def build() -> int:
    if os.environ.get("SUANLI_NATIVE_BUILD", "1") == "0":
        return _fail("not compiled (SUANLI_NATIVE_BUILD=0)")
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    stamp = TARGET / "matching.sha256"
    if (
        stamp.is_file()
        and stamp.read_text().strip() == digest
        and all((TARGET / f"{name}{suffix}").is_file() for name in LIBRARIES)
    ):
        print(f"{PREFIX} compiled build in {TARGET} is up to date", flush=True)
        return 0
    if _compiler() is None:
        return _fail("no C compiler found (set CC or install gcc) to compile it with mypyc")
    if importlib.util.find_spec("mypyc") is None:
        return _fail("mypyc is not installed (requirements-dev.txt) to compile it")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="suanli-mypyc-") as work:
        # A package of its own outside the project: the module keeps its name, mypy reads no project config
        # (no Django plugin), and the build and cache directories land in the temporary directory.
        package = Path(work) / "marketplace"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "matching.py").write_bytes(source)
        try:
            result = subprocess.run(  # nosec B603  # fixed arguments
                [sys.executable, "-m", "mypyc", "marketplace/matching.py"],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return _fail(f"mypyc did not run ({error})")
        built = [package / f"{name}{suffix}" for name in LIBRARIES]
        if result.returncode != 0 or not all(path.is_file() for path in built):
            lines = (result.stderr + result.stdout).strip().splitlines()
            errors = [line for line in lines if "error" in line.lower()] or lines or ["no output"]
            return _fail(f"mypyc build failed ({errors[0].strip()[:200]})")
        # Out with the old stamp first, then each library by an atomic rename (a running process keeps the file it
        # mapped), the new stamp last: a process starting meanwhile sees no stamp or a consistent build.
        TARGET.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        for path in built:
            temporary = TARGET / f".{path.name}.{os.getpid()}"
            shutil.copy2(path, temporary)
            os.replace(temporary, TARGET / path.name)
    temporary_stamp = TARGET / f".matching.sha256.{os.getpid()}"
    temporary_stamp.write_text(digest + "\n")
    os.replace(temporary_stamp, stamp)
    problem = _verify()
    if problem is not None:
        stamp.unlink(missing_ok=True)
        return _fail(f"the compiled module failed its check ({problem[:200]})")
    print(f"{PREFIX} compiled with mypyc into {TARGET} in {time.monotonic() - began:.0f} s", flush=True)
    return 0


def main() -> int:
    try:
        return build()
    except Exception as error:  # whatever goes wrong, setup goes on with the pure-Python engine
        return _fail(f"the build step failed ({type(error).__name__}: {error})")


if __name__ == "__main__":
    sys.exit(main())

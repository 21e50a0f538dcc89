"""The compiled matching engine (mypyc, built by `make setup` into the venv) and its fallbacks to pure Python.

The other engine tests import ``marketplace.matching`` as production does, so they run against the compiled module
wherever it is built; these check that it is the one loaded when built, and that a missing, stale or broken build
leaves a working pure-Python engine with one line saying why.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from marketplace import matching

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "marketplace" / "matching.py"

# Run in a fresh interpreter whose sys.prefix (where the build is looked for) is a temporary directory.
SMOKE = """
import sys
sys.prefix = sys.argv[1]
import marketplace.matching as m
pool = m.PoolAttributes("p", "H20", "NVIDIA", False, True, "nx", "64", 60, 1200, 148, 96, 148000, 4000000)
book = m.OrderBook()
book.add_offer(m.Offer("o", pool, 8, 0, 48, 6 * m.MICRO))
trades = book.add_bid(m.Bid("b", 8, 24, 0, 48, 7 * m.MICRO))
assert [(t.offer_id, t.accelerators, t.price_micro) for t in trades] == [("o", 8, 6 * m.MICRO)]
print(m.IMPLEMENTATION)
"""


def _run(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environment.pop("SUANLI_MATCHING", None)
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def _digest() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def test_the_compiled_engine_is_the_one_imported_when_built():
    stamp = Path(sys.prefix, "suanli-native", "marketplace", "matching.sha256")
    if os.environ.get("SUANLI_MATCHING") == "pure" or not stamp.is_file() or stamp.read_text().strip() != _digest():
        pytest.skip("no compiled engine built from this source (make setup builds it where a C compiler is)")
    assert matching.COMPILED
    assert matching.IMPLEMENTATION == "compiled (mypyc)"
    assert sys.modules["marketplace.matching"] is matching
    assert not hasattr(matching.OrderBook.add_bid, "__code__")


def test_without_a_build_the_pure_engine_runs_silently(tmp_path):
    result = _run(SMOKE, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure Python"
    assert result.stderr == ""


def test_a_build_from_another_source_is_not_loaded(tmp_path):
    directory = tmp_path / "suanli-native" / "marketplace"
    directory.mkdir(parents=True)
    (directory / "matching.sha256").write_text("0" * 64 + "\n")
    result = _run(SMOKE, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure Python"
    assert "built from another source; running pure Python" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_broken_build_falls_back_to_pure_python(tmp_path):
    directory = tmp_path / "suanli-native" / "marketplace"
    directory.mkdir(parents=True)
    (directory / "matching.sha256").write_text(_digest() + "\n")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for name in ("matching__mypyc", "matching"):
        (directory / f"{name}{suffix}").write_bytes(b"not a shared library")
    result = _run(SMOKE, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure Python"
    assert "the compiled engine failed to load" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_build_step_without_a_compiler_says_so_and_succeeds(tmp_path):
    code = "import sys; sys.prefix = sys.argv[1]\nfrom devtools import build_native\nsys.exit(build_native.main())"
    result = _run(code, str(tmp_path), CC=str(tmp_path / "no-such-cc"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "no C compiler found" in lines[0]
    assert "pure-Python engine will run" in lines[0]
    assert not (tmp_path / "suanli-native" / "marketplace" / "matching.sha256").exists()

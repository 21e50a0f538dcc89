"""Benchmarks: `make bench` runs them all, `make bench NAME=matching` one; `QUICK=1` runs reduced sizes.

Each prints lines `BENCH <name> <figure>=<value> baseline=<target> ratio=<r>` where the baseline is the first bar
named in the issue (DESIGN.md §6) and the ratio says how many times the bar is met: value/target for throughput,
target/value for times (so >= 1 always means the bar is met). The machine has 2 cores: compare within one run.
"""

from __future__ import annotations

import os

QUICK = os.environ.get("QUICK", "") not in ("", "0")


def report(name: str, figure: str, value: float, baseline: float, higher_is_better: bool = True) -> None:
    ratio = value / baseline if higher_is_better else baseline / value if value else float("inf")
    print(f"BENCH {name} {figure}={value:.4g} baseline={baseline:g} ratio={ratio:.2f}", flush=True)


def setup_django(name: str) -> None:
    """Django with the test settings and a database of this benchmark's own (``<test db>_bench_<name>``)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SUANLI_TESTING", "1")
    os.environ["SUANLI_TEST_DB_SUFFIX"] = f"_bench_{name}"
    import django

    django.setup()

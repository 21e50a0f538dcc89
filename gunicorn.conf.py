"""Gunicorn settings, read by every ``gunicorn config.wsgi`` started from the project root (production, the ingest
benchmark, the load test, the fault tests); options given on the command line still win.

Garbage collection in the workers: once a worker has loaded the app, its objects (~190,000: Django, DRF, the
models, the URL conf) are moved out of the collector's sight (``gc.freeze``), and the youngest generation is
collected after 50,000 new container objects instead of 700. A 1,000-record ingest request creates some 6,000
(parsed records, verdicts, results) that all die with the request: with the defaults they were traversed several
times and promoted to older generations, and now and then a full collection walked the whole app (about 5 µs of
CPU per ingested record, a tenth of the worker's share). Cycles are still collected, just in larger, rarer runs.
"""

from __future__ import annotations

import gc
from typing import Any


def post_worker_init(worker: Any) -> None:
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)

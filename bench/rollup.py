"""Rollup and reconciliation throughput over stored usage records (issue 5: "over 10 M records").

Creates a throw-away database (``test_suanli_bench_rollup``, migrated here, dropped at the end) with one provider
and its leases (8 accelerators each) over the last ``HOURS`` closed hours, then generates one-minute usage
records for every lease and minute in PostgreSQL (``INSERT ... SELECT`` over ``generate_series``: the records
table only; rollups read nothing else) and marks every touched (lease, hour) dirty, as ingest does. Figures:

* ``rollup records_per_s``: records consumed by the periodic job ``usage_rollup_dirty`` (run until no mark is
  left: hourly rollups recomputed from the records, then those lease-hours reconciled), per second of wall clock;
* ``reconcile lease_hours_per_s``: one ``lease_hours_reconcile`` over the whole span afterwards (every
  lease-hour re-derived from the rollups and upserted), lease-hours per second.

Full: 2,000 leases x 84 hours x 60 minutes = 10.08 M records. ``QUICK=1``: 100 leases x 20 hours (120,000).
There is no figure in the issue to compare with: the ratio printed is against the ingest bar (20,000 records/s,
rollups must keep up with ingest) and, for reconciliation, one lease-hour per lease per hour for 10,000 leases.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from bench import QUICK, report, setup_django

LEASES = 100 if QUICK else 2_000
HOURS = 20 if QUICK else 84
INGEST_BAR = 20_000.0
RECONCILE_BAR = 10_000 / 3600  # lease-hours produced per second by 10,000 running leases


def _seed() -> dict[str, Any]:
    from bench._leases import provider_with_leases
    from core.timeutils import floor_hour, utcnow
    from metering import services

    end = floor_hour(utcnow())
    start = end - timedelta(hours=HOURS)
    provider, leases = provider_with_leases(count=LEASES, start=start, end=end)
    services.usage_partitions_ensure(months_ahead=1, now=start - timedelta(days=1))
    return {"provider_id": provider.pk, "leases": [str(lease.public_id) for lease in leases], "start": start}


_GENERATE = """
INSERT INTO metering_usagerecord (
    provider_id, record_id, subject_kind, subject_id, window_start, window_end, accelerator_seconds,
    utilization_bp, energy_wh, tokens_in, tokens_out, requests, content_hash, batch_id, received_at)
SELECT %(provider)s, (%(offset)s + l.ordinality) || '-' || m, 'lease', l.lease, %(start)s + m * interval '1 minute',
       %(start)s + (m + 1) * interval '1 minute', 420 + (m %% 61), 6000 + (m * 37 %% 4000),
       CASE WHEN m %% 97 = 0 THEN NULL ELSE 50 + m %% 11 END, 0, 0, 0, repeat('0', 64), 0, now()
FROM unnest(%(leases)s::uuid[]) WITH ORDINALITY AS l (lease, ordinality), generate_series(0, %(minutes)s - 1) AS m
"""


def run() -> None:
    setup_django("rollup")
    from django.db import connection

    from core.timeutils import HOUR, Window, utcnow
    from metering import services

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        seed = _seed()
        began = time.perf_counter()
        with connection.cursor() as cursor:
            for first in range(0, LEASES, 100):  # 100 leases (up to 504,000 records) a statement
                cursor.execute(
                    _GENERATE,
                    {
                        "provider": seed["provider_id"],
                        "offset": first,  # record ids unique across the statements
                        "start": seed["start"],
                        "leases": seed["leases"][first : first + 100],
                        "minutes": HOURS * 60,
                    },
                )
            cursor.execute(
                "INSERT INTO metering_usagedirtyhour (subject_id, hour_start)"
                " SELECT DISTINCT subject_id, date_trunc('hour', window_start, 'UTC') FROM metering_usagerecord"
            )
            cursor.execute("ANALYZE metering_usagerecord")
            cursor.execute("SELECT count(*) FROM metering_usagerecord")
            records = cursor.fetchone()[0]
        print(f"# rollup: {records} records generated in {time.perf_counter() - began:.1f} s", flush=True)

        now = utcnow()
        began = time.perf_counter()
        marks = 0
        while consumed := services.usage_rollup_dirty(now=now):
            marks += consumed
        rollup_elapsed = time.perf_counter() - began
        print(
            f"# rollup: {marks} dirty lease-hours rolled up and reconciled in {rollup_elapsed:.1f} s"
            f" ({LEASES} leases x {HOURS} h)",
            flush=True,
        )

        began = time.perf_counter()
        lease_hours = services.lease_hours_reconcile(
            window=Window(seed["start"], seed["start"] + HOURS * HOUR), now=now
        )
        reconcile_elapsed = time.perf_counter() - began
        report("rollup", "records_per_s", records / rollup_elapsed, INGEST_BAR)
        report("reconcile", "lease_hours_per_s", lease_hours / reconcile_elapsed, RECONCILE_BAR)
        print("# rollup: load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)

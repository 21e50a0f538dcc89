"""Green allocation: 1 M lease-hours against 10,000 certificate lots (DESIGN.md §6: first bar < 60 s, goal 15 s).

Two figures:

- ``seconds`` (the issue's figure): the pure allocation (green/allocation.py) of one month's 1,000,000 lease-hours
  at 100 sites in 8 provinces against 10,000 lots (1-2 MWh each, produced over the 24 months before, some expired
  or too old for the vintage rule), supply and demand about equal, so lots run dry while the month goes on.
- ``persist_seconds``: the persistence path (green.services.allocation_run: consumption accounts, row locks, the
  allocation rows and the conditional updates of lots and accounts) in a throw-away database
  (``test_suanli_bench_green``), at 100,000 lease-hours against 1,000 lots (QUICK: 10,000 against 100).

``QUICK=1`` divides the sizes by 10.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, date, datetime, timedelta

from bench import QUICK

FIRST_BAR_S = 60.0
PROVINCES = ["64", "15", "52", "62", "13", "31", "44", "51"]


def _month(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def _inputs(lot_count: int, hours: int, seed: int = 8):
    from green.allocation import ConsumptionInput, LotInput

    rng = random.Random(seed)
    sites = [(site_id, PROVINCES[site_id % len(PROVINCES)]) for site_id in range(100)]
    consumed_month = 2026 * 12 + 9  # October 2026
    lots = []
    for lot_id in range(lot_count):
        site_id, province = rng.choice(sites)
        produced = _month(consumed_month - rng.randint(0, 23))
        lots.append(
            LotInput(
                id=lot_id,
                remaining_wh=rng.choice((1, 1, 2)) * 1_000_000,
                production_month=produced,
                expires_on=_month(produced.year * 12 + produced.month - 1 + 24),
                market="CN",
                province=province,
                site_id=site_id,
            )
        )
    supply = sum(lot.remaining_wh for lot in lots)
    mean = supply // hours  # demand about equal to supply
    start = datetime(2026, 10, 1, tzinfo=UTC)
    consumption = []
    for index in range(hours):
        site_id, province = sites[index % len(sites)]
        consumption.append(
            ConsumptionInput(
                id=f"lh{index}",
                hour=start + timedelta(hours=(index * 744) // hours),
                facility_wh=rng.randint(mean // 2, mean * 3 // 2),
                site_id=site_id,
                province=province,
            )
        )
    return lots, consumption


def _pure(lot_count: int, hours: int) -> tuple[float, int, int]:
    from green.allocation import allocate

    lots, consumption = _inputs(lot_count, hours)
    began = time.perf_counter()
    slices = allocate(lots, consumption)
    seconds = time.perf_counter() - began
    return seconds, len(slices), sum(s.energy_wh for s in slices)


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SUANLI_TESTING", "1")
    os.environ["SUANLI_TEST_DB_SUFFIX"] = "_bench_green"
    import django

    django.setup()


def _persist(lot_count: int, hours: int) -> tuple[float, int]:
    _setup_django()
    from django.db import connection

    from accounts.models import Organization, OrganizationKind
    from green import services
    from green.models import WH_PER_CERTIFICATE, CertificateLot
    from marketplace.models import Site

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        provider = Organization.objects.create(name="bench provider", kind=OrganizationKind.PROVIDER)
        site_rows = Site.objects.bulk_create(
            Site(
                organization=provider,
                name=f"site {i}",
                province=PROVINCES[i % len(PROVINCES)],
                city="-",
                grid_region="northwest",
                pue="1.20",
                latency_tier="cross_hub",
            )
            for i in range(100)
        )
        site_pk = [s.pk for s in site_rows]
        lots, consumption = _inputs(lot_count, hours)
        CertificateLot.objects.bulk_create(
            CertificateLot(
                organization=provider,
                site_id=site_pk[lot.site_id],
                registry="GEC",
                serial_first=lot.id * 10,
                serial_last=lot.id * 10 + lot.remaining_wh // WH_PER_CERTIFICATE - 1,
                certificate_count=lot.remaining_wh // WH_PER_CERTIFICATE,
                energy_wh=lot.remaining_wh,
                production_month=lot.production_month,
                source="wind",
                province=lot.province,
                expires_on=lot.expires_on,
                evidence_text="bench",
            )
            for lot in lots
        )
        slices = [services.ConsumptionSlice(c.id, site_pk[c.site_id], c.hour, c.facility_wh) for c in consumption]
        began = time.perf_counter()
        result = services.allocation_run(run_key="bench", consumption=slices)
        seconds = time.perf_counter() - began
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    return seconds, result.allocations


def run() -> None:
    scale = 10 if QUICK else 1
    lots, hours = 10_000 // scale, 1_000_000 // scale
    seconds, count, energy = _pure(lots, hours)
    print(
        f"# green: pure allocation of {hours} lease-hours against {lots} lots: {count} slices, {energy} Wh", flush=True
    )
    bar = FIRST_BAR_S / scale
    print(f"BENCH green seconds={seconds:.4g} baseline={bar:g} ratio={seconds / bar:.3f}", flush=True)
    if os.environ.get("GREEN_BENCH_PURE_ONLY"):
        return
    p_lots, p_hours = lots // 10, hours // 10
    p_seconds, p_count = _persist(p_lots, p_hours)
    print(
        f"# green: persistence path (allocation_run) of {p_hours} lease-hours against {p_lots} lots: "
        f"{p_count} allocation rows in {p_seconds:.1f} s ({p_hours / p_seconds:.0f} lease-hours/s)",
        flush=True,
    )
    print(
        f"BENCH green persist_seconds={p_seconds:.4g} lease_hours={p_hours} "
        f"projected_1m_seconds={p_seconds * 1_000_000 / p_hours:.4g} ratio={p_seconds * 1_000_000 / p_hours / 60:.3f}",
        flush=True,
    )

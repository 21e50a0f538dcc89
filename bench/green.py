"""Green allocation: 1 M lease-hours against 10,000 certificate lots (DESIGN.md §6: first bar < 60 s, goal 15 s).

``seconds`` (the issue's figure) is the monthly job end to end, persistence included
(``green.services.allocation_month_run`` without the statements): reading one month's metered usage (1,000,000
lease-hours of 1,345 leases at 100 sites in 8 provinces, 2 % of them with records lacking energy) and the leases'
sites and PUE, building the consumption accounts, allocating against 10,000 lots (1-2 MWh each, produced over the 24
months before, some expired or too old for the vintage rule; supply and demand about equal, so lots run dry while the
month goes on), and writing the allocation rows, the lots' and accounts' allocated Wh and the lot statuses. It runs
in a throw-away database (``test_suanli_bench_green``) built before the clock starts.

``pure_seconds``: the pure allocator (green/allocation.py) alone on inputs of the same shape.

``QUICK=1`` divides the sizes by 10. ``GREEN_BENCH_PURE_ONLY=1`` skips the database run, ``GREEN_BENCH_DB_ONLY=1``
the pure one; ``GREEN_BENCH_KEEPDB=1`` keeps the database for a look afterwards.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from bench import QUICK, report, setup_django

FIRST_BAR_S = 60.0
PROVINCES = ["64", "15", "52", "62", "13", "31", "44", "51"]
SITES = 100
MONTH_HOURS = 744  # October 2026
OCTOBER = datetime(2026, 10, 1, tzinfo=UTC)


def _month(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def _lot_inputs(lot_count: int, rng: random.Random):
    from green.allocation import LotInput

    consumed_month = 2026 * 12 + 9  # October 2026
    lots = []
    for lot_id in range(lot_count):
        site_id = rng.randrange(SITES)
        produced = _month(consumed_month - rng.randint(0, 23))
        lots.append(
            LotInput(
                id=lot_id,
                remaining_wh=rng.choice((1, 1, 2)) * 1_000_000,
                production_month=produced,
                expires_on=_month(produced.year * 12 + produced.month - 1 + 24),
                market="CN",
                province=PROVINCES[site_id % len(PROVINCES)],
                site_id=site_id,
            )
        )
    return lots


def _inputs(lot_count: int, hours: int, seed: int = 8):
    from green.allocation import ConsumptionInput

    rng = random.Random(seed)
    lots = _lot_inputs(lot_count, rng)
    supply = sum(lot.remaining_wh for lot in lots)
    mean = supply // hours  # demand about equal to supply
    consumption = []
    for index in range(hours):
        site_id = index % SITES
        consumption.append(
            ConsumptionInput(
                id=f"lh{index}",
                hour=OCTOBER + timedelta(hours=(index * MONTH_HOURS) // hours),
                facility_wh=rng.randint(mean // 2, mean * 3 // 2),
                site_id=site_id,
                province=PROVINCES[site_id % len(PROVINCES)],
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


def _world(lot_count: int, lease_hours: int, seed: int = 8) -> None:
    """Sites, pools, leases, one month of metered usage hours (COPY) and the lots, in the current database."""
    from django.db import connection

    from accounts.models import Organization, OrganizationKind
    from green.models import WH_PER_CERTIFICATE, CertificateLot
    from marketplace.models import Lease, Site
    from tests.marketplace.factories import make_bid, make_offer, make_pool

    rng = random.Random(seed)
    provider = Organization.objects.create(name="bench provider", kind=OrganizationKind.PROVIDER)
    buyer = Organization.objects.create(name="bench buyer", kind=OrganizationKind.BUYER)
    sites = Site.objects.bulk_create(
        Site(
            organization=provider,
            name=f"site {i}",
            province=PROVINCES[i % len(PROVINCES)],
            city="-",
            grid_region="northwest",
            pue="1.20",
            latency_tier="cross_hub",
        )
        for i in range(SITES)
    )
    lease_count = -(-lease_hours // MONTH_HOURS)
    leases: list[Lease] = []
    for index, site in enumerate(sites):
        pool = make_pool(site, name=f"pool {index}", status="listed")
        offer = make_offer(pool)
        bid = make_bid(buyer, accelerators=1, earliest_start=offer.start, filled_accelerators=1)
        per_site = lease_count // SITES + (1 if index < lease_count % SITES else 0)
        leases += Lease.objects.bulk_create(
            Lease(
                bid=bid,
                offer=offer,
                pool=pool,
                buyer=buyer,
                provider=provider,
                accelerators=1,
                price=offer.ask,
                confirm_by=offer.start,
                start=offer.start,
                end=offer.end,
                status="pending",
                public_id=uuid.UUID(int=rng.getrandbits(128), version=4),  # seeded: the same run every time
            )
            for _ in range(per_site)
        )
    lots = _lot_inputs(lot_count, rng)
    supply = sum(lot.remaining_wh for lot in lots)
    mean_it = supply * 10 // 12 // lease_hours  # facility (x PUE 1.2) about equal to supply
    now = datetime.now(UTC)
    left = lease_hours
    with connection.cursor() as cursor:
        columns = (
            "provider_id, subject_kind, subject_id, hour_start, record_count, accelerator_seconds, energy_wh,"
            " records_without_energy, accelerator_seconds_without_energy, tokens_in, tokens_out, requests, updated_at"
        )
        with cursor.cursor.copy(f"COPY metering_usagehour ({columns}) FROM STDIN") as copy:
            for lease in leases:
                for hour in range(min(MONTH_HOURS, left)):
                    without = 1 if rng.random() < 0.02 else 0
                    copy.write_row(
                        (
                            provider.pk,
                            "lease",
                            lease.public_id,
                            OCTOBER + timedelta(hours=hour),
                            2,
                            7200,
                            rng.randint(mean_it // 2, mean_it * 3 // 2) // (1 + without),
                            without,
                            3600 * without,
                            0,
                            0,
                            0,
                            now,
                        )
                    )
                left -= min(MONTH_HOURS, left)
        cursor.execute("ANALYZE metering_usagehour")
    CertificateLot.objects.bulk_create(
        CertificateLot(
            organization=provider,
            site=sites[lot.site_id],
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


def _end_to_end(lot_count: int, lease_hours: int) -> tuple[float, float, str]:
    """Build the world, then time the month's allocation job; returns (job seconds, setup seconds, summary)."""
    setup_django("green")
    from django.db import connection
    from django.db.models import Sum

    from green import services
    from green.models import Allocation, CertificateLot, ConsumptionAccount, LotStatus

    old_name = connection.settings_dict["NAME"]
    keep = bool(os.environ.get("GREEN_BENCH_KEEPDB"))
    began = time.perf_counter()
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        _world(lot_count, lease_hours)
        setup = time.perf_counter() - began
        began = time.perf_counter()
        period = services.allocation_month_run(
            month=OCTOBER.date(), now=datetime(2026, 11, 15, tzinfo=UTC), issue_statements=False
        )
        seconds = time.perf_counter() - began
        lots_wh = CertificateLot.objects.aggregate(s=Sum("allocated_wh"))["s"] or 0
        rows_wh = Allocation.objects.aggregate(s=Sum("energy_wh"))["s"] or 0
        accounts_wh = ConsumptionAccount.objects.aggregate(s=Sum("allocated_wh"))["s"] or 0
        assert lots_wh == rows_wh == accounts_wh == period.allocated_wh, (lots_wh, rows_wh, accounts_wh)
        summary = (
            f"{period.lease_hours} lease-hours ({period.estimated_hours} estimated), {period.facility_wh} facility Wh,"
            f" {period.allocated_wh} green Wh in {Allocation.objects.count()} allocation rows;"
            f" lots fully allocated {CertificateLot.objects.filter(status=LotStatus.ALLOCATED).count()},"
            f" expired {CertificateLot.objects.filter(status=LotStatus.EXPIRED).count()}"
        )
    finally:
        if not keep:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    return seconds, setup, summary


def run() -> None:
    scale = 10 if QUICK else 1
    lots, hours = 10_000 // scale, 1_000_000 // scale
    bar = FIRST_BAR_S
    if not os.environ.get("GREEN_BENCH_DB_ONLY"):
        pure, count, energy = _pure(lots, hours)
        print(f"# green: pure allocation of {hours} lease-hours against {lots} lots: {count} slices, {energy} Wh")
        report("green", "pure_seconds", pure, bar, higher_is_better=False)
    if os.environ.get("GREEN_BENCH_PURE_ONLY"):
        return
    seconds, setup, summary = _end_to_end(lots, hours)
    print(f"# green: monthly job end to end (database built in {setup:.0f} s beforehand): {summary}", flush=True)
    report("green", "seconds", seconds, bar, higher_is_better=False)

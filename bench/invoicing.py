"""Rate and invoice 1 M usage records over 10,000 leases, end to end (DESIGN.md §6: first bar < 60 s, goal 15 s).

Seeds a throw-away database (``test_suanli_bench_invoicing``, created and migrated here, dropped at the end):
500 buyers with 20 leases each at 50 providers' pools, every lease 100 hours of October 2026, and one usage
record per lease-hour (1,000,000), written straight into metering's hourly rollups with COPY (one record per
lease-hour: the rollup of a record is the record; building rollups from raw records is metering's ingest
benchmark). Then times what the monthly run does: ``invoice_run`` (metering's period usage for every lease,
rating, drafts with their lines) and ``invoice_finalize`` of every draft (voucher subsidy request, gap-free
number, ledger entry, payout plan). ``QUICK=1``: 1,000 leases and 100,000 records.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bench import QUICK, report, setup_django

FIRST_BAR_S = 60.0
HOURS_PER_LEASE = 100
LEASES_PER_BUYER = 20


def _seed(lease_count: int) -> None:
    from django.db import connection

    from accounts.models import Organization, OrganizationKind, OrganizationStatus
    from marketplace.models import AcceleratorModel, Bid, Lease, Offer, Pool, PoolShare, Site

    start = datetime(2026, 10, 1, tzinfo=UTC)
    models = list(AcceleratorModel.objects.order_by("pk")[:10])
    providers = Organization.objects.bulk_create(
        Organization(name=f"bench provider {i}", kind=OrganizationKind.PROVIDER, status=OrganizationStatus.ACTIVE)
        for i in range(50)
    )
    buyers = Organization.objects.bulk_create(
        Organization(name=f"bench buyer {i}", kind=OrganizationKind.BUYER, status=OrganizationStatus.ACTIVE)
        for i in range(lease_count // LEASES_PER_BUYER)
    )
    sites = Site.objects.bulk_create(
        Site(organization=p, name="site", province="64", city="中卫市", grid_region="northwest", pue=Decimal("1.2"))
        for p in providers
    )
    pools = Pool.objects.bulk_create(
        Pool(
            organization=site.organization,
            site=site,
            accelerator_model=models[i % len(models)],
            name=f"pool {i}",
            accelerator_count=64,
            software_stack=models[i % len(models)].software_stack,
            status="listed",
        )
        for i, site in enumerate(sites)
    )
    PoolShare.objects.bulk_create(
        PoolShare(pool=pool, organization=pool.organization, share_pct=Decimal(100)) for pool in pools
    )
    offers = Offer.objects.bulk_create(
        Offer(
            organization=pool.organization,
            pool=pool,
            accelerators=64,
            start=start,
            end=start + timedelta(days=31),
            ask=Decimal("9.5"),
        )
        for pool in pools
    )
    end = start + timedelta(hours=HOURS_PER_LEASE)
    bids = Bid.objects.bulk_create(
        Bid(
            organization=buyers[i // LEASES_PER_BUYER],
            accelerators=1,
            hours=HOURS_PER_LEASE,
            earliest_start=start,
            latest_end=end,
            limit_price=Decimal("12"),
            price_unit="acc_hour",
            status="filled",
            filled_accelerators=1,
        )
        for i in range(lease_count)
    )
    leases = Lease.objects.bulk_create(
        Lease(
            bid=bid,
            offer=offers[i % len(offers)],
            pool=pools[i % len(pools)],
            buyer=bid.organization,
            provider=pools[i % len(pools)].organization,
            accelerators=1,
            start=start,
            end=end,
            price=Decimal("9.5") + Decimal(i % 7) / 10,
            status="completed",
            confirm_by=start,
        )
        for i, bid in enumerate(bids)
    )
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY metering_usagehour (provider_id, subject_kind, subject_id, hour_start, record_count,"
            " accelerator_seconds, energy_wh, records_without_energy, accelerator_seconds_without_energy,"
            " utilization_bp, tokens_in, tokens_out, requests, updated_at) FROM STDIN"
        ) as copy,
    ):
        now = datetime.now(UTC)
        for lease in leases:
            for hour in range(HOURS_PER_LEASE):
                # Two hours in a hundred missing: some leases earn an SLA credit, as in real months.
                if (hour + lease.pk) % 50 == 0:
                    continue
                copy.write_row(
                    (lease.provider_id, "lease", lease.public_id, start + timedelta(hours=hour), 1, 3600, 650, 0, 0,
                     8800, 0, 0, 0, now)
                )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def run() -> None:
    setup_django("invoicing")
    from django.db import connection

    from billing import services
    from core.timeutils import Window

    lease_count = 1_000 if QUICK else 10_000
    records = lease_count * HOURS_PER_LEASE
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        began = time.perf_counter()
        _seed(lease_count)
        seeded = time.perf_counter() - began
        at = datetime(2026, 11, 2, 6, tzinfo=UTC)
        began = time.perf_counter()
        drafts = services.invoice_run(window=Window.month(2026, 10), at=at)
        rated = time.perf_counter() - began
        services.invoice_finalize_many(invoices=drafts, at=at)
        seconds = time.perf_counter() - began
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(
        f"# invoicing: {lease_count} leases, {records} usage records seeded in {seeded:.1f} s; "
        f"{len(drafts)} invoices: drafts in {rated:.1f} s, finalized in {seconds - rated:.1f} s",
        flush=True,
    )
    report("invoicing", "seconds", seconds, FIRST_BAR_S * (0.1 if QUICK else 1), higher_is_better=False)
    report("invoicing", "records_per_s", records / seconds, records / FIRST_BAR_S / (0.1 if QUICK else 1))

"""The monthly allocation job on real leases and metered usage, and the statements it issues: numbers that
recompute by hand from the metered energy, the PUE, the allocated Wh and the data file's factors; the PDF; the
public verify page; idempotence and two jobs racing."""

from __future__ import annotations

import contextlib
import csv
import re
import threading
import zlib
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from green import services
from green.models import (
    Allocation,
    AllocationPeriod,
    CertificateLot,
    ConsumptionAccount,
    GenerationHour,
    Statement,
    StatementStatus,
)
from green.reference_data import FACTORS_CSV
from marketplace.models import Site
from tests.green.factories import make_lot, make_usage_hour
from tests.marketplace.factories import make_lease, make_site

OCT = date(2026, 10, 1)
HOUR = datetime(2026, 10, 5, 8, tzinfo=UTC)
NOW = datetime(2026, 11, 15, tzinfo=UTC)  # October is closed


@pytest.fixture(autouse=True)
def _factors(db):
    from green.models import EmissionFactor
    from green.reference_data import load

    load(EmissionFactor)  # idempotent; transactional tests flush the data migration's rows


def _csv_factor(*, scope: str, region: str, kind: str = "average", year: int = 2026) -> Decimal:
    """The factor straight from the shipped data file: the latest year at or before ``year``."""
    with FACTORS_CSV.open(encoding="utf-8") as handle:
        rows = [
            r
            for r in csv.DictReader(handle)
            if r["scope"] == scope and r["region_code"] == region and r["kind"] == kind and int(r["year"]) <= year
        ]
    return Decimal(max(rows, key=lambda r: int(r["year"]))["kgco2_per_kwh"])


def _round_wh(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _world(make_org, *, pue: str = "1.15", province: str = "64", grid: str = "northwest", certificates: int = 1):
    provider = make_org("provider")
    buyer = make_org("buyer")
    site = make_site(provider, pue=Decimal(pue), province=province, grid_region=grid)
    lease = make_lease(provider, buyer)
    assert lease.pool.site_id == site.pk
    lot = make_lot(site, count=certificates, production_month=date(2026, 8, 1)) if certificates else None
    return provider, buyer, site, lease, lot


def test_job_turns_metered_energy_into_allocated_facility_energy(make_org):
    _provider, buyer, site, lease, lot = _world(make_org)
    for i in range(3):
        make_usage_hour(lease, HOUR + timedelta(hours=i), 500_000)
    period = services.allocation_month_run(month=OCT, now=NOW)
    facility_per_hour = _round_wh(Decimal(500_000) * Decimal("1.15"))  # 575,000 Wh
    assert (period.status, period.runs, period.lease_hours) == ("completed", 1, 3)
    assert period.facility_wh == 3 * facility_per_hour
    assert period.allocated_wh == 1_000_000  # the one certificate, oldest hours first
    accounts = list(ConsumptionAccount.objects.order_by("hour_start"))
    assert [a.facility_wh for a in accounts] == [facility_per_hour] * 3
    assert [a.allocated_wh for a in accounts] == [575_000, 425_000, 0]
    assert {a.buyer_id for a in accounts} == {buyer.pk}
    assert all(a.lease_public_id == lease.public_id and not a.estimated for a in accounts)
    lot.refresh_from_db()
    assert lot.allocated_wh == 1_000_000
    # The market now sees the computed share (the matching engine's minimum-green-share constraint reads it).
    site.refresh_from_db()
    assert site.green_share_pct == (Decimal(1_000_000) * 100 / (3 * facility_per_hour)).quantize(Decimal("0.01"))
    # The month's statement for the buyer was issued.
    assert Statement.objects.filter(organization=buyer, status=StatementStatus.VALID).count() == 1


def test_hours_without_metered_energy_are_estimated_and_flagged(make_org):
    _provider, buyer, _site, lease, _lot = _world(make_org, pue="1.20")
    tdp = lease.pool.accelerator_model.tdp_w
    make_usage_hour(lease, HOUR, 1000, records=4, without_energy=1, accelerator_seconds=7200)
    services.allocation_month_run(month=OCT, now=NOW)
    account = ConsumptionAccount.objects.get()
    estimate = (7200 * 1 // 4 * tdp + 1800) // 3600  # a quarter of the seconds at full TDP
    assert account.estimated is True
    assert account.it_energy_wh == 1000 + estimate
    assert account.facility_wh == _round_wh(Decimal(1000 + estimate) * Decimal("1.20"))
    statement = Statement.objects.get(organization=buyer)
    assert statement.content["totals"]["estimated_hours"] == 1


def test_an_open_month_is_refused(make_org):
    from core.errors import ApplicationError

    with pytest.raises(ApplicationError) as exc:
        services.allocation_month_run(month=date(2026, 11, 1), now=NOW)
    assert exc.value.errors[0].code == "month_not_closed"


def test_the_job_is_idempotent(make_org):
    _provider, buyer, _site, lease, _lot = _world(make_org, certificates=2)
    for i in range(4):
        make_usage_hour(lease, HOUR + timedelta(hours=i), 300_000)
    first = services.allocation_month_run(month=OCT, now=NOW)
    statement = Statement.objects.get(organization=buyer)
    snapshot = list(Allocation.objects.values_list("lot_id", "consumption_key", "energy_wh"))
    again = services.allocation_month_run(month=OCT, now=NOW)  # the beat job again: the month is done
    assert again.runs == 1
    forced = services.allocation_month_run(month=OCT, now=NOW, force=True)  # on demand: runs, adds nothing
    assert forced.runs == 2
    assert forced.allocated_wh == first.allocated_wh
    assert list(Allocation.objects.values_list("lot_id", "consumption_key", "energy_wh")) == snapshot
    assert services.allocation_due(now=NOW) == []
    # The same figures keep the same statement (same code).
    assert list(Statement.objects.filter(organization=buyer)) == [statement]


def test_beat_runs_a_closed_month_with_usage_once(make_org):
    _provider, _buyer, _site, lease, _lot = _world(make_org)
    make_usage_hour(lease, HOUR, 100_000)
    assert services.allocation_due(now=NOW) == [OCT]
    assert services.allocation_due(now=NOW) == []
    assert AllocationPeriod.objects.get().runs == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("force", [False, True])
def test_two_jobs_racing_on_one_month(make_org, force):
    _provider, buyer, _site, lease, _lot = _world(make_org, certificates=2)
    for i in range(30):
        make_usage_hour(lease, HOUR + timedelta(hours=i), 80_000)  # 30 x 92,000 Wh = 2.76 MWh, 2 MWh of certificates
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            services.allocation_month_run(month=OCT, now=NOW, force=force)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    period = AllocationPeriod.objects.get()
    assert period.runs == (2 if force else 1)
    assert Allocation.objects.aggregate(s=Sum("energy_wh"))["s"] == 2_000_000
    for lot in CertificateLot.objects.all():
        assert lot.allocations.aggregate(s=Sum("energy_wh"))["s"] == lot.allocated_wh <= lot.energy_wh
    for account in ConsumptionAccount.objects.all():
        assert account.allocated_wh <= account.facility_wh
    assert Statement.objects.filter(organization=buyer, status=StatementStatus.VALID).count() == 1


def test_statement_numbers_recompute_by_hand(make_org):
    """Two leases: Ningxia (no provincial factor: the northwest grid's) and Inner Mongolia (its own factor)."""
    provider = make_org("provider")
    buyer = make_org("buyer")
    ningxia = make_site(provider, name="中卫", pue=Decimal("1.15"), province="64", grid_region="northwest")
    lease_nx = make_lease(provider, buyer)
    mongolia = make_site(make_org("provider"), name="和林格尔", pue=Decimal("1.18"), province="15", grid_region="north")
    lease_im = make_lease(mongolia.organization, buyer)
    assert (lease_nx.pool.site_id, lease_im.pool.site_id) == (ningxia.pk, mongolia.pk)
    lot = make_lot(ningxia, count=3, production_month=date(2026, 8, 1))
    it = {lease_nx: [400_000, 650_001, 123_457], lease_im: [700_000, 333_333]}
    for lease, energies in it.items():
        for i, wh in enumerate(energies):
            make_usage_hour(lease, HOUR + timedelta(hours=i), wh)
    services.allocation_month_run(month=OCT, now=NOW)
    statement = Statement.objects.get(organization=buyer)
    c = statement.content

    nx_facility = sum(_round_wh(Decimal(wh) * Decimal("1.15")) for wh in it[lease_nx])
    im_facility = sum(_round_wh(Decimal(wh) * Decimal("1.18")) for wh in it[lease_im])
    green = min(nx_facility, 3_000_000)  # only Ningxia has certificates, and they cover it all
    facility = nx_facility + im_facility
    assert c["totals"]["it_wh"] == sum(it[lease_nx]) + sum(it[lease_im])
    assert c["totals"]["facility_wh"] == facility
    assert c["totals"]["green_wh"] == green
    assert Decimal(c["totals"]["share_pct"]) == (Decimal(green) * 100 / facility).quantize(Decimal("0.01"))
    by_site = {line["site"]: line for line in c["leases"]}
    assert by_site["中卫"]["facility_wh"] == nx_facility
    assert by_site["中卫"]["green_wh"] == green
    assert by_site["和林格尔"]["green_wh"] == 0

    nw = _csv_factor(scope="grid", region="northwest")
    im = _csv_factor(scope="province", region="Inner Mongolia")
    residual = _csv_factor(scope="national", region="CN", kind="excluding_market_traded_non_fossil")
    location = Decimal(nx_facility) / 1000 * nw + Decimal(im_facility) / 1000 * im
    market = Decimal(facility - green) / 1000 * residual
    assert Decimal(c["emissions"]["location"]["kgco2"]) == location.quantize(Decimal("0.001"), ROUND_HALF_UP)
    assert Decimal(c["emissions"]["market"]["kgco2"]) == market.quantize(Decimal("0.001"), ROUND_HALF_UP)
    factors = {line["site"]: line["factor"] for line in c["emissions"]["location"]["lines"]}
    assert (Decimal(factors["中卫"]["kgco2_per_kwh"]), factors["中卫"]["scope"]) == (nw, "grid_region")
    assert Decimal(factors["和林格尔"]["kgco2_per_kwh"]) == im
    assert factors["和林格尔"]["source"].startswith("MEE/NBS")
    assert Decimal(c["emissions"]["market"]["factor"]["kgco2_per_kwh"]) == residual
    # The certificate serials behind the green Wh: the first ceil(green / 1 MWh) of the lot.
    [cert] = c["certificates"]
    last = lot.serial_first + (green - 1) // 1_000_000
    assert cert["serials"] == [f"{lot.serial_first}-{last}" if last != lot.serial_first else str(last)]
    assert cert["energy_wh"] == green
    assert c["totals"]["hourly_cfe_pct"] is None  # no generation profile


def test_hourly_cfe_beside_the_monthly_share(make_org):
    provider, buyer, site, lease, _lot = _world(make_org, pue="1.00", certificates=1)
    make_usage_hour(lease, HOUR, 100_000)
    make_usage_hour(lease, HOUR + timedelta(hours=1), 100_000)
    # The site's contract delivered 150 kWh in the first hour and 20 kWh in the second.
    GenerationHour.objects.create(organization=provider, site=site, hour_start=HOUR, energy_wh=150_000)
    GenerationHour.objects.create(
        organization=provider, site=site, hour_start=HOUR + timedelta(hours=1), energy_wh=20_000
    )
    services.allocation_month_run(month=OCT, now=NOW)
    totals = Statement.objects.get(organization=buyer).content["totals"]
    assert totals["share_pct"] == "100.00"  # monthly: the certificate covers everything
    assert totals["hourly_matched_wh"] == 100_000 + 20_000
    assert totals["hourly_cfe_pct"] == "60.00"


def test_changed_allocations_supersede_the_statement(make_org, client):
    _provider, buyer, _site, lease, _lot = _world(make_org)
    make_usage_hour(lease, HOUR, 100_000)
    services.allocation_month_run(month=OCT, now=NOW)
    old = Statement.objects.get(organization=buyer)
    services.allocation_reverse(allocation_row=Allocation.objects.get())
    new = services.statement_issue(organization=buyer, period_start=OCT, period_end=date(2026, 11, 1))
    old.refresh_from_db()
    assert (old.status, old.superseded_by) == (StatementStatus.SUPERSEDED, new)
    assert new.content["totals"]["green_wh"] == 0
    assert new.verification_code != old.verification_code
    page = client.get(f"/verify/green/{old.verification_code}/")
    assert page.status_code == 200
    assert 'data-status="superseded"' in page.content.decode()


def test_a_statement_for_one_lease(make_org):
    provider, buyer, _site, lease, _lot = _world(make_org)
    other = make_lease(provider, buyer)
    make_usage_hour(lease, HOUR, 100_000)
    make_usage_hour(other, HOUR, 50_000)
    services.allocation_month_run(month=OCT, now=NOW, issue_statements=False)
    one = services.statement_issue(
        organization=buyer, period_start=OCT, period_end=date(2026, 11, 1), lease_public_id=str(lease.public_id)
    )
    assert [row["id"] for row in one.content["leases"]] == [str(lease.public_id)]
    assert one.content["totals"]["facility_wh"] == 115_000
    everything = services.statement_issue(organization=buyer, period_start=OCT, period_end=date(2026, 11, 1))
    assert everything.content["totals"]["facility_wh"] == 115_000 + 57_500
    assert one.status == everything.status == StatementStatus.VALID  # different scopes


def _pdf_text(body: bytes) -> bytes:
    """The PDF with its streams inflated (the text itself is glyph ids; links and metadata are readable)."""
    parts = [body]
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", body, re.S):
        with contextlib.suppress(zlib.error):
            parts.append(zlib.decompress(match.group(1)))
    return b"".join(parts)


def test_pdf_carries_the_code_and_the_verify_link(make_org, client_for):
    _provider, buyer, _site, lease, _lot = _world(make_org)
    make_usage_hour(lease, HOUR, 100_000)
    services.allocation_month_run(month=OCT, now=NOW)
    statement = Statement.objects.get(organization=buyer)
    response = client_for(buyer.owner).get(f"/green/statements/{statement.public_id}/pdf/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    body = response.content
    assert body.startswith(b"%PDF")
    text = _pdf_text(body)
    assert f"/verify/green/{statement.verification_code}/".encode() in text  # the QR code's and the printed link
    assert b"NotoSansCJK" in text.replace(b"-", b"") or b"Noto Sans CJK" in text  # the CJK font is embedded


def test_verify_page_is_public_and_unknown_codes_are_404(make_org, client):
    _provider, buyer, _site, lease, _lot = _world(make_org)
    make_usage_hour(lease, HOUR, 100_000)
    services.allocation_month_run(month=OCT, now=NOW)
    statement = Statement.objects.get(organization=buyer)
    page = client.get(f"/verify/green/{statement.verification_code}/")  # anonymous
    assert page.status_code == 200
    html = page.content.decode()
    assert statement.verification_code in html
    assert 'data-status="valid"' in html
    assert buyer.name in html
    assert client.get("/verify/green/AAAAA-BBBBB-CCCCC-DDDDD-EEEEE/").status_code == 404
    services.statement_revoke(statement=statement)
    assert 'data-status="revoked"' in client.get(f"/verify/green/{statement.verification_code}/").content.decode()


def test_verification_codes_are_long_and_random():
    codes = {services.new_verification_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(re.fullmatch(r"([A-HJ-NP-Z2-9]{5}-){4}[A-HJ-NP-Z2-9]{5}", code) for code in codes)


def test_site_share_write_back_keeps_declared_share_without_consumption(make_org):
    provider = make_org("provider")
    quiet = make_site(provider, name="无用电", green_share_pct=Decimal("42"))
    services.site_green_shares_refresh(now=NOW)
    assert Site.objects.get(pk=quiet.pk).green_share_pct == Decimal("42.00")


def test_celery_tasks_and_beat_entry(make_org):
    from django.conf import settings

    from green import tasks

    assert settings.CELERY_BEAT_SCHEDULE["green-allocation"]["task"] == "green.tasks.allocation_due"
    _provider, _buyer, _site, lease, _lot = _world(make_org)
    make_usage_hour(lease, HOUR, 100_000)  # October 2026: closed by now (the tests run after November 2026 began)
    assert tasks.allocation_month("2026-10") == 115_000
    assert tasks.allocation_month("2026-10", force=True) == 115_000
    assert AllocationPeriod.objects.get().runs == 2


def test_on_demand_request_goes_through_the_outbox(make_org):
    from core.models import OutboxMessage

    services.allocation_month_request(month=OCT, now=NOW)
    message = OutboxMessage.objects.get(task_name="green.tasks.allocation_month")
    assert message.kwargs == {"month": "2026-10", "force": True}

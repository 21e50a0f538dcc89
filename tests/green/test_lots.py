from datetime import date

import pytest
from django.db import IntegrityError, transaction

from core.errors import ApplicationError
from core.models import AuditLog
from green import services
from green.models import CertificateLot, LotStatus
from tests.green.factories import make_lot
from tests.marketplace.factories import make_site

TODAY = date(2026, 11, 23)


def _create(org, site, **overrides):
    values = {
        "organization": org,
        "site_id": site.public_id,
        "registry": "GEC",
        "serial_first": 5000,
        "serial_last": 5009,
        "certificate_count": 10,
        "production_month": date(2026, 9, 1),
        "source": "wind",
        "province": "64",
        "evidence_text": "declared for consumption 2026-10-05",
        "today": TODAY,
    }
    values.update(overrides)
    return services.lot_create(**values)


def _codes(exc: ApplicationError) -> dict[str | None, str]:
    return {e.field: e.code for e in exc.errors}


def test_create_computes_energy_and_expiry_and_audits(make_org):
    org = make_org("provider")
    lot = _create(org, make_site(org))
    assert lot.energy_wh == 10_000_000
    assert lot.expires_on == date(2028, 9, 1)
    assert lot.status == LotStatus.ACTIVE
    assert AuditLog.objects.filter(action="green.lot.create", target_id=str(lot.public_id)).exists()


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"registry": "XYZ"}, "registry", "unknown_registry"),
        ({"certificate_count": 9}, "certificate_count", "count_mismatch"),
        ({"energy_wh": 9_000_000}, "energy_wh", "energy_mismatch"),
        ({"serial_last": 4000}, "serial_last", "serial_order"),
        ({"production_month": date(2024, 10, 1)}, "production_month", "lot_expired"),
        ({"province": "81"}, "province", "province_outside_market"),
        ({"evidence_text": ""}, "evidence_text", "evidence_required"),
        ({"production_month": date(9999, 12, 1)}, "production_month", "future_production"),
        ({"serial_last": 2**70}, "serial_last", "invalid_serial"),
        ({"certificate_count": 10**12}, "certificate_count", "lot_too_large"),
    ],
)
def test_bad_input_is_a_field_error_and_saves_nothing(make_org, overrides, field, code):
    org = make_org("provider")
    site = make_site(org)
    with pytest.raises(ApplicationError) as caught:
        _create(org, site, **overrides)
    assert _codes(caught.value)[field] == code
    assert not CertificateLot.objects.exists()


def test_site_of_another_provider_is_refused(make_org):
    org, other = make_org("provider"), make_org("provider")
    with pytest.raises(ApplicationError) as caught:
        _create(org, make_site(other))
    assert _codes(caught.value)["site_id"] == "unknown_site"


def test_overlap_refused_within_and_across_providers(make_org):
    org, other = make_org("provider"), make_org("provider")
    other_site = make_site(other)
    _create(org, make_site(org))
    with pytest.raises(ApplicationError) as caught:
        _create(org, make_site(org, name="二号"), serial_first=5009, serial_last=5012, certificate_count=4)
    assert _codes(caught.value)["serial_first"] == "serials_overlap"
    with pytest.raises(ApplicationError):
        _create(other, other_site, serial_first=4990, serial_last=5000, certificate_count=11)
    # Another registry's serials are another namespace.
    assert _create(other, other_site, registry="I-REC").registry == "I-REC"
    assert CertificateLot.objects.count() == 2


def test_database_refuses_overlap_even_without_the_service(make_org):
    org = make_org("provider")
    site = make_site(org)
    lot = make_lot(site, count=5)
    with pytest.raises(IntegrityError, match="lot_serials_disjoint_gec"), transaction.atomic():
        make_lot(site, count=1, serial_first=lot.serial_last, serial_last=lot.serial_last)
    with pytest.raises(IntegrityError, match="lot_count_matches_range"), transaction.atomic():
        make_lot(site, count=2, serial_first=1, serial_last=5)


def test_withdraw_frees_the_serials_but_not_when_allocated(make_org):
    org = make_org("provider")
    site = make_site(org)
    lot = _create(org, site)
    services.lot_withdraw(organization=org, lot=lot)
    lot.refresh_from_db()
    assert lot.status == LotStatus.WITHDRAWN
    again = _create(org, site)
    CertificateLot.objects.filter(pk=again.pk).update(allocated_wh=1)
    with pytest.raises(ApplicationError) as caught:
        services.lot_withdraw(organization=org, lot=again)
    assert caught.value.code == "lot_allocated"


def _csv(site, *rows: str) -> bytes:
    header = "site_id,registry,serial_first,serial_last,certificate_count,production_month,source,province,"
    header += "bundled_with_power,evidence\n"
    return (header + "".join(f"{site.public_id},{row}\n" for row in rows)).encode()


def test_csv_upload_all_or_nothing_with_line_numbers(make_org):
    org = make_org("provider")
    site = make_site(org)
    good = "GEC,100,109,10,2026-09,wind,64,yes,declared"
    overlap = "GEC,105,120,16,2026-09,solar,64,no,declared"
    bad_count = "GEC,200,209,11,2026-09,solar,64,no,declared"
    with pytest.raises(ApplicationError) as caught:
        services.lots_upload_csv(organization=org, content=_csv(site, good, overlap, bad_count), today=TODAY)
    fields = {e.field: e.code for e in caught.value.errors}
    assert fields == {"lines[3].serial_first": "serials_overlap", "lines[4].certificate_count": "count_mismatch"}
    assert not CertificateLot.objects.exists()

    lots = services.lots_upload_csv(
        organization=org, content=_csv(site, good, "GEC,200,209,10,2026-10,solar,64,no,declared"), today=TODAY
    )
    assert [lot.serial_first for lot in lots] == [100, 200]
    assert lots[0].bundled_with_power is True


def test_csv_missing_columns(make_org):
    org = make_org("provider")
    with pytest.raises(ApplicationError) as caught:
        services.lots_upload_csv(organization=org, content=b"registry\nGEC\n", today=TODAY)
    assert caught.value.code == "csv_columns"

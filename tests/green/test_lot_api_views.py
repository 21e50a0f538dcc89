from datetime import date

import pytest
from django.urls import reverse

from core.timeutils import utcnow
from green.models import CertificateLot, LotStatus
from tests.green.factories import make_lot
from tests.marketplace.factories import make_site

URL = "/api/v1/green/lots"


def _body(site, **overrides):
    today = utcnow().date()
    month = date(today.year, today.month, 1)
    body = {
        "site_id": str(site.public_id),
        "registry": "GEC",
        "serial_first": 900,
        "serial_last": 904,
        "certificate_count": 5,
        "production_month": month.isoformat(),
        "energy_source": "solar",
        "province": "64",
        "evidence_text": "declared",
    }
    body.update(overrides)
    return body


def test_api_create_is_idempotent_and_lists(make_org, api_client_for):
    org = make_org("provider")
    site = make_site(org)
    client = api_client_for(org, ["green:write"])
    first = client.post(URL, _body(site), format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 201, first.json()
    assert first.json()["energy_wh"] == 5_000_000
    again = client.post(URL, _body(site), format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert CertificateLot.objects.count() == 1
    listed = client.get(URL).json()
    assert [lot["id"] for lot in listed] == [first.json()["id"]]


def test_api_bad_input_gives_every_field_error(make_org, api_client_for):
    org = make_org("provider")
    site = make_site(org)
    client = api_client_for(org, ["green:write"])
    response = client.post(URL, _body(site, registry="XX", certificate_count=7), format="json")
    assert response.status_code == 400
    codes = {e["field"]: e["code"] for e in response.json()["errors"]}
    assert codes == {"registry": "unknown_registry", "certificate_count": "count_mismatch"}
    assert not CertificateLot.objects.exists()


def test_api_needs_the_green_scope(make_org, api_client_for):
    org = make_org("provider")
    response = api_client_for(org, ["metering:write"]).get(URL)
    assert response.status_code == 403


def test_api_withdraw_and_foreign_lot_is_404(make_org, api_client_for):
    org, other = make_org("provider"), make_org("provider")
    lot = make_lot(make_site(org))
    foreign = make_lot(make_site(other))
    client = api_client_for(org, ["green:write"])
    response = client.post(f"{URL}/{lot.public_id}/withdraw", HTTP_IDEMPOTENCY_KEY="w1")
    assert response.status_code == 200
    assert response.json()["status"] == LotStatus.WITHDRAWN
    assert client.post(f"{URL}/{foreign.public_id}/withdraw").status_code == 404
    assert client.get(f"{URL}/{foreign.public_id}").status_code == 404


@pytest.mark.parametrize("kind", ["provider"])
def test_portal_page_lists_creates_and_uploads(make_org, client_for, kind):
    org = make_org(kind)
    site = make_site(org)
    client = client_for(org.owner)
    url = reverse("green:lots")
    page = client.get(url)
    assert page.status_code == 200
    assert b'data-testid="nav-green"' in page.content
    month = utcnow().date().strftime("%Y-%m")
    response = client.post(
        url,
        {
            "action": "create",
            "site": str(site.public_id),
            "registry": "GEC",
            "serial_first": 10,
            "serial_last": 11,
            "certificate_count": 2,
            "production_month": month,
            "source": "wind",
            "province": "64",
            "evidence_text": "declared",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert CertificateLot.objects.filter(organization=org).count() == 1

    from django.core.files.uploadedfile import SimpleUploadedFile

    header = "site_id,registry,serial_first,serial_last,certificate_count,production_month,source,province,"
    header += "bundled_with_power,evidence\n"
    bad = f"{header}{site.public_id},GEC,11,12,2,{month},wind,64,no,x\n"
    response = client.post(url, {"action": "upload", "file": SimpleUploadedFile("lots.csv", bad.encode())})
    assert response.status_code == 200
    assert b"lines[2].serial_first" in response.content
    good = f"{header}{site.public_id},GEC,20,29,10,{month},wind,64,no,x\n"
    response = client.post(url, {"action": "upload", "file": SimpleUploadedFile("lots.csv", good.encode())})
    assert response.status_code == 302
    assert CertificateLot.objects.filter(organization=org).count() == 2
    lot = CertificateLot.objects.get(serial_first=10)
    response = client.post(reverse("green:lot-withdraw", args=[lot.public_id]))
    assert response.status_code == 302
    lot.refresh_from_db()
    assert lot.status == LotStatus.WITHDRAWN


def test_portal_page_is_for_providers_only(make_org, client_for):
    buyer = make_org("buyer")
    assert client_for(buyer.owner).get(reverse("green:lots")).status_code == 403

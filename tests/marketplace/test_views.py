"""Portal pages of the supply side: the public catalog, site and pool forms (with live validation), attestation."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from marketplace.models import Attestation, Cluster, Pool, PoolStatus, Site
from tests.marketplace.factories import accelerator, make_pool, make_site

pytestmark = pytest.mark.django_db


def site_form(**overrides):
    data = {
        "name": "中卫云谷一号",
        "province": "64",
        "city": "中卫市",
        "cluster": str(Cluster.objects.get(name_zh="中卫数据中心集群").public_id),
        "grid_region": "northwest",
        "pue": "1.15",
        "pue_period_start": "2025-01-01",
        "pue_period_end": "2025-12-31",
        "green_share_pct": "65",
        "latency_tier": "cross_hub",
        "dengbao_level": "3",
    }
    data.update(overrides)
    return data


def test_catalog_is_public_and_compares_h100_h20_ascend(client):
    response = client.get("/catalog/")
    assert response.status_code == 200
    html = response.content.decode()
    table = html[html.index('data-testid="compare-table"') :]
    table = table[: table.index("</table>")]
    for name in ("H100 SXM5", "H20", "Ascend 910B"):
        assert name in table
    assert 'data-unit="SCU" data-basis="datasheet"' in table
    assert 'data-unit="BWU"' in table
    assert "compare-chart" in html
    assert "echarts.min.js" in html


def test_catalog_compare_selection_and_model_page(client):
    mi300x = accelerator("AMD", "Instinct MI300X")
    html = client.get("/catalog/", {"m": [str(mi300x.public_id), "junk"]}).content.decode()
    assert "Instinct MI300X" in html[html.index('data-testid="compare-table"') :][:3000]
    detail = client.get(f"/catalog/{mi300x.public_id}/")
    assert detail.status_code == 200
    assert "amd.com" in detail.content.decode()


def test_provider_registers_a_site(provider, client_for):
    client = client_for(provider.owner)
    assert client.get("/supply/sites/new/").status_code == 200
    response = client.post("/supply/sites/new/", site_form())
    site = Site.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/supply/sites/{site.public_id}/"
    assert site.hub.code == "nx"
    page = client.get(response["Location"]).content.decode()
    assert "中卫云谷一号" in page
    assert "1.15" in page


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"pue": "0.9"}, "pue", "at least 1.0"),
        ({"pue": "3.4"}, "pue", "not plausible"),
        ({"province": "31"}, "cluster", "not in this province"),
    ],
)
def test_site_bad_input_shows_field_errors_and_saves_nothing(provider, client_for, overrides, field, text):
    client = client_for(provider.owner)
    response = client.post("/supply/sites/new/", site_form(**overrides), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-field-error="{field}"' in html
    assert text in html
    assert not Site.objects.exists()


def test_site_live_validation(provider, client_for):
    client = client_for(provider.owner)
    response = client.post("/supply/sites/validate/", {"pue": "0.8", "city": "中卫市"}, HTTP_ACCEPT_LANGUAGE="en")
    html = response.content.decode()
    assert response.status_code == 200
    box = re.search(r'<div id="fb-pue"[^>]*data-state="invalid"[^>]*>.*?</div></div>', html, re.S)
    assert box
    assert "at least 1.0" in box.group(0)
    assert re.search(r'id="fb-city"[^>]*data-state="valid"', html)
    assert re.search(r'id="fb-name"[^>]*data-state=""', html)  # not typed yet: no verdict


def test_pool_create_attest_and_see_verified(provider, client_for):
    client = client_for(provider.owner)
    site = make_site(provider)
    model = accelerator()
    response = client.get(f"/supply/pools/new/?site={site.public_id}")
    assert response.status_code == 200
    assert str(provider.public_id) in response.content.decode()
    response = client.post(
        "/supply/pools/new/",
        {
            "site": str(site.public_id),
            "accelerator_model": str(model.public_id),
            "name": "A栋",
            "accelerator_count": "16",
            "shares": f"{provider.public_id}, 100",
        },
    )
    pool = Pool.objects.get()
    assert response.status_code == 302
    assert pool.accelerator_count == 16
    assert pool.software_stack == "cuda"
    response = client.post(
        f"/supply/pools/{pool.public_id}/attest/",
        {"measured_tflops": "900", "measured_bw_tbps": "3.1", "raw_output": "gemm ...", "tool": "suanli-probe"},
    )
    assert response.status_code == 302
    html = client.get(f"/supply/pools/{pool.public_id}/").content.decode()
    assert 'data-testid="verified-badge"' in html
    assert 'data-unit="SCU" data-basis="attested"' in html
    assert "0.9" in html
    attestation = Attestation.objects.get()
    assert client.get(f"/supply/attestations/{attestation.public_id}/").status_code == 200
    response = client.post(f"/supply/pools/{pool.public_id}/status/", {"status": "listed"})
    pool.refresh_from_db()
    assert pool.status == PoolStatus.LISTED


def test_pool_bad_input_in_the_portal(provider, make_org, client_for):
    client = client_for(provider.owner)
    site = make_site(provider)
    foreign = make_site(make_org("provider"), name="别人的")
    response = client.post(
        "/supply/pools/new/",
        {
            "site": str(foreign.public_id),
            "accelerator_model": "00000000-0000-0000-0000-000000000000",
            "name": "x",
            "accelerator_count": "0",
            "shares": f"{provider.public_id}, 90",
        },
        HTTP_ACCEPT_LANGUAGE="en",
    )
    html = response.content.decode()
    assert response.status_code == 200
    for field in ("site", "accelerator_model", "accelerator_count", "shares"):
        assert f'data-field-error="{field}"' in html, field
    assert "add up to 90%" in html
    assert not Pool.objects.exists()
    live = client.post(
        "/supply/pools/validate/", {"site": str(site.public_id), "shares": "abc"}, HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert re.search(r'id="fb-shares"[^>]*data-state="invalid"', live)
    assert re.search(r'id="fb-site"[^>]*data-state="valid"', live)


def test_attestation_above_datasheet_offers_a_review(provider, client_for):
    client = client_for(provider.owner)
    pool = make_pool(make_site(provider))
    body = {"measured_tflops": "1600", "measured_bw_tbps": "3", "raw_output": "x"}
    html = client.post(f"/supply/pools/{pool.public_id}/attest/", body, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'data-field-error="measured_tflops"' in html
    assert 'name="request_review"' in html
    assert not Attestation.objects.exists()
    response = client.post(f"/supply/pools/{pool.public_id}/attest/", {**body, "request_review": "on"})
    assert response.status_code == 302
    assert Attestation.objects.get().status == "pending_review"


def test_site_suspend_and_edit(provider, client_for):
    client = client_for(provider.owner)
    site = make_site(provider)
    pool = make_pool(site, status=PoolStatus.LISTED)
    assert client.get(f"/supply/sites/{site.public_id}/edit/").status_code == 200
    client.post(f"/supply/sites/{site.public_id}/status/", {"status": "suspended"})
    pool.refresh_from_db()
    assert pool.status == PoolStatus.SUSPENDED
    response = client.post(f"/supply/sites/{site.public_id}/edit/", site_form(name="新名字", pue="1.3"))
    site.refresh_from_db()
    assert response.status_code == 302
    assert site.name == "新名字"
    assert site.pue == Decimal("1.30")


def test_viewers_read_but_do_not_write(provider, make_user, client_for):
    from accounts.models import Membership, Role

    viewer = make_user()
    Membership.objects.create(user=viewer, organization=provider, role=Role.VIEWER)
    client = client_for(viewer)
    site = make_site(provider)
    assert client.get("/supply/sites/").status_code == 200
    assert client.get(f"/supply/sites/{site.public_id}/").status_code == 200
    assert client.post("/supply/sites/new/", site_form(name="x")).status_code == 403
    assert client.post(f"/supply/sites/{site.public_id}/status/", {"status": "suspended"}).status_code == 403


def test_buyers_see_the_catalog_not_supply_pages(make_org, client_for):
    client = client_for(make_org("buyer").owner)
    assert client.get("/supply/sites/").status_code == 403
    html = client.get("/catalog/").content.decode()
    assert 'data-testid="nav-catalog"' in html

"""Supply API: every endpoint, the error envelope, tenancy (foreign ids are 404), scopes and idempotency."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from marketplace.models import Attestation, PoolStatus
from tests.marketplace.factories import accelerator, make_attestation, make_pool, make_site

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(provider, make_org, api_client_for):
    site = make_site(provider)
    pool = make_pool(site, status=PoolStatus.LISTED)
    other = make_org("provider")
    other_site = make_site(other, name="另一家")
    other_pool = make_pool(other_site)  # a draft
    return {
        "site": site,
        "pool": pool,
        "other_site": other_site,
        "other_pool": other_pool,
        "api": api_client_for(provider),
        "other_api": api_client_for(other),
    }


def test_catalog_is_public(client):
    response = client.get("/api/v1/catalog/accelerators")
    assert response.status_code == 200
    rows = response.json()
    h100 = next(r for r in rows if r["model"] == "H100 SXM5")
    assert h100["dense_fp16_bf16_tflops"] == "989.000"
    assert h100["standard_units"]["scu"] == {
        "value": "0.989",
        "unit": "SCU",
        "basis": "datasheet",
        "formula_version": h100["standard_units"]["scu"]["formula_version"],
    }
    assert h100["source_url"].startswith("https://www.nvidia.com")
    mlu590 = next(r for r in rows if r["model"] == "MLU590")
    assert mlu590["bf16_tflops"] is None
    assert mlu590["standard_units"]["scu"] is None
    domestic = client.get("/api/v1/catalog/accelerators?domestic=true").json()
    assert domestic
    assert all(r["domestic"] for r in domestic)
    detail = client.get(f"/api/v1/catalog/accelerators/{h100['id']}")
    assert detail.status_code == 200
    assert detail.json()["vendor"] == "NVIDIA"
    missing = client.get(f"/api/v1/catalog/accelerators/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "not_found"


def test_listing_is_public_and_shows_only_listing_fields(client, setup):
    response = client.get("/api/v1/listings/pools")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == [str(setup["pool"].public_id)]
    assert "shares" not in results[0]
    assert "status" not in results[0]
    assert "site" not in results[0]
    assert results[0]["standard_units_total"]["scu"]["value"] == "7.912"  # 8 x 0.989
    assert client.get(f"/api/v1/listings/pools/{setup['pool'].public_id}").status_code == 200
    assert client.get(f"/api/v1/listings/pools/{setup['other_pool'].public_id}").status_code == 404


def test_sites_own_only(setup):
    api = setup["api"]
    listed = api.get("/api/v1/sites").json()
    assert [s["id"] for s in listed] == [str(setup["site"].public_id)]
    assert api.get(f"/api/v1/sites/{setup['site'].public_id}").json()["pue"] == "1.20"
    foreign = api.get(f"/api/v1/sites/{setup['other_site'].public_id}")
    assert foreign.status_code == 404
    assert "errors" in foreign.json()


def test_pools_own_with_shares(setup):
    api = setup["api"]
    pools = api.get("/api/v1/pools").json()
    assert len(pools) == 1
    assert pools[0]["shares"][0]["share_pct"] == "100.00"
    assert pools[0]["verified"] is False
    assert pools[0]["standard_units"]["scu"]["basis"] == "datasheet"
    assert api.get(f"/api/v1/pools/{setup['pool'].public_id}").status_code == 200
    assert api.get(f"/api/v1/pools/{setup['other_pool'].public_id}").status_code == 404


def test_buyers_get_no_supply_endpoints(make_org, api_client_for, setup):
    buyer_api = api_client_for(make_org("buyer"))
    assert buyer_api.get("/api/v1/sites").status_code == 403
    assert buyer_api.get(f"/api/v1/pools/{setup['pool'].public_id}").status_code == 403


def test_attestation_submit_verifies_the_pool(setup):
    api, pool = setup["api"], setup["pool"]
    body = {"measured_tflops": "905.5", "measured_bw_tbps": "3.12", "raw_output": "gemm n=8192 ...", "tool": "probe"}
    response = api.post(f"/api/v1/pools/{pool.public_id}/attestations", body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "accepted"
    assert data["tflops_ratio"] == "0.9156"
    assert data["source"] == "api"
    assert data["standard_units"]["scu"]["value"] == "0.9055"
    assert data["submitted_by_label"].startswith("api-key:")
    pool_data = api.get(f"/api/v1/pools/{pool.public_id}").json()
    assert pool_data["verified"] is True
    assert pool_data["current_attestation"] == data["id"]
    assert pool_data["standard_units"]["scu"]["basis"] == "attested"
    history = api.get(f"/api/v1/pools/{pool.public_id}/attestations").json()
    assert [a["id"] for a in history] == [data["id"]]
    assert api.get(f"/api/v1/attestations/{data['id']}").json()["raw_output"] == "gemm n=8192 ..."


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"measured_tflops": "0", "measured_bw_tbps": "3"}, "measured_tflops", "not_positive"),
        ({"measured_tflops": "-1", "measured_bw_tbps": "3"}, "measured_tflops", "not_positive"),
        ({"measured_tflops": "2000", "measured_bw_tbps": "3"}, "measured_tflops", "above_datasheet"),
        ({"measured_tflops": "900", "measured_bw_tbps": "-3"}, "measured_bw_tbps", "not_positive"),
        ({"measured_tflops": "abc", "measured_bw_tbps": "3"}, "measured_tflops", "invalid"),
        ({"measured_bw_tbps": "3"}, "measured_tflops", "required"),
    ],
)
def test_attestation_bad_input_is_a_400_envelope_and_nothing_saved(setup, body, field, code):
    response = setup["api"].post(
        f"/api/v1/pools/{setup['pool'].public_id}/attestations", {"raw_output": "x", **body}, format="json"
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"field": field, "code": code} in [{"field": e["field"], "code": e["code"]} for e in errors], errors
    assert all(e["message"] for e in errors)
    assert not Attestation.objects.exists()


def test_attestation_above_datasheet_with_review_request(setup):
    response = setup["api"].post(
        f"/api/v1/pools/{setup['pool'].public_id}/attestations",
        {"measured_tflops": "2000", "measured_bw_tbps": "3", "raw_output": "x", "request_review": True},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["status"] == "pending_review"
    setup["pool"].refresh_from_db()
    assert not setup["pool"].verified


def test_attestation_on_another_providers_pool_is_404(setup):
    response = setup["api"].post(
        f"/api/v1/pools/{setup['other_pool'].public_id}/attestations",
        {"measured_tflops": "900", "measured_bw_tbps": "3", "raw_output": "x"},
        format="json",
    )
    assert response.status_code == 404
    other_attestation = make_attestation(setup["other_pool"])
    assert setup["api"].get(f"/api/v1/attestations/{other_attestation.public_id}").status_code == 404
    assert setup["api"].get(f"/api/v1/pools/{setup['other_pool'].public_id}/attestations").status_code == 404


def test_attestation_needs_the_supply_scope(setup, provider, api_client_for):
    read_only = api_client_for(provider, scopes=["market:read"])
    url = f"/api/v1/pools/{setup['pool'].public_id}/attestations"
    assert read_only.get(url).status_code == 200
    response = read_only.post(
        url, {"measured_tflops": "900", "measured_bw_tbps": "3", "raw_output": "x"}, format="json"
    )
    assert response.status_code == 403
    assert "supply:write" in response.json()["errors"][0]["message"]


def test_attestation_retry_with_idempotency_key_submits_once(setup):
    url = f"/api/v1/pools/{setup['pool'].public_id}/attestations"
    body = {"measured_tflops": "900", "measured_bw_tbps": "3", "raw_output": "x"}
    first = setup["api"].post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="probe-1")
    again = setup["api"].post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="probe-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert Attestation.objects.count() == 1
    changed = setup["api"].post(url, {**body, "measured_tflops": "901"}, format="json", HTTP_IDEMPOTENCY_KEY="probe-1")
    assert changed.status_code == 409


def test_schema_documents_the_supply_api(client):
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/catalog/accelerators",
        "/api/v1/catalog/accelerators/{model_id}",
        "/api/v1/listings/pools",
        "/api/v1/sites",
        "/api/v1/sites/{site_id}",
        "/api/v1/pools",
        "/api/v1/pools/{pool_id}",
        "/api/v1/pools/{pool_id}/attestations",
        "/api/v1/attestations/{attestation_id}",
    ):
        assert path in paths, path
    assert "post" in paths["/api/v1/pools/{pool_id}/attestations"]


def test_h20_vs_h100_in_the_catalog(client):
    rows = {r["model"]: r for r in client.get("/api/v1/catalog/accelerators").json()}
    assert Decimal(rows["H20"]["standard_units"]["bwu"]["value"]) > Decimal(
        rows["H100 SXM5"]["standard_units"]["bwu"]["value"]
    )
    assert accelerator("NVIDIA", "H20").normalised().scu.value == Decimal("0.148")

"""The market API: place, list and cancel offers and bids, leases for both sides, confirm and reject,
Idempotency-Key on writes, errors as the envelope, foreign ids as 404."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace.models import Bid, Lease, Offer
from tests.marketplace.factories import make_listed_pool, next_hour


def offer_body(pool, **overrides):
    start = next_hour()
    body = {
        "pool": str(pool.public_id),
        "accelerators": pool.accelerator_count,
        "start": start.isoformat(),
        "end": (start + timedelta(hours=24)).isoformat(),
        "ask": "12.500000",
    }
    body.update(overrides)
    return body


def bid_body(**overrides):
    start = next_hour()
    body = {
        "accelerators": 8,
        "hours": 24,
        "earliest_start": start.isoformat(),
        "latest_end": (start + timedelta(hours=24)).isoformat(),
        "limit_price": "20",
        "price_unit": "acc_hour",
        "workload": "training",
        "domestic_only": False,
    }
    body.update(overrides)
    return body


@pytest.mark.django_db
def test_offer_bid_lease_confirm_through_the_api(make_org, api_client_for):
    provider, buyer = make_org("provider"), make_org("buyer")
    pool = make_listed_pool(provider, count=8)
    seller, purchaser = api_client_for(provider), api_client_for(buyer)

    placed = seller.post("/api/v1/market/offers", offer_body(pool), format="json", HTTP_IDEMPOTENCY_KEY="o-1")
    assert placed.status_code == 201, placed.json()
    replay = seller.post("/api/v1/market/offers", offer_body(pool), format="json", HTTP_IDEMPOTENCY_KEY="o-1")
    assert replay.json()["id"] == placed.json()["id"]
    assert Offer.objects.count() == 1
    assert [o["id"] for o in seller.get("/api/v1/market/offers").json()] == [placed.json()["id"]]

    bid = purchaser.post("/api/v1/market/bids", bid_body(), format="json", HTTP_IDEMPOTENCY_KEY="b-1")
    assert bid.status_code == 201, bid.json()
    assert (bid.json()["status"], bid.json()["filled_accelerators"]) == ("filled", 8)
    other = purchaser.post("/api/v1/market/bids", bid_body(hours=2), format="json", HTTP_IDEMPOTENCY_KEY="b-1")
    assert other.status_code == 409  # same key, another body

    for client in (seller, purchaser):
        leases = client.get("/api/v1/market/leases").json()
        assert len(leases) == 1
        assert leases[0]["status"] == "pending"
    lease_id = leases[0]["id"]
    assert purchaser.post(f"/api/v1/market/leases/{lease_id}/confirm").status_code == 403  # buyers cannot
    confirmed = seller.post(f"/api/v1/market/leases/{lease_id}/confirm", {"note": "ok"}, format="json")
    assert confirmed.status_code == 200, confirmed.json()
    assert confirmed.json()["status"] == "active"
    detail = purchaser.get(f"/api/v1/market/leases/{lease_id}").json()
    assert [e["to_status"] for e in detail["events"]] == ["pending", "active"]
    again = seller.post(f"/api/v1/market/leases/{lease_id}/reject")
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "not_pending"

    stranger = api_client_for(make_org("buyer"))
    assert stranger.get(f"/api/v1/market/leases/{lease_id}").status_code == 404
    assert stranger.get(f"/api/v1/market/bids/{bid.json()['id']}").status_code == 404


@pytest.mark.django_db
def test_bad_orders_are_400_with_codes_and_cancel_works(make_org, api_client_for):
    provider, buyer = make_org("provider"), make_org("buyer")
    pool = make_listed_pool(provider, count=8)
    seller, purchaser = api_client_for(provider), api_client_for(buyer)

    bad = seller.post("/api/v1/market/offers", offer_body(pool, ask="0", accelerators=0), format="json")
    assert bad.status_code == 400
    assert {e["code"] for e in bad.json()["errors"]} >= {"price_not_positive", "accelerators_not_positive"}
    assert seller.post("/api/v1/market/bids", bid_body(), format="json").status_code == 403  # providers do not bid

    impossible = purchaser.post("/api/v1/market/bids", bid_body(min_green_share_pct=99), format="json")
    assert impossible.status_code == 400
    assert impossible.json()["errors"][0]["code"] == "unsatisfiable"
    assert not Bid.objects.exists()

    resting = purchaser.post("/api/v1/market/bids", bid_body(limit_price="1"), format="json")
    assert resting.json()["status"] == "open"
    cancelled = purchaser.post(f"/api/v1/market/bids/{resting.json()['id']}/cancel", HTTP_IDEMPOTENCY_KEY="c-1")
    assert cancelled.json()["status"] == "cancelled"
    assert purchaser.post(f"/api/v1/market/bids/{resting.json()['id']}/cancel").status_code == 409

    offer = seller.post("/api/v1/market/offers", offer_body(pool), format="json").json()
    assert seller.post(f"/api/v1/market/offers/{offer['id']}/cancel").json()["status"] == "cancelled"
    assert not Lease.objects.exists()

    read_only = api_client_for(buyer, ["market:read"])
    assert read_only.get("/api/v1/market/bids").status_code == 200
    assert read_only.post("/api/v1/market/bids", bid_body(), format="json").status_code == 403


def _company_in(organization, province):
    from accounts.models import CompanyProfile

    CompanyProfile.objects.create(
        organization=organization,
        legal_name=organization.name,
        uscc="91310000MA1FL0000X",
        registered_province=province,
        registered_city="某市",
        industry="software",
        size_class="small",
        legal_representative="某",
    )


@pytest.mark.django_db
def test_the_bid_api_takes_a_latency_tier_and_defaults_the_province_to_the_company(make_org, api_client_for):
    from marketplace.models import Cluster
    from tests.marketplace.factories import make_offer, make_pool, make_site

    west, east = make_org("provider"), make_org("provider")
    nx = make_site(west, "中卫", province="64", hub=Cluster.objects.get(name_zh="中卫数据中心集群").hub)
    sh = make_site(east, "临港", province="31")
    make_offer(make_pool(nx, "西部池", accelerator_count=8, status="listed"), ask="5")  # cheaper, far away
    make_offer(make_pool(sh, "上海池", accelerator_count=8, status="listed"), ask="9")
    buyer = make_org("buyer")
    _company_in(buyer, "31")
    purchaser = api_client_for(buyer)

    placed = purchaser.post(
        "/api/v1/market/bids",
        bid_body(accelerators=2, hours=4, workload="inference", latency_tier="region"),
        format="json",
        HTTP_IDEMPOTENCY_KEY="lat-1",
    )
    assert placed.status_code == 201, placed.json()
    assert "31" in placed.json()["provinces"]
    assert "64" not in placed.json()["provinces"]  # Ningxia is beyond ~10 ms of Shanghai
    assert Lease.objects.get().pool.site.province == "31"  # the dearer Shanghai pool, not the western one

    # An explicit province overrides the company's: from Ningxia, the western pool is in the region.
    ningxia = purchaser.post(
        "/api/v1/market/bids",
        bid_body(accelerators=2, hours=4, workload="inference", latency_tier="region", buyer_province="64"),
        format="json",
    )
    assert ningxia.status_code == 201, ningxia.json()
    assert "64" in ningxia.json()["provinces"]


@pytest.mark.django_db
def test_the_bid_api_refuses_bad_latency_input_with_field_and_code(make_org, api_client_for):
    provider = make_org("provider")
    make_listed_pool(provider, count=8)
    purchaser = api_client_for(make_org("buyer"))  # no company profile: no default province

    def error(**overrides):
        response = purchaser.post("/api/v1/market/bids", bid_body(workload="inference", **overrides), format="json")
        assert response.status_code == 400, response.json()
        return [(e["field"], e["code"]) for e in response.json()["errors"]]

    assert error(latency_tier="fast") == [("latency_tier", "invalid_choice")]
    assert error(latency_tier="near", buyer_province="99") == [("buyer_province", "invalid_choice")]
    assert error(latency_tier="near") == [("buyer_province", "buyer_province_required")]
    assert error(latency_tier="region", buyer_province="31", provinces=["64"]) == [("latency_tier", "unsatisfiable")]
    assert not Bid.objects.exists()


@pytest.mark.django_db
def test_the_openapi_schema_documents_the_latency_fields(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    schemas = schema["components"]["schemas"]
    fields = schemas["BidInputRequest"]["properties"]
    assert fields["latency_tier"]["default"] == "any"
    assert set(schemas["BidInputLatencyTierEnum"]["enum"]) == {"region", "near", "any"}
    assert "company registration" in fields["buyer_province"]["description"]

"""The token-market API: endpoints, token bids, contracts; Idempotency-Key on writes; field errors; scopes;
foreign ids are 404; the OpenAPI schema lists the operations."""

from __future__ import annotations

import pytest

from marketplace.models import TokenBid, TokenContract, TokenEndpoint
from tests.marketplace.factories import make_listed_pool
from tests.marketplace.token_factories import make_token_contract, next_month


def endpoint_body(pool, **overrides):
    body = {
        "pool": str(pool.public_id),
        "served_model": "Qwen3-32B",
        "price_input": "2",
        "price_output": "8",
        "throughput_tokens_per_s": 1000,
    }
    body.update(overrides)
    return body


def bid_body(**overrides):
    body = {
        "served_model": "Qwen3-32B",
        "limit_input": "4",
        "limit_output": "16",
        "monthly_tokens": 300_000_000,
        "start_month": next_month().isoformat(),
        "months": 6,
    }
    body.update(overrides)
    return body


@pytest.fixture(autouse=True)
def _catalog(db):
    from tests.marketplace.token_factories import served_model

    served_model()


@pytest.mark.django_db
def test_endpoint_bid_contract_confirm_through_the_api(make_org, api_client_for):
    provider, buyer = make_org("provider"), make_org("buyer")
    pool = make_listed_pool(provider)
    seller, purchaser = api_client_for(provider), api_client_for(buyer)

    models = seller.get("/api/v1/catalog/served-models").json()
    assert {"Qwen3-32B", "DeepSeek-V3"} <= {m["name"] for m in models}

    created = seller.post(
        "/api/v1/market/token-endpoints", endpoint_body(pool), format="json", HTTP_IDEMPOTENCY_KEY="e1"
    )
    assert created.status_code == 201, created.json()
    replay = seller.post(
        "/api/v1/market/token-endpoints", endpoint_body(pool), format="json", HTTP_IDEMPOTENCY_KEY="e1"
    )
    assert replay.json()["id"] == created.json()["id"]
    assert TokenEndpoint.objects.count() == 1
    other = seller.post(
        "/api/v1/market/token-endpoints", endpoint_body(pool, price_input="3"), format="json", HTTP_IDEMPOTENCY_KEY="e1"
    )
    assert other.status_code == 409  # same key, another body
    assert created.json()["capacity_monthly_tokens"] == 1000 * 2_592_000

    bid = purchaser.post("/api/v1/market/token-bids", bid_body(), format="json", HTTP_IDEMPOTENCY_KEY="b1")
    assert bid.status_code == 201, bid.json()
    assert bid.json()["status"] == "filled"
    contracts = purchaser.get("/api/v1/market/token-contracts").json()
    assert len(contracts) == 1
    assert (contracts[0]["price_input"], contracts[0]["status"]) == ("2.0000000000", "pending")
    contract_id = contracts[0]["id"]
    assert [c["id"] for c in seller.get("/api/v1/market/token-contracts?status=pending").json()] == [contract_id]

    # The buyer cannot confirm; the provider can, once (a replay with the key returns the same answer).
    assert purchaser.post(f"/api/v1/market/token-contracts/{contract_id}/confirm").status_code == 403
    confirmed = seller.post(
        f"/api/v1/market/token-contracts/{contract_id}/confirm", {}, format="json", HTTP_IDEMPOTENCY_KEY="c1"
    )
    assert confirmed.status_code == 200, confirmed.json()
    assert confirmed.json()["status"] == "active"
    assert [e["to_status"] for e in confirmed.json()["events"]] == ["pending", "active"]
    again = seller.post(
        f"/api/v1/market/token-contracts/{contract_id}/confirm", {}, format="json", HTTP_IDEMPOTENCY_KEY="c2"
    )
    assert again.status_code == 409
    detail = seller.get(f"/api/v1/market/token-endpoints/{created.json()['id']}").json()
    assert detail["committed_monthly_tokens"] == 300_000_000

    paused = seller.post(f"/api/v1/market/token-endpoints/{created.json()['id']}/pause")
    assert paused.json()["status"] == "paused"
    resting = purchaser.post("/api/v1/market/token-bids", bid_body(), format="json").json()
    assert resting["status"] == "open"
    cancelled = purchaser.post(f"/api/v1/market/token-bids/{resting['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert purchaser.get(f"/api/v1/market/token-bids/{resting['id']}").json()["status"] == "cancelled"


@pytest.mark.django_db
def test_bad_input_is_a_400_per_field_and_nothing_is_saved(make_org, api_client_for):
    provider, buyer = make_org("provider"), make_org("buyer")
    pool = make_listed_pool(provider)
    response = api_client_for(provider).post(
        "/api/v1/market/token-endpoints",
        endpoint_body(pool, served_model="no-such-model", price_output="-1", throughput_tokens_per_s=0),
        format="json",
    )
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"served_model", "price_output", "throughput_tokens_per_s"}
    response = api_client_for(buyer).post(
        "/api/v1/market/token-bids", bid_body(start_month="2020-01-01", months=0, monthly_tokens=-5), format="json"
    )
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"start_month", "months", "monthly_tokens"}
    assert not TokenEndpoint.objects.exists()
    assert not TokenBid.objects.exists()


@pytest.mark.django_db
def test_scopes_kinds_and_foreign_ids(make_org, api_client_for):
    provider, buyer = make_org("provider"), make_org("buyer")
    contract = make_token_contract(provider, buyer)
    read_only = api_client_for(provider, ["market:read"])
    assert read_only.get("/api/v1/market/token-endpoints").status_code == 200
    assert read_only.post(f"/api/v1/market/token-contracts/{contract.public_id}/confirm").status_code == 403
    assert api_client_for(buyer).get("/api/v1/market/token-endpoints").status_code == 403  # providers only

    stranger = api_client_for(make_org("provider"))
    assert stranger.get(f"/api/v1/market/token-contracts/{contract.public_id}").status_code == 404
    assert stranger.post(f"/api/v1/market/token-contracts/{contract.public_id}/confirm").status_code == 404
    assert stranger.get(f"/api/v1/market/token-endpoints/{contract.endpoint.public_id}").status_code == 404
    assert (
        api_client_for(make_org("buyer")).get(f"/api/v1/market/token-bids/{contract.bid.public_id}").status_code == 404
    )
    # The buyer sees its contract; the provider rejects it.
    assert api_client_for(buyer).get(f"/api/v1/market/token-contracts/{contract.public_id}").status_code == 200
    rejected = api_client_for(provider).post(f"/api/v1/market/token-contracts/{contract.public_id}/reject")
    assert rejected.json()["status"] == "cancelled"
    assert TokenContract.objects.get().status == "cancelled"


@pytest.mark.django_db
def test_the_schema_lists_the_token_operations(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content.decode()
    for operation in (
        "market_token_endpoints_create",
        "market_token_bids_create",
        "market_token_contracts_list",
        "catalog_served_models_list",
    ):
        assert operation in schema

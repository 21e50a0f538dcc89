"""Portal pages of the token market: a provider opens an endpoint (field errors on bad input), a buyer bids and
sees the contract, the provider confirms; committed / capacity on the endpoint list; other tenants get 404."""

from __future__ import annotations

import pytest

from marketplace.models import TokenBid, TokenContract, TokenEndpoint
from tests.marketplace.factories import make_listed_pool
from tests.marketplace.token_factories import make_token_contract, next_month, served_model


@pytest.fixture(autouse=True)
def _catalog(db):
    served_model()


@pytest.mark.django_db
def test_endpoint_then_bid_then_confirm_through_the_portal(make_org, client_for):
    provider, buyer = make_org("provider"), make_org("buyer")
    pool = make_listed_pool(provider)
    seller, purchaser = client_for(provider.owner), client_for(buyer.owner)
    assert seller.get("/market/tokens/endpoints/").status_code == 200
    form = seller.get("/market/tokens/endpoints/new/")
    assert "Qwen3-32B" in form.content.decode()
    assert pool.name in form.content.decode()

    bad = seller.post(
        "/market/tokens/endpoints/new/",
        {
            "pool": str(pool.public_id),
            "served_model": str(served_model().public_id),
            "price_input": "0",
            "price_output": "8",
            "throughput_tokens_per_s": "1000",
        },
    )
    assert bad.status_code == 200
    assert 'data-field-error="price_input"' in bad.content.decode()
    assert not TokenEndpoint.objects.exists()

    created = seller.post(
        "/market/tokens/endpoints/new/",
        {
            "pool": str(pool.public_id),
            "served_model": str(served_model().public_id),
            "price_input": "2",
            "price_output": "8",
            "throughput_tokens_per_s": "1000",
        },
    )
    assert created.status_code == 302
    endpoint = TokenEndpoint.objects.get()

    placed = purchaser.post(
        "/market/tokens/bids/new/",
        {
            "served_model": str(served_model().public_id),
            "limit_input": "3",
            "limit_output": "10",
            "monthly_tokens": "500",
            "start_month": next_month().isoformat(),
            "months": "3",
            "input_weight": "3",
            "output_weight": "1",
        },
    )
    assert placed.status_code == 302
    assert placed["Location"].endswith("/market/tokens/contracts/")
    contract = TokenContract.objects.get()
    assert contract.monthly_tokens == 500_000_000
    page = purchaser.get("/market/tokens/contracts/").content.decode()
    assert provider.name in page
    assert "Qwen3-32B" in page

    listing = seller.get("/market/tokens/endpoints/").content.decode()
    assert "500 / 2,592" in listing  # committed / capacity in million tokens per month
    response = seller.post(f"/market/tokens/contracts/{contract.public_id}/respond/", {"decision": "confirm"})
    assert response.status_code == 302
    contract.refresh_from_db()
    assert contract.status == "active"
    history = purchaser.get("/market/tokens/contracts/").content.decode()
    assert history.count('data-testid="contract-history"') == 1
    assert "matched (bid took liquidity)" in history

    paused = seller.post(f"/market/tokens/endpoints/{endpoint.public_id}/status/", {"action": "pause"})
    assert paused.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.status == "paused"


@pytest.mark.django_db
def test_token_bid_form_shows_field_errors_and_saves_nothing(make_org, client_for):
    make_listed_pool(make_org("provider"))
    buyer = make_org("buyer")
    response = client_for(buyer.owner).post(
        "/market/tokens/bids/new/",
        {
            "served_model": str(served_model().public_id),
            "limit_input": "3",
            "limit_output": "10",
            "monthly_tokens": "0",
            "start_month": next_month().isoformat(),
            "months": "0",
            "input_weight": "0",
            "output_weight": "0",
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    for field in ("monthly_tokens", "months", "input_weight"):
        assert f'data-field-error="{field}"' in page
    assert not TokenBid.objects.exists()
    resting = client_for(buyer.owner).get("/market/tokens/bids/")
    assert resting.status_code == 200


@pytest.mark.django_db
def test_other_tenants_and_kinds(make_org, client_for):
    provider, buyer = make_org("provider"), make_org("buyer")
    contract = make_token_contract(provider, buyer)
    stranger = client_for(make_org("provider").owner)
    response = stranger.post(f"/market/tokens/contracts/{contract.public_id}/respond/", {"decision": "confirm"})
    assert response.status_code == 404
    response = stranger.post(f"/market/tokens/endpoints/{contract.endpoint.public_id}/status/", {"action": "close"})
    assert response.status_code == 404
    assert client_for(buyer.owner).get("/market/tokens/endpoints/").status_code in (302, 403, 404)
    assert provider.name in client_for(buyer.owner).get("/market/tokens/contracts/").content.decode()
    contract.refresh_from_db()
    assert contract.status == "pending"


@pytest.mark.django_db
def test_the_bid_form_preview_ranks_endpoints_for_the_mix(make_org, client_for):
    from decimal import Decimal

    from tests.marketplace.token_factories import make_endpoint

    provider = make_org("provider")
    balanced = make_endpoint(provider)  # 2 / 8: blended 3.5 at 3:1
    input_cheap = make_endpoint(provider, price_input=Decimal("1"), price_output=Decimal("15"))  # 4.5 at 3:1
    client = client_for(make_org("buyer").owner)
    body = {
        "served_model": str(served_model().public_id),
        "limit_input": "5",
        "limit_output": "20",
        "monthly_tokens": "100",
        "input_weight": "3",
        "output_weight": "1",
    }
    page = client.post("/market/tokens/bids/preview/", body).content.decode()
    assert 'data-testid="token-match"' in page
    assert page.index("¥3.500") < page.index("¥4.500")  # the chosen one first
    # Input only (1:0): the input-cheap endpoint wins.
    page = client.post("/market/tokens/bids/preview/", {**body, "output_weight": "0", "input_weight": "1"})
    assert page.content.decode().index("¥1.000") < page.content.decode().index("¥2.000")
    # Limits below every price: nothing would match, and each quote says why.
    page = client.post("/market/tokens/bids/preview/", {**body, "limit_input": "0.5"}).content.decode()
    assert 'data-testid="token-no-match"' in page
    assert page.count('data-testid="token-quote"') == 2
    assert client.post("/market/tokens/bids/preview/", {"served_model": "nope"}).status_code == 200
    assert balanced.pk != input_cheap.pk

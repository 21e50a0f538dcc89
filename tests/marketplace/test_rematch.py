"""Re-matching at once when capacity and bids come back: a provider rejects a pending lease, or lets its
confirmation deadline pass. The returned bid takes another eligible offer, the returned capacity serves another
resting bid, never the pair that just failed, and the exclusion constraint still holds. Same for token contracts."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum

from marketplace import services, tasks
from marketplace.models import Bid, Lease, LeaseAllocation, Offer, TokenBid, TokenContract, TokenEndpoint
from tests.marketplace.factories import make_listed_pool, next_hour
from tests.marketplace.token_factories import next_month, served_model

pytestmark = pytest.mark.django_db


def offer(provider, pool, ask: str, hours: int = 24) -> Offer:
    start = next_hour()
    data = services.OfferInput(
        pool_id=pool.public_id,
        accelerators=pool.accelerator_count,
        start=start,
        end=start + timedelta(hours=hours),
        ask=Decimal(ask),
    )
    return services.offer_create(organization=provider, actor=None, data=data)


def bid(buyer, accelerators: int, limit: str, hours: int = 24) -> Bid:
    start = next_hour()
    data = services.BidInput(
        accelerators=accelerators,
        hours=hours,
        earliest_start=start,
        latest_end=start + timedelta(hours=24),
        limit_price=Decimal(limit),
    )
    return services.bid_create(organization=buyer, actor=None, data=data)


@pytest.fixture
def market(make_org):
    """Two providers with 8 accelerators each: A asks 10, B asks 12. A buyer's bid for 8 takes A."""
    cheap, dear, buyer = make_org("provider"), make_org("provider"), make_org("buyer")
    offer_a = offer(cheap, make_listed_pool(cheap, count=8, name="A 池"), "10")
    offer_b = offer(dear, make_listed_pool(dear, count=8, name="B 池"), "12")
    first = bid(buyer, 8, "20")
    lease = Lease.objects.get(bid=first)
    assert lease.offer == offer_a
    return {"cheap": cheap, "dear": dear, "buyer": buyer, "a": offer_a, "b": offer_b, "bid": first, "lease": lease}


def assert_never_sold_twice() -> None:
    allocations = list(LeaseAllocation.objects.all())
    for x in allocations:
        for y in allocations:
            if x.pk != y.pk and x.pool_id == y.pool_id and x.accelerator_index == y.accelerator_index:
                assert x.period.upper <= y.period.lower or y.period.upper <= x.period.lower


def test_a_rejected_bid_takes_the_next_offer_at_once(market):
    services.lease_respond(organization=market["cheap"], actor=None, lease=market["lease"], confirm=False)

    again = Lease.objects.get(bid=market["bid"], status="pending")
    assert again.offer == market["b"]  # the next eligible offer, at its price, without a new order arriving
    assert again.price == Decimal("12")
    market["bid"].refresh_from_db()
    assert (market["bid"].status, market["bid"].filled_accelerators) == ("filled", 8)
    market["a"].refresh_from_db()
    assert market["a"].status == "open"  # A's capacity is for sale again, but not to the bid it turned down
    assert_never_sold_twice()


def test_the_returned_capacity_serves_the_next_resting_bid_at_once(market, make_org):
    other = make_org("buyer")
    waiting = bid(other, 8, "11")  # below B's ask: rests, A is sold
    assert waiting.status == "open"

    services.lease_respond(organization=market["cheap"], actor=None, lease=market["lease"], confirm=False)

    waiting.refresh_from_db()
    assert waiting.status == "filled"
    assert Lease.objects.get(bid=waiting).offer == market["a"]
    assert Lease.objects.get(bid=market["bid"], status="pending").offer == market["b"]
    assert LeaseAllocation.objects.count() == 16
    assert_never_sold_twice()


def test_an_expired_confirmation_rematches_the_bid_and_the_capacity(market, make_org):
    other = make_org("buyer")
    waiting = bid(other, 8, "11")
    deadline = market["lease"].created_at - timedelta(minutes=1)
    Lease.objects.filter(pk=market["lease"].pk).update(confirm_by=deadline)  # the provider let it pass

    assert services.lease_expire_unconfirmed() == 1

    market["lease"].refresh_from_db()
    assert market["lease"].status == "cancelled"
    moved = Lease.objects.get(bid=market["bid"], status="pending")
    assert moved.offer == market["b"]
    assert moved.confirm_by > market["lease"].created_at + timedelta(hours=1)  # a fresh deadline for B
    assert Lease.objects.get(bid=waiting).offer == market["a"]
    assert services.lease_expire_unconfirmed() == 0  # the new leases are not due yet
    assert_never_sold_twice()


def test_with_nothing_else_eligible_the_bid_rests_and_the_pair_never_meets_again(make_org):
    provider, buyer = make_org("provider"), make_org("buyer")
    only = offer(provider, make_listed_pool(provider, count=4), "10")
    resting = bid(buyer, 4, "20")
    lease = Lease.objects.get()
    services.lease_respond(organization=provider, actor=None, lease=lease, confirm=False)
    resting.refresh_from_db()
    only.refresh_from_db()
    assert (resting.status, resting.filled_accelerators, only.status) == ("open", 0, "open")
    assert Lease.objects.count() == 1
    # The expiry task runs (nothing due) and a later unrelated order arrives: still no lease between the two.
    tasks.lease_expire_unconfirmed()
    assert not Lease.objects.exclude(pk=lease.pk).exists()


def test_the_task_path_rematches_too(market):
    Lease.objects.filter(pk=market["lease"].pk).update(confirm_by=market["lease"].created_at - timedelta(minutes=1))
    assert tasks.lease_expire_unconfirmed() == 1
    assert Lease.objects.get(bid=market["bid"], status="pending").offer == market["b"]
    sold = Lease.objects.exclude(status="cancelled").aggregate(n=Sum("accelerators"))["n"]
    assert sold == 8


# --- Token contracts ----------------------------------------------------------------------------------------


def endpoint(provider, price_input: str, throughput: int = 1000) -> TokenEndpoint:
    data = services.TokenEndpointInput(
        pool_id=make_listed_pool(provider, name=f"推理池 {price_input}").public_id,
        served_model=served_model().public_id,
        price_input=Decimal(price_input),
        price_output=Decimal("8"),
        throughput_tokens_per_s=throughput,
    )
    return services.token_endpoint_create(organization=provider, actor=None, data=data)


def token_bid(buyer, limit_input: str = "4", monthly_tokens: int = 500_000_000) -> TokenBid:
    data = services.TokenBidInput(
        served_model=served_model().public_id,
        limit_input=Decimal(limit_input),
        limit_output=Decimal("16"),
        monthly_tokens=monthly_tokens,
        start_month=next_month(),
        months=3,
    )
    return services.token_bid_create(organization=buyer, actor=None, data=data)


@pytest.fixture
def token_market(make_org):
    cheap, dear, buyer = make_org("provider"), make_org("provider"), make_org("buyer")
    first_endpoint = endpoint(cheap, "2")
    second_endpoint = endpoint(dear, "3", throughput=500)  # 1.296e9 tokens a month
    placed = token_bid(buyer)
    contract = TokenContract.objects.get(bid=placed)
    assert contract.endpoint == first_endpoint
    return {"cheap": cheap, "bid": placed, "contract": contract, "first": first_endpoint, "second": second_endpoint}


def test_a_rejected_token_bid_takes_the_next_endpoint_at_once(token_market):
    services.token_contract_reject(organization=token_market["cheap"], actor=None, contract=token_market["contract"])
    again = TokenContract.objects.get(bid=token_market["bid"], status="pending")
    assert again.endpoint == token_market["second"]
    token_market["bid"].refresh_from_db()
    assert token_market["bid"].status == "filled"
    token_market["first"].refresh_from_db()
    assert token_market["first"].committed_monthly_tokens == 0  # returned, and not sold back to the same bid


def test_an_expired_token_contract_rematches_the_bid_and_the_volume(token_market, make_org):
    waiting = token_bid(make_org("buyer"), monthly_tokens=2_300_000_000)
    assert waiting.status == "open"  # the cheap endpoint (2.59e9 tokens a month) has only 2.09e9 left
    TokenContract.objects.filter(pk=token_market["contract"].pk).update(
        confirm_by=token_market["contract"].created_at - timedelta(minutes=1)
    )
    assert tasks.token_contract_expire_unconfirmed() == 1

    assert TokenContract.objects.get(bid=token_market["bid"], status="pending").endpoint == token_market["second"]
    waiting.refresh_from_db()
    assert waiting.status == "filled"
    assert TokenContract.objects.get(bid=waiting).endpoint == token_market["first"]
    for each in TokenEndpoint.objects.all():
        assert each.committed_monthly_tokens <= each.capacity_monthly_tokens

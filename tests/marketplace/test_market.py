"""The market on PostgreSQL: offers and bids through the services, matching into leases with allocations, the
exclusion constraint that no accelerator-hour of a pool is sold twice, and a race of concurrent bids."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, connections, transaction

from core.errors import ApplicationError, ValidationFailed
from marketplace import services
from marketplace.models import Bid, Lease, LeaseAllocation, LeaseEvent, Offer, OrderStatus, Pool
from tests.marketplace.factories import make_lease, make_listed_pool, next_hour


def offer_input(pool: Pool, **overrides) -> services.OfferInput:
    start = next_hour()
    values: dict = {
        "pool_id": pool.public_id,
        "accelerators": pool.accelerator_count,
        "start": start,
        "end": start + timedelta(hours=24),
        "ask": Decimal("12.5"),
    }
    values.update(overrides)
    return services.OfferInput(**values)


def bid_input(**overrides) -> services.BidInput:
    start = next_hour()
    values: dict = {
        "accelerators": 1,
        "hours": 4,
        "earliest_start": start,
        "latest_end": start + timedelta(hours=24),
        "limit_price": Decimal("20"),
    }
    values.update(overrides)
    return services.BidInput(**values)


def codes(excinfo) -> set[str]:
    return {e.code for e in excinfo.value.errors}


@pytest.fixture
def buyer(make_org):
    return make_org("buyer")


@pytest.fixture
def provider(make_org):
    return make_org("provider")


@pytest.mark.django_db
def test_a_bid_matches_a_resting_offer_into_a_pending_lease(provider, buyer):
    pool = make_listed_pool(provider, count=8)
    offer = services.offer_create(organization=provider, actor=provider.owner, data=offer_input(pool))
    bid = services.bid_create(organization=buyer, actor=buyer.owner, data=bid_input(accelerators=8, hours=24))

    lease = Lease.objects.get()
    assert (lease.bid, lease.offer, lease.pool, lease.buyer, lease.provider) == (bid, offer, pool, buyer, provider)
    assert lease.accelerators == 8
    assert (lease.start, lease.end) == (offer.start, offer.end)
    assert lease.price == Decimal("12.5")  # the resting offer's price
    assert lease.status == "pending"
    assert sorted(LeaseAllocation.objects.values_list("accelerator_index", flat=True)) == list(range(8))
    bid.refresh_from_db()
    offer.refresh_from_db()
    assert (bid.status, bid.filled_accelerators, offer.status) == ("filled", 8, "filled")
    assert LeaseEvent.objects.filter(lease=lease).count() == 1


@pytest.mark.django_db
def test_an_offer_serves_resting_bids_at_their_price_and_a_limit_is_never_crossed(provider, buyer):
    pool = make_listed_pool(provider, count=4)
    low = services.bid_create(organization=buyer, actor=None, data=bid_input(limit_price=Decimal("5")))
    high = services.bid_create(organization=buyer, actor=None, data=bid_input(limit_price=Decimal("30")))
    services.offer_create(organization=provider, actor=None, data=offer_input(pool, ask=Decimal("10")))
    lease = Lease.objects.get()
    assert lease.bid == high
    assert lease.price == Decimal("30")  # the resting bid's price
    low.refresh_from_db()
    assert low.status == "open"


@pytest.mark.django_db
def test_reject_returns_the_capacity_and_confirm_activates(provider, buyer):
    pool = make_listed_pool(provider, count=2)
    services.offer_create(organization=provider, actor=None, data=offer_input(pool))
    bid = services.bid_create(organization=buyer, actor=None, data=bid_input(accelerators=2, hours=24))
    lease = Lease.objects.get()
    with pytest.raises(ApplicationError):
        services.lease_respond(organization=buyer, actor=None, lease=lease, confirm=True)
    services.lease_respond(organization=provider, actor=None, lease=lease, confirm=False)
    lease.refresh_from_db()
    bid.refresh_from_db()
    assert lease.status == "cancelled"
    assert not LeaseAllocation.objects.exists()
    assert (bid.status, bid.filled_accelerators) == ("open", 0)
    assert Offer.objects.get().status == "open"
    # The capacity is for sale again.
    services.bid_create(organization=buyer, actor=None, data=bid_input(accelerators=2, hours=24))
    second = Lease.objects.exclude(pk=lease.pk).get()
    services.lease_respond(organization=provider, actor=None, lease=second, confirm=True)
    second.refresh_from_db()
    assert second.status == "active"
    assert [e.to_status for e in second.events.all()] == ["pending", "active"]


@pytest.mark.django_db
def test_unconfirmed_leases_expire_once(provider, buyer):
    lease = make_lease(provider, buyer)
    later = lease.confirm_by + timedelta(seconds=1)
    assert services.lease_expire_unconfirmed(now=later) == 1
    assert services.lease_expire_unconfirmed(now=later) == 0
    lease.refresh_from_db()
    assert lease.status == "cancelled"
    assert not lease.allocations.exists()


@pytest.mark.django_db
def test_bad_offers_are_refused_and_nothing_is_saved(provider, make_org):
    pool = make_listed_pool(provider, count=8)
    other = make_listed_pool(make_org("provider"), count=8)
    suspended = make_listed_pool(provider, count=8, name="停用池")
    suspended.status = "suspended"
    suspended.save()
    past = next_hour(-3)
    cases = [
        (offer_input(other), "unknown_pool"),
        (offer_input(suspended), "pool_not_listed"),
        (offer_input(pool, start=past, end=past + timedelta(hours=2)), "window_in_past"),
        (offer_input(pool, end=next_hour()), "window_order"),
        (offer_input(pool, ask=Decimal(0)), "price_not_positive"),
        (offer_input(pool, ask=Decimal("-1")), "price_not_positive"),
        (offer_input(pool, accelerators=0), "accelerators_not_positive"),
        (offer_input(pool, accelerators=9), "beyond_pool_size"),
    ]
    for data, code in cases:
        with pytest.raises(ValidationFailed) as excinfo:
            services.offer_create(organization=provider, actor=None, data=data)
        assert code in codes(excinfo), (code, codes(excinfo))
    assert not Offer.objects.exists()

    services.offer_create(organization=provider, actor=None, data=offer_input(pool, accelerators=5))
    with pytest.raises(ValidationFailed) as excinfo:
        services.offer_create(organization=provider, actor=None, data=offer_input(pool, accelerators=4))
    assert codes(excinfo) == {"overlaps_offered_capacity"}
    services.offer_create(organization=provider, actor=None, data=offer_input(pool, accelerators=3))
    assert Offer.objects.count() == 2


@pytest.mark.django_db
def test_bad_bids_are_refused_and_nothing_is_saved(provider, buyer):
    make_listed_pool(provider, count=8)
    cases = [
        (bid_input(accelerators=0), "accelerators_not_positive"),
        (bid_input(hours=0), "hours_not_positive"),
        (bid_input(hours=-2), "hours_not_positive"),
        (bid_input(limit_price=Decimal(0)), "price_not_positive"),
        (bid_input(latest_end=next_hour()), "window_order"),
        (bid_input(accelerator_models=("00000000-0000-0000-0000-000000000000",)), "unknown_model"),
        (bid_input(accelerators=9), "beyond_pool_size"),
        (bid_input(min_green_share_pct=90), "unsatisfiable"),
        (bid_input(domestic_only=True), "unsatisfiable"),
    ]
    for data, code in cases:
        with pytest.raises(ValidationFailed) as excinfo:
            services.bid_create(organization=buyer, actor=None, data=data)
        assert code in codes(excinfo), (code, codes(excinfo))
    assert not Bid.objects.exists()
    # Split allowed: 9 may come from several pools.
    services.bid_create(organization=buyer, actor=None, data=bid_input(accelerators=9, split_allowed=True))
    assert Bid.objects.count() == 1


@pytest.mark.django_db
def test_cancel_only_own_open_orders(provider, buyer, make_org):
    pool = make_listed_pool(provider, count=8)
    offer = services.offer_create(organization=provider, actor=None, data=offer_input(pool))
    bid = services.bid_create(organization=buyer, actor=None, data=bid_input(limit_price=Decimal(1)))
    with pytest.raises(ApplicationError):
        services.bid_cancel(organization=make_org("buyer"), actor=None, bid=bid)
    assert services.bid_cancel(organization=buyer, actor=None, bid=bid).status == OrderStatus.CANCELLED
    assert services.offer_cancel(organization=provider, actor=None, offer=offer).status == OrderStatus.CANCELLED
    with pytest.raises(ApplicationError) as excinfo:
        services.offer_cancel(organization=provider, actor=None, offer=offer)
    assert excinfo.value.code == "not_open"


@pytest.mark.django_db
def test_the_database_refuses_an_overlapping_allocation(provider, buyer):
    lease = make_lease(provider, buyer, accelerators=2)
    with (
        pytest.raises(IntegrityError, match="allocation_no_double_sale"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "INSERT INTO marketplace_leaseallocation (lease_id, pool_id, accelerator_index, period)"
            " VALUES (%s, %s, 1, tstzrange(%s, %s, '[)'))",
            [lease.pk, lease.pool_id, lease.start + timedelta(hours=1), lease.end + timedelta(hours=5)],
        )
    # Touching periods ([a, b) then [b, c)) and another accelerator are fine.
    ids = [lease.pk, lease.pool_id]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO marketplace_leaseallocation (lease_id, pool_id, accelerator_index, period)"
            " VALUES (%s, %s, 1, tstzrange(%s, %s, '[)')), (%s, %s, 2, tstzrange(%s, %s, '[)'))",
            [lease.pk, lease.pool_id, lease.end, lease.end + timedelta(hours=1), *ids, lease.start, lease.end],
        )
    assert LeaseAllocation.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_racing_100_bids_against_10_accelerators_sells_exactly_10(make_org):
    provider = make_org("provider")
    pool = make_listed_pool(provider, count=10)
    offer = services.offer_create(
        organization=provider, actor=None, data=offer_input(pool, end=next_hour() + timedelta(hours=4))
    )
    buyers = [make_org("buyer") for _ in range(10)]
    barrier = threading.Barrier(100)
    # All 100 start together; at most 20 hold a database connection at once (the server allows ~100 clients
    # and other test runs share it). Each submission still races the others for the market lock.
    connections_free = threading.Semaphore(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def place(index: int) -> None:
        try:
            barrier.wait()
            data = bid_input(hours=4, latest_end=offer.end)
            with connections_free:
                try:
                    bid = services.bid_create(organization=buyers[index % 10], actor=None, data=data)
                finally:
                    connections.close_all()
            with lock:
                outcomes.append(bid.status)
        except Exception as error:
            with lock:
                outcomes.append(repr(error))

    threads = [threading.Thread(target=place, args=(i,)) for i in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(set(outcomes)) == ["filled", "open"], outcomes[:5]
    assert outcomes.count("filled") == 10
    assert sum(Lease.objects.values_list("accelerators", flat=True)) == 10
    allocations = list(LeaseAllocation.objects.filter(pool=pool))
    assert sorted(a.accelerator_index for a in allocations) == list(range(10))
    for a in allocations:
        for b in allocations:
            if a.pk != b.pk and a.accelerator_index == b.accelerator_index:
                assert a.period.upper <= b.period.lower or b.period.upper <= a.period.lower
    offer.refresh_from_db()
    assert offer.status == "filled"


@pytest.mark.django_db
def test_the_expiry_task_cancels_late_leases(provider, buyer):
    from marketplace import tasks

    lease = make_lease(provider, buyer)
    Lease.objects.filter(pk=lease.pk).update(confirm_by=lease.created_at - timedelta(minutes=1))
    assert tasks.lease_expire_unconfirmed() == 1
    assert tasks.lease_expire_unconfirmed() == 0
    lease.refresh_from_db()
    assert lease.status == "cancelled"


@pytest.mark.django_db
def test_the_leases_page_for_both_sides(provider, buyer, client_for):
    lease = make_lease(provider, buyer)
    for organization in (provider, buyer):
        page = client_for(organization.owner).get("/market/leases/")
        assert page.status_code == 200
        assert lease.pool.name in page.content.decode()
    seller = client_for(provider.owner)
    response = seller.post(f"/market/leases/{lease.public_id}/respond/", {"decision": "confirm"})
    assert response.status_code == 302
    lease.refresh_from_db()
    assert lease.status == "active"
    assert client_for(buyer.owner).post(f"/market/leases/{lease.public_id}/respond/").status_code == 403


@pytest.mark.django_db
def test_hours_already_gone_are_not_for_sale(provider, buyer):
    from tests.marketplace.factories import make_offer

    pool = make_listed_pool(provider, count=1)
    offer = make_offer(pool, start=next_hour(-2), hours=4)  # two hours gone, two left
    services.bid_create(
        organization=buyer, actor=None, data=bid_input(hours=2, earliest_start=next_hour(0), latest_end=offer.end)
    )
    lease = Lease.objects.get()
    assert (lease.start, lease.end) == (next_hour(0), offer.end)
    offer.refresh_from_db()
    assert offer.status == "filled"  # nothing left to sell


@pytest.mark.django_db
def test_done_means_a_shanghai_training_bid_lands_on_a_green_western_domestic_pool(make_org, api_client_for):
    """Issue 4: 8 domestic accelerators for 24 h, training, green share >= 50%, limit per SCU-hour."""
    from marketplace.models import AcceleratorModel, Hub
    from tests.marketplace.factories import accelerator, make_attestation, make_pool, make_site

    ascend = AcceleratorModel.objects.get(vendor="Huawei", name__startswith="Ascend 910B")

    def pool_at(provider, site_name, province, hub, green, model, ask):
        site = make_site(
            provider, name=site_name, province=province, hub=Hub.objects.get(code=hub), green_share_pct=green
        )
        pool = make_pool(site, name=f"{site_name} 池", model=model, accelerator_count=16, status="listed")
        attestation = make_attestation(pool, tflops="280", tbps="1.6")
        Pool.objects.filter(pk=pool.pk).update(current_attestation=attestation, verified=True)
        services.offer_create(organization=provider, actor=None, data=offer_input(pool, ask=Decimal(ask)))
        return pool

    west_provider, east_provider = make_org("provider"), make_org("provider")
    western = pool_at(west_provider, "中卫", "64", "nx", 65, ascend, "5")  # 0.28 SCU: ¥17.86 per SCU-hour
    pool_at(east_provider, "临港", "31", "csj", 20, ascend, "4")  # cheaper, but not green enough
    pool_at(east_provider, "中卫外资", "64", "nx", 90, accelerator(), "3")  # green and cheap, but not domestic

    buyer = make_org("buyer")
    bid = services.bid_create(
        organization=buyer,
        actor=None,
        data=bid_input(
            accelerators=8,
            hours=24,
            limit_price=Decimal("18"),
            price_unit="scu_hour",
            workload="training",
            domestic_only=True,
            min_green_share_pct=50,
        ),
    )
    assert bid.status == "filled"
    lease = Lease.objects.get()
    assert (lease.pool, lease.provider, lease.accelerators, lease.price) == (western, west_provider, 8, Decimal(5))

    confirmed = api_client_for(west_provider).post(f"/api/v1/market/leases/{lease.public_id}/confirm")
    assert confirmed.json()["status"] == "active"
    for organization in (west_provider, buyer):
        seen = api_client_for(organization).get("/api/v1/market/leases").json()
        assert [(s["id"], s["status"]) for s in seen] == [(str(lease.public_id), "active")]


@pytest.mark.django_db
def test_orders_past_their_window_expire(provider, buyer):
    from tests.marketplace.factories import make_bid, make_offer

    offer = make_offer(make_listed_pool(provider), hours=2)
    bid = make_bid(buyer, hours=2)
    later = offer.end + timedelta(minutes=1)
    assert services.order_expire_due(now=later) == 2
    assert services.order_expire_due(now=later) == 0
    offer.refresh_from_db()
    bid.refresh_from_db()
    assert (offer.status, bid.status) == ("expired", "expired")

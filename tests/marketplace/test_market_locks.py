"""The market's locks are per accelerator model: while one model's market is busy (its lock held by another
connection), a bid for another model goes through at once, while a bid that accepts any model, or one for the
busy model, waits. On real PostgreSQL connections."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from marketplace import services
from marketplace.models import Bid
from tests.marketplace.factories import accelerator, make_listed_pool, make_offer, next_hour


def bid_input(*models) -> services.BidInput:
    start = next_hour()
    return services.BidInput(
        accelerators=1,
        hours=4,
        earliest_start=start,
        latest_end=start + timedelta(hours=24),
        limit_price=Decimal("1"),  # below every ask: it rests
        accelerator_models=tuple(str(m.public_id) for m in models),
    )


@pytest.mark.django_db(transaction=True)
def test_a_busy_model_does_not_hold_up_bids_for_another(make_org):
    provider, buyer = make_org("provider"), make_org("buyer")
    h100 = make_listed_pool(provider, count=8, name="H100 池").accelerator_model
    h20 = accelerator("NVIDIA", "H20")
    make_offer(make_listed_pool(provider, count=8, name="H20 池", model=h20))
    holding, release = threading.Event(), threading.Event()

    def hold_the_h100_market() -> None:
        try:
            with transaction.atomic():
                services._market_lock({h100.pk})
                holding.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_h100_market)
    holder.start()
    assert holding.wait(10)
    try:
        placed = services.bid_create(organization=buyer, actor=None, data=bid_input(h20))  # does not wait
        assert placed.status == "open"
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
        for blocked in (bid_input(h100), bid_input(), bid_input(h20, h100)):
            with pytest.raises(Exception, match="lock timeout"):
                services.bid_create(organization=buyer, actor=None, data=blocked)
    finally:
        release.set()
        holder.join()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    assert Bid.objects.count() == 1
    services.bid_create(organization=buyer, actor=None, data=bid_input(h100))  # free again
    assert Bid.objects.count() == 2


@pytest.mark.django_db
def test_the_cheapest_first_pass_gives_the_same_trades_as_the_whole_book(make_org):
    """Bid matching reads the 32 cheapest offers first and the whole book only when they do not fill the bid:
    either way the trades are the engine's on the whole book (price, then time priority)."""
    provider, buyer = make_org("provider"), make_org("buyer")
    pool = make_listed_pool(provider, count=64)
    start = next_hour()
    # 40 one-accelerator offers, dearest first in time; two at the cheapest price (the older one goes first).
    for ask in range(40, 0, -1):
        make_offer(pool, accelerators=1, ask=str(ask), start=start)
    tie = make_offer(pool, accelerators=1, ask="1", start=start)

    def place(accelerators: int) -> list[Decimal]:
        data = services.BidInput(
            accelerators=accelerators,
            hours=24,  # each offer's whole window: one lease takes it
            earliest_start=start,
            latest_end=start + timedelta(hours=24),
            limit_price=Decimal("100"),
            split_allowed=True,
        )
        placed = services.bid_create(organization=buyer, actor=None, data=data)
        assert placed.status == "filled"
        return sorted(lease.price for lease in placed.leases.all())

    first = place(2)  # within the first pass
    assert first == [Decimal(1), Decimal(1)]
    assert services.Lease.objects.filter(offer=tie).exists()
    many = place(35)  # beyond it: the whole book
    assert many == [Decimal(n) for n in range(2, 37)]

"""The matching engine alone: price-time priority, normalised units, constraints, windows, and properties."""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.matching import (
    MICRO,
    Bid,
    Constraints,
    Offer,
    OrderBook,
    PoolAttributes,
    PriceUnit,
    Trade,
)


def pool(pool_id="p1", model="H100 SXM5", scu=0.9, bwu=3.35, **overrides) -> PoolAttributes:
    values = dict(
        pool_id=pool_id,
        model=model,
        vendor="NVIDIA",
        domestic=False,
        verified=True,
        hub="nmg",
        province="15",
        green_share_pct=60,
        pue_milli=1200,
        tflops=900,
        memory_gb=80,
        scu_micro=int(scu * MICRO),
        bwu_micro=int(bwu * MICRO),
    )
    values.update(overrides)
    return PoolAttributes(**values)


def yuan(value) -> int:
    return round(value * MICRO)


def offer(offer_id="o1", accelerators=8, start=0, end=24, ask=10.0, **pool_overrides) -> Offer:
    return Offer(
        offer_id,
        pool(pool_id=pool_overrides.pop("pool_id", f"pool-{offer_id}"), **pool_overrides),
        accelerators,
        start,
        end,
        yuan(ask),
    )


def bid(bid_id="b1", accelerators=8, hours=4, start=0, end=24, limit=12.0, **fields) -> Bid:
    return Bid(bid_id, accelerators, hours, start, end, yuan(limit), **fields)


def test_incoming_bid_trades_at_the_resting_ask():
    book = OrderBook()
    assert book.add_offer(offer(ask=10)) == []
    [trade] = book.add_bid(bid(limit=12))
    assert (trade.price_micro, trade.accelerators, trade.start_hour, trade.end_hour) == (yuan(10), 8, 0, 4)
    assert trade.aggressor == "bid"


def test_incoming_offer_trades_at_the_resting_bid_price():
    book = OrderBook()
    assert book.add_bid(bid(limit=12)) == []
    [trade] = book.add_offer(offer(ask=10))
    assert trade.price_micro == yuan(12)
    assert trade.aggressor == "offer"


def test_limit_per_scu_hour_is_exact():
    # 8.5 ¥/accelerator-hour at 0.9 SCU per accelerator-hour is 9.4444... ¥/SCU-hour.
    book = OrderBook()
    book.add_offer(offer(ask=8.5, scu=0.9))
    assert book.add_bid(bid("low", limit=9.444444, unit=PriceUnit.SCU_HOUR)) == []
    [trade] = book.add_bid(bid("high", limit=9.444445, unit=PriceUnit.SCU_HOUR))
    assert trade.bid_id == "high"


def test_limit_is_exact_when_sort_keys_tie():
    # 1 ¥ at 1.000001 SCU is 0.999999000001 ¥/SCU-h: its floor sort key equals that of a 0.999999 limit, yet it
    # is above the limit. An offer behind it with the same key at exactly 0.999999 ¥/SCU-h must still trade.
    book = OrderBook()
    book.add_offer(offer("above", ask=1.0, scu_micro=1_000_001))
    book.add_offer(offer("exact", ask=0.999999, scu_micro=1_000_000))
    [trade] = book.add_bid(bid(limit=0.999999, unit=PriceUnit.SCU_HOUR))
    assert trade.offer_id == "exact"


def test_cheapest_normalised_offer_wins_not_cheapest_per_card():
    # H20: cheap per card but weak (0.148 SCU); H100: dearer per card, far cheaper per SCU-hour.
    book = OrderBook()
    book.add_offer(offer("h20", ask=4.0, model="H20", scu=0.148))  # 27.03 ¥/SCU-h
    book.add_offer(offer("h100", ask=18.0, scu=0.9))  # 20 ¥/SCU-h
    [trade] = book.add_bid(bid(limit=30, unit=PriceUnit.SCU_HOUR))
    assert trade.offer_id == "h100"
    # ... and the other way round for memory-bound serving, priced per BWU-hour.
    book.add_offer(offer("h20b", ask=4.0, model="H20", scu=0.148, bwu=4.0))  # 1 ¥/BWU-h
    book.add_offer(offer("h100b", ask=18.0, scu=0.9, bwu=3.35))  # 5.37 ¥/BWU-h
    [trade] = book.add_bid(bid("mem", limit=6, unit=PriceUnit.BWU_HOUR))
    assert trade.offer_id in {"h20", "h20b"}


def test_time_priority_breaks_price_ties():
    book = OrderBook()
    book.add_offer(offer("first", ask=10))
    book.add_offer(offer("second", ask=10))
    [trade] = book.add_bid(bid(limit=10))
    assert trade.offer_id == "first"


def test_constraints_are_hard_filters():
    book = OrderBook()
    book.add_offer(offer("cheap-grey", ask=5, green_share_pct=10))
    book.add_offer(offer("foreign", ask=6, green_share_pct=90))
    book.add_offer(offer("domestic", ask=9, green_share_pct=90, domestic=True, model="Ascend 910B", vendor="Huawei"))
    wanted = Constraints(min_green_share_pct=50, domestic_only=True)
    [trade] = book.add_bid(bid(limit=12, constraints=wanted))
    assert trade.offer_id == "domestic"


def test_all_in_one_pool_unless_split_allowed():
    book = OrderBook()
    book.add_offer(offer("a", accelerators=4, ask=10))
    book.add_offer(offer("b", accelerators=4, ask=11))
    assert book.add_bid(bid("whole", accelerators=8)) == []
    assert "whole" in book.bids  # it rests, waiting for a pool with 8
    trades = book.add_bid(bid("split", accelerators=8, split_allowed=True))
    assert [(t.offer_id, t.accelerators) for t in trades] == [("a", 4), ("b", 4)]
    assert len({(t.start_hour, t.end_hour) for t in trades}) == 1  # the parts run together


def test_capacity_over_time_and_earliest_start():
    book = OrderBook()
    book.add_offer(offer("o", accelerators=8, start=0, end=24, ask=10))
    [first] = book.add_bid(bid("b1", accelerators=8, hours=10))
    [second] = book.add_bid(bid("b2", accelerators=8, hours=10))
    assert (first.start_hour, second.start_hour) == (0, 10)
    assert book.add_bid(bid("b3", accelerators=8, hours=10)) == []  # only 4 hours left
    [third] = book.add_bid(bid("b4", accelerators=8, hours=4))
    assert third.start_hour == 20
    assert "o" not in book.offers  # sold out: leaves the book


def test_min_lease_hours_and_window():
    book = OrderBook()
    o = offer("o", start=10, end=20)
    o.min_lease_hours = 6
    book.add_offer(o)
    assert book.add_bid(bid("short", hours=4, start=0, end=30)) == []
    assert book.add_bid(bid("outside", hours=6, start=0, end=12)) == []
    [trade] = book.add_bid(bid("ok", hours=6, start=0, end=30))
    assert trade.start_hour == 10


def test_cancel_removes_from_matching():
    book = OrderBook()
    book.add_offer(offer("o"))
    assert book.cancel_offer("o")
    assert book.add_bid(bid()) == []
    assert not book.cancel_offer("o")


# --- properties ---------------------------------------------------------------------------------------

MODELS = [("H100 SXM5", 0.9, 3.35, False), ("H20", 0.148, 4.0, False), ("Ascend 910B", 0.32, 1.6, True)]


@st.composite
def orders(draw):
    result = []
    for index in range(draw(st.integers(1, 40))):
        model, scu, bwu, domestic = draw(st.sampled_from(MODELS))
        arrival = draw(st.integers(0, 5))
        start = draw(st.integers(0, 20))
        if draw(st.booleans()):
            o = Offer(
                f"o{index}",
                pool(f"p{index % 7}", model, scu, bwu, domestic=domestic, green_share_pct=draw(st.integers(0, 100))),
                draw(st.integers(1, 16)),
                start,
                start + draw(st.integers(1, 30)),
                draw(st.integers(1, 30_000_000)),
                arrival=arrival,
            )
            result.append(o)
        else:
            hours = draw(st.integers(1, 12))
            result.append(
                Bid(
                    f"b{index}",
                    draw(st.integers(1, 16)),
                    hours,
                    start,
                    start + hours + draw(st.integers(0, 20)),
                    draw(st.integers(1, 60_000_000)),
                    unit=draw(st.sampled_from(list(PriceUnit))),
                    constraints=Constraints(
                        min_green_share_pct=draw(st.sampled_from([0, 0, 50])), domestic_only=draw(st.booleans())
                    ),
                    split_allowed=draw(st.booleans()),
                    arrival=arrival,
                )
            )
    return result


def _fresh(items):
    """Deep enough copies: the engine mutates fills and allocations."""
    copies = []
    for item in items:
        if isinstance(item, Offer):
            copies.append(
                Offer(
                    item.offer_id,
                    item.pool,
                    item.accelerators,
                    item.start_hour,
                    item.end_hour,
                    item.ask_micro,
                    item.min_lease_hours,
                    item.arrival,
                )
            )
        else:
            copies.append(
                Bid(
                    item.bid_id,
                    item.accelerators,
                    item.hours,
                    item.earliest_start_hour,
                    item.latest_end_hour,
                    item.limit_micro,
                    item.unit,
                    item.constraints,
                    item.split_allowed,
                    item.arrival,
                )
            )
    return copies


@settings(max_examples=300, deadline=None)
@given(orders())
def test_never_oversells_never_trades_through_a_limit(batch):
    book = OrderBook()
    trades: list[Trade] = book.submit_batch(_fresh(batch))
    offers = {o.offer_id: o for o in batch if isinstance(o, Offer)}
    bids = {b.bid_id: b for b in batch if isinstance(b, Bid)}
    used = defaultdict(int)
    per_bid = defaultdict(list)
    for t in trades:
        o, b = offers[t.offer_id], bids[t.bid_id]
        assert o.start_hour <= t.start_hour < t.end_hour <= o.end_hour
        assert b.earliest_start_hour <= t.start_hour
        assert t.end_hour <= b.latest_end_hour
        assert t.end_hour - t.start_hour == b.hours
        # Never below the ask, never above the limit in the bid's own unit (exact integers).
        assert t.price_micro >= o.ask_micro
        assert t.price_micro * MICRO <= b.limit_micro * o.pool.unit_micro(b.unit)
        assert b.constraints.accepts(o.pool)
        for hour in range(t.start_hour, t.end_hour):
            used[(t.offer_id, hour)] += t.accelerators
        per_bid[t.bid_id].append(t)
    for (offer_id, _hour), count in used.items():
        assert count <= offers[offer_id].accelerators
    for bid_id, fills in per_bid.items():
        b = bids[bid_id]
        assert sum(t.accelerators for t in fills) <= b.accelerators
        assert len({t.start_hour for t in fills}) == 1
        if not b.split_allowed:
            assert len(fills) == 1
            assert fills[0].accelerators == b.accelerators


@settings(max_examples=200, deadline=None)
@given(orders(), st.randoms(use_true_random=False))
def test_deterministic_under_permutation_of_simultaneous_arrivals(batch, rng: random.Random):
    shuffled = list(batch)
    rng.shuffle(shuffled)
    assert OrderBook().submit_batch(_fresh(batch)) == OrderBook().submit_batch(_fresh(shuffled))

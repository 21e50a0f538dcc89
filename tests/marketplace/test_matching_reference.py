"""The indexed engine makes exactly the trades of the slow reference engine, on random books and streams."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.matching import MICRO, Bid, Constraints, Offer, OrderBook, PoolAttributes, PriceUnit
from tests.marketplace.matching_reference import ReferenceOrderBook, _earliest_start, _free, _sold_out

# (model, domestic, SCU per accelerator-hour, BWU per accelerator-hour, typical ¥/accelerator-hour)
MODELS = [
    ("H100", False, 0.989, 3.35, 18.0),
    ("H20", False, 0.148, 4.0, 6.0),
    ("910B", True, 0.32, 1.6, 7.0),
    ("MTT", True, 0.1, 0.0, 3.5),  # no BWU figure: not offered per BWU-hour
]
HUBS = [("nmg", "15"), ("nx", "64"), ("csj", "31"), (None, "44")]


def _pools(rng: random.Random) -> list[PoolAttributes]:
    pools = []
    for index in range(rng.randint(1, 12)):
        model, domestic, scu, bwu, _price = rng.choice(MODELS)
        hub, province = rng.choice(HUBS)
        pools.append(
            PoolAttributes(
                f"pool{index}",
                model,
                "vendor",
                domestic,
                rng.random() < 0.7,
                hub,
                province,
                rng.randint(0, 100),
                rng.randint(1050, 1600),
                rng.choice([300, 600, 900]),
                rng.choice([48, 80, 141]),
                int(scu * MICRO * rng.uniform(0.9, 1.0)),
                int(bwu * MICRO),
            )
        )
    return pools


def _price(rng: random.Random, base: float) -> int:
    # Coarse prices so that ties on price (time priority, id order) happen often.
    return max(1, int(round(base * rng.choice([0.8, 0.9, 1.0, 1.0, 1.1, 1.3]), 1) * MICRO))


def _offer(rng: random.Random, pools: list[PoolAttributes], index: int, horizon: int) -> Offer:
    pool = rng.choice(pools)
    base = next(m[4] for m in MODELS if m[0] == pool.model)
    start = rng.randint(0, horizon)
    offer = Offer(
        f"o{index}",
        pool,
        rng.choice([1, 2, 4, 8, 16]),
        start,
        start + rng.randint(1, 60),
        _price(rng, base),
        rng.choice([1, 1, 4, 12]),
        rng.randint(0, 3),
    )
    if rng.random() < 0.1:  # capacity already sold before the book was built (as services pass it)
        s = rng.randint(offer.start_hour, offer.end_hour - 1)
        offer.allocations.append((s, rng.randint(s + 1, offer.end_hour), rng.randint(1, offer.accelerators)))
    return offer


def _bid(rng: random.Random, index: int, horizon: int) -> Bid:
    _model, domestic, scu, bwu, base = rng.choice(MODELS)
    unit = rng.choice(list(PriceUnit))
    per_acc = _price(rng, base)
    divisor = {PriceUnit.ACCELERATOR_HOUR: 1.0, PriceUnit.SCU_HOUR: scu, PriceUnit.BWU_HOUR: bwu or 2.0}[unit]
    names = rng.random()
    constraints = Constraints(
        models=None if names < 0.4 else frozenset(rng.sample([m[0] for m in MODELS], 1 if names < 0.8 else 2)),
        min_tflops=rng.choice([0, 0, 500]),
        min_memory_gb=rng.choice([0, 0, 80]),
        hubs=rng.choice([None, None, frozenset({"nmg", "nx"})]),
        provinces=rng.choice([None, None, frozenset({"15", "31", "44"})]),
        min_green_share_pct=rng.choice([0, 0, 30, 60]),
        max_pue_milli=rng.choice([None, None, 1300]),
        domestic_only=domestic and rng.random() < 0.3,
        verified_only=rng.random() < 0.2,
    )
    hours = rng.choice([1, 2, 4, 12, 24])
    start = rng.randint(0, horizon)
    bid = Bid(
        f"b{index}",
        rng.choice([1, 2, 4, 8, 12]),
        hours,
        start,
        start + hours + rng.randint(-1, 30),  # sometimes a window too short to hold the lease
        int(per_acc / divisor),
        unit,
        constraints,
        rng.random() < 0.4,
        rng.randint(0, 3),
    )
    if bid.split_allowed and rng.random() < 0.1 and bid.latest_end_hour - bid.earliest_start_hour >= hours:
        bid.filled = rng.randint(0, bid.accelerators - 1)  # partly filled earlier (as services pass it)
        if bid.filled:
            bid.fixed_start_hour = rng.randint(bid.earliest_start_hour, bid.latest_end_hour - hours)
    return bid


def _copy(order: Bid | Offer) -> Bid | Offer:
    if isinstance(order, Offer):
        return Offer(
            order.offer_id,
            order.pool,
            order.accelerators,
            order.start_hour,
            order.end_hour,
            order.ask_micro,
            order.min_lease_hours,
            order.arrival,
            list(order.allocations),
        )
    return Bid(
        order.bid_id,
        order.accelerators,
        order.hours,
        order.earliest_start_hour,
        order.latest_end_hour,
        order.limit_micro,
        order.unit,
        order.constraints,
        order.split_allowed,
        order.arrival,
        order.filled,
        order.fixed_start_hour,
    )


def _replay(rng: random.Random, orders: int, horizon: int) -> int:
    """Feed one random stream (with cancels and simultaneous batches) to both books; compare after each step."""
    pools = _pools(rng)
    engine, reference = OrderBook(), ReferenceOrderBook()
    trades = 0
    index = 0
    while index < orders:
        step = rng.random()
        if step < 0.05 and (engine.offers or engine.bids):
            ids = sorted(engine.offers) + sorted(engine.bids)
            victim = rng.choice(ids)
            if victim.startswith("o"):
                assert engine.cancel_offer(victim) == reference.cancel_offer(victim) is True
            else:
                assert engine.cancel_bid(victim) == reference.cancel_bid(victim) is True
            continue
        size = 1 if step < 0.9 else rng.randint(2, 6)
        batch = [
            _offer(rng, pools, index + i, horizon) if rng.random() < 0.5 else _bid(rng, index + i, horizon)
            for i in range(size)
        ]
        index += size
        mine = engine.submit_batch([_copy(o) for o in batch])
        theirs = reference.submit_batch([_copy(o) for o in batch])
        assert mine == theirs
        trades += len(mine)
        assert engine.offers.keys() == reference.offers.keys()
        assert engine.bids.keys() == reference.bids.keys()
    for offer_id, offer in engine.offers.items():
        assert offer.allocations == reference.offers[offer_id].allocations
    for bid_id, bid in engine.bids.items():
        other = reference.bids[bid_id]
        assert (bid.filled, bid.fixed_start_hour) == (other.filled, other.fixed_start_hour)
    return trades


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 120), st.sampled_from([0, 12, 48, 200]))
def test_same_trades_as_the_reference_on_random_books(rng: random.Random, orders: int, horizon: int):
    _replay(rng, orders, horizon)


@pytest.mark.parametrize("seed", range(6))
def test_same_trades_as_the_reference_on_deep_books(seed: int):
    # Thousands of resting orders: long scans, merged lists of several models and units, many sold-out offers.
    assert _replay(random.Random(seed), 3_000, 24 * 14) > 100


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 16),
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 20), st.integers(1, 16)), max_size=25),
    st.lists(st.tuples(st.integers(-5, 45), st.integers(1, 30), st.integers(0, 17)), min_size=1, max_size=10),
)
def test_capacity_profile_agrees_with_the_reference(accelerators, sold, queries):
    # Free capacity, the earliest start and "sold out" from the usage profile, against a sweep over the
    # allocations, also after allocations are appended between queries (the profile catches up).
    offer = Offer("o", pool(), accelerators, 0, 40, MICRO)
    for start, length, count in sold:
        offer.allocations.append((start, start + length, count))
        for lo, hours, need in queries:
            assert offer.free(lo, lo + hours) == _free(offer, lo, lo + hours)
            for hi in (lo + hours, lo + hours + 7, 60):
                assert offer.earliest_start(lo, hi, hours, need) == _earliest_start(offer, lo, hi, hours, need)
        assert offer.sold_out() == _sold_out(offer)


def pool() -> PoolAttributes:
    return PoolAttributes("p", "H100", "NVIDIA", False, True, "nmg", "15", 60, 1200, 900, 80, 900_000, 3_350_000)

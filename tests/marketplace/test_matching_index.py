"""The engine's index: the blocked sorted lists behind its order lists, bids per SCU-hour or BWU-hour reading the
ask-ordered offer lists in their own unit's order, and the engine against the reference where the index takes its
exact fallbacks (prices and hours outside the machine-integer arrays)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace import matching
from marketplace.matching import MICRO, Bid, Constraints, Offer, OrderBook, PoolAttributes, PriceUnit
from tests.marketplace.matching_reference import ReferenceOrderBook

HUGE = 1 << 62  # the clamp bound of the arrays: values around it take the exact paths

prices = st.one_of(
    st.integers(-50, 50),
    st.integers(HUGE - 3, HUGE + 3),
    st.integers(-HUGE - 3, -HUGE + 3),
    st.integers(-(1 << 80), 1 << 80),
)


def _contents(book: matching._Sorted) -> list[tuple[int, object, int, int]]:
    rows = []
    for keys, data, coarse, first, second in zip(
        book.keys, book.data, book.prices, book.first, book.second, strict=True
    ):
        assert len(keys) == len(data) == len(coarse) == len(first) == len(second) > 0
        assert list(coarse) == [matching._clamp(key >> matching._SHIFT) for key in keys]
        rows.extend(zip(keys, data, first, second, strict=True))
    return rows


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(prices, st.booleans()), max_size=300), st.randoms(use_true_random=False))
def test_sorted_blocks_keep_price_then_arrival_order(operations, rng: random.Random):
    # A plain sorted list is the model; many equal prices (ties fall to arrival order) and clamped prices.
    book, model = matching._Sorted(), []
    for seq, (price, remove) in enumerate(operations, start=1):
        if remove and model:
            key, _data, _first, _second = model.pop(rng.randrange(len(model)))
            book.remove(key >> matching._SHIFT, key & matching._SEQ_MASK)
        else:
            row = ((price << matching._SHIFT) | seq, f"order{seq}", seq % 7, -seq)
            book.add(price, seq, row[1], row[2], row[3])
            model.append(row)
            model.sort()
        assert _contents(book) == model
        assert book.maxes == [block[-1] for block in book.keys]
        if model:
            assert (book.head, book.best) == (model[0][0], model[0][0] >> matching._SHIFT)
        else:
            assert book.best > 1 << 200


def test_sorted_blocks_split_and_shrink():
    book, model = matching._Sorted(block_max=8), []
    rng = random.Random(7)
    for seq in range(1, 400):
        price = rng.choice([5, 5, 5, 9, rng.randint(0, 100), HUGE + rng.randint(0, 2)])
        book.add(price, seq, seq, 0, 0)
        model.append(((price << matching._SHIFT) | seq, seq, 0, 0))
    model.sort()
    assert len(book.keys) > 40
    assert max(map(len, book.keys)) <= 8
    assert _contents(book) == model
    for key, *_ in rng.sample(model, len(model)):
        book.remove(key >> matching._SHIFT, key & matching._SEQ_MASK)
    assert book.keys == book.maxes == []
    assert book.best > 1 << 200
    with pytest.raises(KeyError):
        book.remove(5, 1)


def _pool(index: int, rng: random.Random) -> PoolAttributes:
    domestic = rng.random() < 0.4
    return PoolAttributes(
        f"pool{index}",
        rng.choice(["H100", "910B"]),
        "vendor",
        domestic,
        rng.random() < 0.7,
        "nmg",
        "15",
        rng.randint(0, 100),
        rng.randint(1050, 1600),
        600,
        80,
        rng.choice([1, 7, 900_000]),  # 1 micro-SCU per accelerator-hour: price keys far beyond 2**62
        rng.choice([0, 3, 3_350_000]),
    )


def _replay_extreme(seed: int, orders: int) -> int:
    """Prices that overflow the arrays and windows straddling the clamp bound: the exact fallbacks decide."""
    rng = random.Random(seed)
    pools = [_pool(index, rng) for index in range(6)]
    base = rng.choice([0, HUGE - 40, -HUGE - 20])
    engine, reference = OrderBook(), ReferenceOrderBook()
    trades = 0
    for index in range(orders):
        start = base + rng.randint(0, 60)
        if rng.random() < 0.05 and engine.offers:
            victim = sorted(engine.offers)[0]
            assert engine.cancel_offer(victim) == reference.cancel_offer(victim) is True
        price = rng.choice([1, 10, 10, 10**6, 10**13, 10**20, 10**40]) * rng.choice([1, 1, 2, 3])
        if rng.random() < 0.5:
            args = (f"o{index}", rng.choice(pools), rng.choice([1, 2, 4]), start, start + rng.randint(1, 40), price)
            mine, theirs = engine.add_offer(Offer(*args)), reference.add_offer(Offer(*args))
        else:
            hours = rng.choice([1, 4, 12])
            constraints = Constraints(min_green_share_pct=rng.choice([0, 50]), domestic_only=rng.random() < 0.2)
            unit = rng.choice(list(PriceUnit))
            split = rng.random() < 0.4
            args = (f"b{index}", rng.choice([1, 2, 4]), hours, start, start + hours + rng.randint(0, 20), price, unit)
            mine = engine.add_bid(Bid(*args, constraints, split))
            theirs = reference.add_bid(Bid(*args, constraints, split))
        assert mine == theirs
        trades += len(mine)
        assert engine.offers.keys() == reference.offers.keys()
        assert engine.bids.keys() == reference.bids.keys()
    for offer_id, offer in engine.offers.items():
        assert offer.allocations == reference.offers[offer_id].allocations
    return trades


@pytest.mark.parametrize("seed", range(12))
def test_same_trades_as_the_reference_beyond_machine_integers(seed: int):
    assert _replay_extreme(seed, 600) > 0


def test_many_orders_at_one_price_keep_time_priority():
    # Round prices (the common case) put thousands of orders on one price: arrival order decides, across blocks.
    pool = PoolAttributes("p", "H100", "NVIDIA", False, True, "nmg", "15", 60, 1200, 900, 80, 900_000, 3_350_000)
    book = OrderBook()
    for index in range(3_000):
        book.add_offer(Offer(f"o{index:05}", pool, 1, 0, 24, 10 * MICRO))
    for index in range(0, 3_000, 3):
        assert book.cancel_offer(f"o{index:05}")
    taken = [
        trade.offer_id
        for index in range(6)
        for trade in book.add_bid(Bid(f"b{index}", 300, 24, 0, 24, 10 * MICRO, split_allowed=True))
    ]
    assert taken == [f"o{index:05}" for index in range(3_000) if index % 3][: len(taken)]
    assert len(taken) == 1_800
    assert book.offers.keys() == {f"o{index:05}" for index in range(3_000) if index % 3} - set(taken)


def test_bids_per_scu_take_offers_in_per_scu_order_from_the_ask_ordered_list():
    # One model, pools of very different SCU per accelerator-hour: the cheapest per SCU-hour is not the cheapest
    # per accelerator-hour, and equal prices per SCU-hour fall to arrival order.
    rng = random.Random(3)
    engine, reference = OrderBook(), ReferenceOrderBook()
    trades = 0
    for index in range(400):
        scu = rng.choice([100_000, 450_000, 900_000, 1_000_000])
        pool = PoolAttributes(f"p{index}", "H100", "NVIDIA", False, True, "nmg", "15", 60, 1200, 900, 80, scu, 0)
        ask = rng.choice([1, 2, 4, 5, 9, 10]) * scu // 100
        args = (f"o{index:03}", pool, rng.choice([1, 2]), 0, 48, ask)
        assert engine.add_offer(Offer(*args)) == reference.add_offer(Offer(*args)) == []
    for index in range(40):
        args = (f"b{index}", rng.choice([1, 3, 8]), 24, 0, 48, rng.choice([3, 6, 9, 11]) * 10_000, PriceUnit.SCU_HOUR)
        split = rng.random() < 0.5
        mine = engine.add_bid(Bid(*args, Constraints(), split))
        assert mine == reference.add_bid(Bid(*args, Constraints(), split))
        trades += len(mine)
    assert trades > 40


def test_equal_prices_per_scu_from_different_asks_keep_time_priority():
    # E (older) and X (newer) cost the same per SCU-hour but X asks less per accelerator-hour, so X is read first
    # from the ask-ordered list; T, cheaper per SCU-hour, is read between them. Price-time order is T, E, X.
    def pool(name: str, scu: int) -> PoolAttributes:
        return PoolAttributes(name, "H100", "NVIDIA", False, True, "nmg", "15", 60, 1200, 900, 80, scu, 0)

    engine = OrderBook()
    engine.add_offer(Offer("E", pool("pe", 1_000_000), 1, 0, 24, 8 * MICRO))
    engine.add_offer(Offer("X", pool("px", 500_000), 1, 0, 24, 4 * MICRO))
    engine.add_offer(Offer("T", pool("pt", 1_000_000), 1, 0, 24, 6 * MICRO))
    trades = engine.add_bid(Bid("b", 3, 4, 0, 24, 10 * MICRO, PriceUnit.SCU_HOUR, Constraints(), True))
    assert [t.offer_id for t in trades] == ["T", "E", "X"]

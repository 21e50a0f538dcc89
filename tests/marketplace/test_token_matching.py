"""The token engine alone (marketplace.token_matching, no database): examples and Hypothesis properties."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.token_matching import Bid, Endpoint, blended, blended_key, match_bid, match_endpoint

M = 1_000_000  # micro-yuan


def endpoint(endpoint_id: str, price_in: float, price_out: float, capacity: int = 10**9, **kw) -> Endpoint:
    return Endpoint(endpoint_id, "qwen", int(price_in * M), int(price_out * M), capacity, **kw)


def bid(bid_id: str, limit_in: float, limit_out: float, volume: int = 10**6, **kw) -> Bid:
    return Bid(bid_id, "qwen", int(limit_in * M), int(limit_out * M), volume, **kw)


def test_blended_price_weights_input_three_to_one_by_default():
    assert blended(2 * M, 8 * M, 3, 1) == Fraction(14 * M, 4)  # (3 x 2 + 1 x 8) / 4 = 3.5 yuan
    assert blended(2 * M, 8 * M, 1, 0) == 2 * M


def test_a_bid_takes_the_cheapest_blended_endpoint_within_both_limits():
    endpoints = [
        endpoint("a", 2, 8),  # blended 3.5
        endpoint("b", 1, 16),  # blended 4.75: cheaper input, but the mix makes it dearer
        endpoint("c", 0.5, 30),  # output above the limit: never, even if cheapest on input
    ]
    trade = match_bid(bid("x", 4, 20), endpoints)
    assert trade is not None
    assert (trade.endpoint_id, trade.price_input, trade.price_output) == ("a", 2 * M, 8 * M)
    # A bid of input tokens only (weights 1:0) ranks on the input price: b wins.
    trade = match_bid(bid("y", 4, 20, input_weight=1, output_weight=0), endpoints)
    assert trade is not None
    assert trade.endpoint_id == "b"


def test_capacity_other_models_and_constraints_are_hard_filters():
    endpoints = [
        endpoint("full", 1, 1, capacity=100, committed_tokens=50),
        Endpoint("other-model", "deepseek", M, M, 10**9),
        endpoint("foreign", 1, 2, hub=None, domestic=False),
        endpoint("domestic", 3, 3, hub="NM", domestic=True),
    ]
    trade = match_bid(bid("x", 5, 5, volume=60, domestic_only=True, hubs=frozenset({"NM"})), endpoints)
    assert trade is not None
    assert trade.endpoint_id == "domestic"
    assert match_bid(bid("x", 5, 5, volume=60, hubs=frozenset({"GZ"})), endpoints) is None
    assert match_bid(bid("x", 0.9, 5, volume=10), endpoints) is None  # every input price above the limit


def test_equal_prices_go_to_the_earlier_endpoint_then_the_smaller_id():
    endpoints = [endpoint("b", 2, 2, arrival=5), endpoint("a", 2, 2, arrival=5), endpoint("c", 2, 2, arrival=1)]
    assert match_bid(bid("x", 3, 3), endpoints).endpoint_id == "c"  # type: ignore[union-attr]
    assert match_bid(bid("x", 3, 3), endpoints[:2]).endpoint_id == "a"  # type: ignore[union-attr]


def test_an_arriving_endpoint_fills_the_best_bids_at_their_limits_and_skips_what_does_not_fit():
    bids = [
        bid("low", 2, 8, volume=40, arrival=1),
        bid("high", 3, 9, volume=50, arrival=2),
        bid("huge", 3, 9, volume=500, arrival=0),  # best price but larger than the endpoint
        bid("too-cheap", 0.5, 1, volume=1, arrival=0),
    ]
    trades = match_endpoint(endpoint("e", 1, 4, capacity=100), bids)
    assert [(t.bid_id, t.price_input, t.price_output) for t in trades] == [
        ("high", 3 * M, 9 * M),
        ("low", 2 * M, 8 * M),
    ]
    assert sum(t.monthly_tokens for t in trades) == 90


# --- Properties -------------------------------------------------------------------------------------------

prices = st.integers(min_value=1, max_value=50 * M)
endpoints_strategy = st.lists(
    st.builds(
        Endpoint,
        endpoint_id=st.uuids().map(str),
        model=st.sampled_from(["qwen", "deepseek"]),
        price_input=prices,
        price_output=prices,
        capacity_tokens=st.integers(min_value=1, max_value=10_000),
        committed_tokens=st.integers(min_value=0, max_value=5_000),
        arrival=st.integers(min_value=0, max_value=20),
        domestic=st.booleans(),
        hub=st.sampled_from([None, "NM", "GZ"]),
    ),
    max_size=12,
    unique_by=lambda e: e.endpoint_id,
).map(lambda es: [e for e in es if e.committed_tokens <= e.capacity_tokens])
bids_strategy = st.lists(
    st.builds(
        Bid,
        bid_id=st.uuids().map(str),
        model=st.sampled_from(["qwen", "deepseek"]),
        limit_input=prices,
        limit_output=prices,
        monthly_tokens=st.integers(min_value=1, max_value=4_000),
        input_weight=st.integers(min_value=0, max_value=5),
        output_weight=st.integers(min_value=1, max_value=5),
        arrival=st.integers(min_value=0, max_value=20),
        domestic_only=st.booleans(),
        hubs=st.sampled_from([None, frozenset({"NM"}), frozenset({"NM", "GZ"})]),
    ),
    max_size=20,
    unique_by=lambda b: b.bid_id,
)


@settings(max_examples=300, deadline=None)
@given(endpoints=endpoints_strategy, bids=bids_strategy, data=st.data())
def test_arriving_bids_never_overfill_never_trade_through_a_limit_and_ignore_input_order(endpoints, bids, data):
    def run(order_of_endpoints):
        book = {e.endpoint_id: Endpoint(**{**e.__dict__}) for e in order_of_endpoints}
        trades = []
        for b in bids:
            trade = match_bid(b, list(book.values()))
            if trade:
                book[trade.endpoint_id].committed_tokens += trade.monthly_tokens
                trades.append(trade)
        return trades, book

    trades, book = run(endpoints)
    by_bid = {b.bid_id: b for b in bids}
    for trade in trades:
        b, e = by_bid[trade.bid_id], book[trade.endpoint_id]
        assert trade.price_input <= b.limit_input
        assert trade.price_output <= b.limit_output
        assert (trade.price_input, trade.price_output) == (e.price_input, e.price_output)  # the resting price
        assert e.model == b.model
        assert trade.monthly_tokens == b.monthly_tokens
    for e in book.values():
        assert e.committed_tokens <= e.capacity_tokens
    shuffled = data.draw(st.permutations(endpoints))
    assert run(shuffled)[0] == trades


@settings(max_examples=300, deadline=None)
@given(endpoints=endpoints_strategy, bids=bids_strategy, data=st.data())
def test_an_arriving_endpoint_never_overfills_and_is_deterministic_under_permutation(endpoints, bids, data):
    for e in endpoints:
        trades = match_endpoint(e, bids)
        assert sum(t.monthly_tokens for t in trades) <= e.remaining
        by_bid = {b.bid_id: b for b in bids}
        for trade in trades:
            b = by_bid[trade.bid_id]
            assert e.price_input <= b.limit_input
            assert e.price_output <= b.limit_output
            assert (trade.price_input, trade.price_output) == (b.limit_input, b.limit_output)  # the resting price
        assert len({t.bid_id for t in trades}) == len(trades)
        assert match_endpoint(e, data.draw(st.permutations(bids))) == trades


weights = st.integers(min_value=0, max_value=1000)


@settings(max_examples=500, deadline=None)
@given(a=st.tuples(prices, prices, weights, weights), b=st.tuples(prices, prices, weights, weights))
def test_the_integer_key_orders_blended_prices_exactly(a, b):
    if a[2] + a[3] == 0 or b[2] + b[3] == 0:
        return
    exact = (blended(*a) > blended(*b)) - (blended(*a) < blended(*b))
    keyed = (blended_key(*a) > blended_key(*b)) - (blended_key(*a) < blended_key(*b))
    assert exact == keyed


def test_the_integer_key_separates_the_closest_prices():
    # 1/1999 vs 1/2000 of a micro-yuan apart in weighted sums: the closest two distinct blended prices can be.
    assert blended_key(1, 0, 1000, 999) > blended_key(1, 0, 1000, 1000)
    assert blended_key(2, 2, 3, 1) == blended_key(2, 2, 1, 1)

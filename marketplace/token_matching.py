"""Matching of token bids with model endpoints (DESIGN.md §4.3, "Tokens"). Pure: no ORM, no Django.

Prices are integers in micro-yuan per million tokens; volumes are tokens per month. A token bid is filled whole
by ONE endpoint (no split) or not at all, and the trade is at the resting order's prices:

- a bid arriving (``match_bid``) takes the endpoint of its model with the lowest **blended price** among those
  whose input price and output price are both within the bid's limits, that serve its constraints (domestic
  accelerators, hubs) and have the volume left; the trade is at that endpoint's two prices;
- an endpoint arriving (``match_endpoint``) fills the resting bids of its model it crosses, best first (highest
  blended limit), while it has volume left; each trade is at that bid's two limits.

**Blended price.** A bid says how its tokens split between input and output with integer weights
(``input_weight:output_weight``, default 3:1: three input tokens per output token, typical of chat and RAG):
``blended = (input_price x input_weight + output_price x output_weight) / (input_weight + output_weight)``.
It is the price per million tokens of the bid's expected mix, so a bid ranks endpoints by what its traffic will
actually cost. Blended prices are compared exactly (integer keys, see ``blended_key``), never as floats.

**Ties** are broken deterministically: equal blended prices go to the earlier arrival (time priority), then the
smaller id. The result never depends on the order of the input lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

DEFAULT_INPUT_WEIGHT = 3
DEFAULT_OUTPUT_WEIGHT = 1
MAX_WEIGHT = 1000  # each weight; so a total weight is at most 2,000
_KEY_SHIFT = 40  # 2**40 > 2,000**2: see blended_key


def blended_key(price_input: int, price_output: int, input_weight: int, output_weight: int) -> int:
    """An integer that orders blended prices exactly, much faster to compare than fractions.

    Two different blended prices n1/t1 and n2/t2 (totals t <= 2,000) differ by at least 1/(t1 t2) >= 1/4,000,000,
    so scaled by 2**40 their floors still differ (and keep their order); equal prices give equal keys."""
    if not (0 <= input_weight <= MAX_WEIGHT and 0 <= output_weight <= MAX_WEIGHT):
        raise ValueError("weights are 0 to 1000")
    total = input_weight + output_weight
    if total <= 0:
        raise ValueError("at least one weight must be positive")
    return ((price_input * input_weight + price_output * output_weight) << _KEY_SHIFT) // total


def blended(price_input: int, price_output: int, input_weight: int, output_weight: int) -> Fraction:
    """Price per million tokens of a mix with ``input_weight`` input tokens per ``output_weight`` output tokens."""
    total = input_weight + output_weight
    if total <= 0:
        raise ValueError("at least one weight must be positive")
    return Fraction(price_input * input_weight + price_output * output_weight, total)


@dataclass
class Endpoint:
    endpoint_id: str
    model: str
    price_input: int  # micro-yuan per million input tokens
    price_output: int
    capacity_tokens: int  # tokens per month
    committed_tokens: int = 0
    arrival: int = 0  # e.g. microseconds since the epoch of creation
    domestic: bool = False
    hub: str | None = None

    @property
    def remaining(self) -> int:
        return self.capacity_tokens - self.committed_tokens


@dataclass(frozen=True)
class Bid:
    bid_id: str
    model: str
    limit_input: int
    limit_output: int
    monthly_tokens: int
    input_weight: int = DEFAULT_INPUT_WEIGHT
    output_weight: int = DEFAULT_OUTPUT_WEIGHT
    arrival: int = 0
    domestic_only: bool = False
    hubs: frozenset[str] | None = field(default=None)

    def blended_limit(self) -> Fraction:
        return blended(self.limit_input, self.limit_output, self.input_weight, self.output_weight)


@dataclass(frozen=True)
class Trade:
    bid_id: str
    endpoint_id: str
    price_input: int
    price_output: int
    monthly_tokens: int
    aggressor: str  # "bid" or "endpoint": which side arrived and took liquidity


def crosses(bid: Bid, endpoint: Endpoint) -> bool:
    """The hard filters and both price limits (never trades through a limit); not the volume."""
    return (
        endpoint.model == bid.model
        and endpoint.price_input <= bid.limit_input
        and endpoint.price_output <= bid.limit_output
        and (not bid.domestic_only or endpoint.domestic)
        and (bid.hubs is None or endpoint.hub in bid.hubs)
    )


def fits(bid: Bid, endpoint: Endpoint) -> bool:
    return crosses(bid, endpoint) and bid.monthly_tokens <= endpoint.remaining


def match_bid(bid: Bid, endpoints: Iterable[Endpoint]) -> Trade | None:
    """The trade of an arriving bid, or None (it rests). Does not change the endpoints."""
    if bid.monthly_tokens <= 0:
        return None
    # The bid's weights are the same for every endpoint: comparing the weighted sums (the blended price times
    # the constant total weight) ranks exactly like the blended prices, in integers.
    wi, wo = bid.input_weight, bid.output_weight
    best: Endpoint | None = None
    best_key: tuple[int, int, str] | None = None
    for e in endpoints:
        if not fits(bid, e):
            continue
        key = (e.price_input * wi + e.price_output * wo, e.arrival, e.endpoint_id)
        if best_key is None or key < best_key:
            best, best_key = e, key
    if best is None:
        return None
    return Trade(bid.bid_id, best.endpoint_id, best.price_input, best.price_output, bid.monthly_tokens, "bid")


def match_endpoint(endpoint: Endpoint, bids: Iterable[Bid]) -> list[Trade]:
    """The trades of an arriving (or resumed) endpoint against resting bids, best bid first, while volume lasts.

    A bid larger than what is left is skipped (bids are all-or-nothing) and a smaller one behind it may still
    fill. Does not change the endpoint; the caller adds the traded volume to its committed volume."""
    ranked = sorted(
        (b for b in bids if crosses(b, endpoint) and b.monthly_tokens > 0),
        key=lambda b: (
            -blended_key(b.limit_input, b.limit_output, b.input_weight, b.output_weight),
            b.arrival,
            b.bid_id,
        ),
    )
    remaining = endpoint.remaining
    trades: list[Trade] = []
    for bid in ranked:
        if bid.monthly_tokens <= remaining:
            trades.append(
                Trade(
                    bid.bid_id, endpoint.endpoint_id, bid.limit_input, bid.limit_output, bid.monthly_tokens, "endpoint"
                )
            )
            remaining -= bid.monthly_tokens
    return trades

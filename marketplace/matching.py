"""The matching engine: a continuous double auction over heterogeneous accelerator capacity. Pure Python, no ORM.

Offers sell a pool's accelerators over a window of whole hours at an ask per accelerator-hour. Bids want N
accelerators for D consecutive hours inside a window, with a limit per accelerator-hour, per SCU-hour or per
BWU-hour, and hard constraints. An incoming order trades against the resting side in price-time priority on
the normalised price (the bid's unit), at the resting order's price; what is left rests.

Exactness: prices are integers in micro-yuan (1e-6 ¥) and per-accelerator units in micro-units (1e-6 SCU or
BWU per accelerator-hour). "ask per SCU-hour <= limit" is decided by integer cross-multiplication, never by a
rounded quotient, so no trade goes through a limit. Sort keys are floor quotients; ties on them fall to arrival
order and then the order id, so the outcome is deterministic.

Determinism under simultaneous arrivals: ``submit_batch`` orders a batch by (arrival time, order id) before
processing it, so any permutation of the same batch produces the same trades.

Persistence (the database) is the final guard that no accelerator-hour of a pool is sold twice; the engine only
proposes trades.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from sortedcontainers import SortedList

MICRO = 1_000_000
# Sort keys are prices scaled by KEY_SCALE before the floor division by the unit size.
KEY_SCALE = 10**12
ANY_MODEL = "*"  # bid index bucket of bids that accept every accelerator model


class PriceUnit(StrEnum):
    ACCELERATOR_HOUR = "acc_hour"
    SCU_HOUR = "scu_hour"
    BWU_HOUR = "bwu_hour"


@dataclass(frozen=True, slots=True)
class PoolAttributes:
    """What a bid can filter on, fixed per pool. Units per accelerator-hour in micro-units (ints)."""

    pool_id: str
    model: str
    vendor: str
    domestic: bool
    verified: bool
    hub: str | None
    province: str
    green_share_pct: int  # 0..100
    pue_milli: int  # PUE x 1000 (1.25 -> 1250)
    tflops: int  # attested (or datasheet) dense FP16/BF16 TFLOPS per accelerator
    memory_gb: int
    scu_micro: int  # SCU per accelerator-hour x 1e6 (an H100 at 900 TFLOPS: 900_000)
    bwu_micro: int  # BWU per accelerator-hour x 1e6

    def unit_micro(self, unit: PriceUnit) -> int:
        if unit is PriceUnit.SCU_HOUR:
            return self.scu_micro
        if unit is PriceUnit.BWU_HOUR:
            return self.bwu_micro
        return MICRO


@dataclass(frozen=True, slots=True)
class Constraints:
    """Hard filters. ``None`` or empty means "any". Provinces already include the latency-tier rule."""

    models: frozenset[str] | None = None
    min_tflops: int = 0
    min_memory_gb: int = 0
    hubs: frozenset[str] | None = None
    provinces: frozenset[str] | None = None
    min_green_share_pct: int = 0
    max_pue_milli: int | None = None
    domestic_only: bool = False
    verified_only: bool = False

    def accepts(self, pool: PoolAttributes) -> bool:
        return (
            (self.models is None or pool.model in self.models)
            and pool.tflops >= self.min_tflops
            and pool.memory_gb >= self.min_memory_gb
            and (self.hubs is None or pool.hub in self.hubs)
            and (self.provinces is None or pool.province in self.provinces)
            and pool.green_share_pct >= self.min_green_share_pct
            and (self.max_pue_milli is None or pool.pue_milli <= self.max_pue_milli)
            and (not self.domestic_only or pool.domestic)
            and (not self.verified_only or pool.verified)
        )


@dataclass(slots=True)
class Offer:
    offer_id: str
    pool: PoolAttributes
    accelerators: int
    start_hour: int  # hours since the epoch, UTC; the window is [start_hour, end_hour)
    end_hour: int
    ask_micro: int  # ¥ per accelerator-hour x 1e6
    min_lease_hours: int = 1
    arrival: int = 0  # arrival time (e.g. microseconds since the epoch); ties broken by offer_id
    # (start, end, accelerators) already sold from this offer.
    allocations: list[tuple[int, int, int]] = field(default_factory=list)
    seq: int = 0

    def free(self, start: int, end: int) -> int:
        """Accelerators free during the whole of [start, end)."""
        if not self.allocations:
            return self.accelerators
        points = sorted(
            [(s, n) for s, e, n in self.allocations if s < end and e > start]
            + [(e, -n) for s, e, n in self.allocations if s < end and e > start]
        )
        # Every allocation here ends after `start`, so any two of them that overlap do so inside the window.
        used = peak = 0
        for _at, delta in points:  # at equal times, ends (-n) sort before starts: half-open windows
            used += delta
            peak = max(peak, used)
        return self.accelerators - peak

    def earliest_start(self, lo: int, hi: int, hours: int, need: int) -> int | None:
        """The first s in [lo, hi - hours] with `need` accelerators free over [s, s + hours)."""
        lo = max(lo, self.start_hour)
        hi = min(hi, self.end_hour)
        candidates = [lo, *sorted({e for _s, e, _n in self.allocations if lo < e})]
        for start in candidates:
            if start + hours > hi:
                return None
            if self.free(start, start + hours) >= need:
                return start
        return None

    def sold_out(self) -> bool:
        sold = sum((e - s) * n for s, e, n in self.allocations)
        return sold >= self.accelerators * (self.end_hour - self.start_hour)


@dataclass(slots=True)
class Bid:
    bid_id: str
    accelerators: int
    hours: int
    earliest_start_hour: int
    latest_end_hour: int
    limit_micro: int  # ¥ per `unit` x 1e6
    unit: PriceUnit = PriceUnit.ACCELERATOR_HOUR
    constraints: Constraints = field(default_factory=Constraints)
    split_allowed: bool = False
    arrival: int = 0
    filled: int = 0
    fixed_start_hour: int | None = None  # set by the first fill: the parts of a split bid run together
    seq: int = 0

    @property
    def remaining(self) -> int:
        return self.accelerators - self.filled


@dataclass(frozen=True, slots=True)
class Trade:
    bid_id: str
    offer_id: str
    pool_id: str
    accelerators: int
    start_hour: int
    end_hour: int
    price_micro: int  # ¥ per accelerator-hour x 1e6: the resting order's price, in the offer's terms
    aggressor: str  # "bid" or "offer": which side arrived and took liquidity


def _key(price_micro: int, unit_micro: int) -> int:
    return (price_micro * KEY_SCALE) // unit_micro


def ask_within_limit(offer: Offer, bid: Bid) -> bool:
    """Exact: ask / unit <= limit, i.e. ask x 1e6 <= limit x unit_micro."""
    return offer.ask_micro * MICRO <= bid.limit_micro * offer.pool.unit_micro(bid.unit)


def bid_price_for(offer: Offer, bid: Bid) -> int:
    """A resting bid's limit in ¥ per accelerator-hour of this offer's pool (floor: never above the limit)."""
    return (bid.limit_micro * offer.pool.unit_micro(bid.unit)) // MICRO


def _scaled(entries: Iterable[tuple[int, int, str]], unit_micro: int) -> Iterator[tuple[int, int, str]]:
    """Bid index entries (-limit, seq, id) as (-price per accelerator-hour x 1e6, seq, id) for one pool."""
    for neg_limit, seq, bid_id in entries:
        yield neg_limit * unit_micro, seq, bid_id


class OrderBook:
    """Resting offers and bids, indexed for price-time priority in each unit."""

    def __init__(self) -> None:
        self.offers: dict[str, Offer] = {}
        self.bids: dict[str, Bid] = {}
        self._seq = itertools.count(1)
        # Offers by normalised ask, per unit and per accelerator model: (key, seq, offer_id).
        self._offer_index: dict[PriceUnit, dict[str, SortedList]] = {unit: {} for unit in PriceUnit}
        # Bids by limit, per unit and per model they name (ANY_MODEL when they name none), best first:
        # (-limit, seq, bid_id). An incoming offer looks only at its own model's bids and the unrestricted ones.
        self._bid_index: dict[PriceUnit, dict[str, SortedList]] = {unit: {} for unit in PriceUnit}

    # --- resting orders ----------------------------------------------------------------------------

    def _rest_offer(self, offer: Offer) -> None:
        self.offers[offer.offer_id] = offer
        for unit in PriceUnit:
            unit_micro = offer.pool.unit_micro(unit)
            if unit_micro <= 0:
                continue  # no attested figure in this unit: not offered in it
            book = self._offer_index[unit].setdefault(offer.pool.model, SortedList())
            book.add((_key(offer.ask_micro, unit_micro), offer.seq, offer.offer_id))

    def _unrest_offer(self, offer: Offer) -> None:
        del self.offers[offer.offer_id]
        for unit in PriceUnit:
            unit_micro = offer.pool.unit_micro(unit)
            if unit_micro > 0:
                self._offer_index[unit][offer.pool.model].remove(
                    (_key(offer.ask_micro, unit_micro), offer.seq, offer.offer_id)
                )

    @staticmethod
    def _bid_buckets(bid: Bid) -> Iterable[str]:
        models = bid.constraints.models
        return (ANY_MODEL,) if models is None else models

    def _rest_bid(self, bid: Bid) -> None:
        self.bids[bid.bid_id] = bid
        index = self._bid_index[bid.unit]
        for bucket in self._bid_buckets(bid):
            index.setdefault(bucket, SortedList()).add((-bid.limit_micro, bid.seq, bid.bid_id))

    def _unrest_bid(self, bid: Bid) -> None:
        del self.bids[bid.bid_id]
        index = self._bid_index[bid.unit]
        for bucket in self._bid_buckets(bid):
            index[bucket].remove((-bid.limit_micro, bid.seq, bid.bid_id))

    def cancel_offer(self, offer_id: str) -> bool:
        offer = self.offers.get(offer_id)
        if offer is None:
            return False
        self._unrest_offer(offer)
        return True

    def cancel_bid(self, bid_id: str) -> bool:
        bid = self.bids.get(bid_id)
        if bid is None:
            return False
        self._unrest_bid(bid)
        return True

    # --- candidates in priority order --------------------------------------------------------------

    def _offers_for(self, bid: Bid) -> Iterator[Offer]:
        """Resting offers in price-time priority for this bid's unit, stopping past its limit."""
        books = self._offer_index[bid.unit]
        models = bid.constraints.models
        chosen = [books[m] for m in models if m in books] if models is not None else list(books.values())
        # The floor key may equal the limit's key while the exact price is above it: compare exactly below.
        limit_key = _key(bid.limit_micro, MICRO) + 1
        streams = [book.irange(maximum=(limit_key,), inclusive=(True, False)) for book in chosen]
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        for _key_value, _seq, offer_id in merged:
            offer = self.offers[offer_id]
            if ask_within_limit(offer, bid):
                yield offer

    def _bids_for(self, offer: Offer) -> Iterator[Bid]:
        """Resting bids in priority for this offer: highest limit in its terms (¥/accelerator-hour), then time."""
        streams = []
        for unit in PriceUnit:
            unit_micro = offer.pool.unit_micro(unit)
            if unit_micro <= 0:
                continue
            # limit x unit / 1e6 >= ask  <=>  limit >= ask x 1e6 / unit; -limit <= -ceil(...)
            min_limit = -((-offer.ask_micro * MICRO) // unit_micro)
            index = self._bid_index[unit]
            for bucket in (offer.pool.model, ANY_MODEL):
                book = index.get(bucket)
                if book:
                    streams.append(_scaled(book.irange(maximum=(-min_limit, 10**18)), unit_micro))
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        for _price, _seq, bid_id in merged:
            yield self.bids[bid_id]

    # --- matching ----------------------------------------------------------------------------------

    def _fill(self, bid: Bid, offer: Offer) -> tuple[int, int] | None:
        """(accelerators, start) this offer can give this bid now, or None."""
        if bid.fixed_start_hour is not None:
            lo, hi = bid.fixed_start_hour, bid.fixed_start_hour + bid.hours
        else:
            lo, hi = bid.earliest_start_hour, bid.latest_end_hour
        # Cheapest tests first: the windows must leave room for the lease at all.
        if min(hi, offer.end_hour) - max(lo, offer.start_hour) < bid.hours or bid.hours < offer.min_lease_hours:
            return None
        if not bid.constraints.accepts(offer.pool):
            return None
        need = bid.remaining
        if bid.split_allowed:
            # Take as many as this offer has (at least one) at the earliest start where it has any.
            start = offer.earliest_start(lo, hi, bid.hours, 1)
            if start is None:
                return None
            return min(need, offer.free(start, start + bid.hours)), start
        start = offer.earliest_start(lo, hi, bid.hours, need)
        return (need, start) if start is not None else None

    def _book_trade(self, bid: Bid, offer: Offer, count: int, start: int, price: int, aggressor: str) -> Trade:
        end = start + bid.hours
        offer.allocations.append((start, end, count))
        bid.filled += count
        if bid.fixed_start_hour is None:
            bid.fixed_start_hour = start
        return Trade(bid.bid_id, offer.offer_id, offer.pool.pool_id, count, start, end, price, aggressor)

    def add_bid(self, bid: Bid) -> list[Trade]:
        """An incoming bid takes resting offers in priority order; what is left rests."""
        if bid.bid_id in self.bids:
            raise ValueError(f"bid {bid.bid_id} is already in the book")
        bid.seq = next(self._seq)
        trades: list[Trade] = []
        sold_out: list[Offer] = []
        for offer in self._offers_for(bid):
            fill = self._fill(bid, offer)
            if fill is None:
                continue
            count, start = fill
            trades.append(self._book_trade(bid, offer, count, start, offer.ask_micro, "bid"))
            if offer.sold_out():
                sold_out.append(offer)
            if bid.remaining == 0:
                break
        for offer in sold_out:
            self._unrest_offer(offer)
        if bid.remaining > 0:
            self._rest_bid(bid)
        return trades

    def add_offer(self, offer: Offer) -> list[Trade]:
        """An incoming offer serves resting bids in priority order; what is left rests."""
        if offer.offer_id in self.offers:
            raise ValueError(f"offer {offer.offer_id} is already in the book")
        offer.seq = next(self._seq)
        trades: list[Trade] = []
        filled: list[Bid] = []
        for bid in self._bids_for(offer):
            fill = self._fill(bid, offer)
            if fill is None:
                continue
            count, start = fill
            trades.append(self._book_trade(bid, offer, count, start, bid_price_for(offer, bid), "offer"))
            if bid.remaining == 0:
                filled.append(bid)
            if offer.sold_out():
                break
        for bid in filled:
            self._unrest_bid(bid)
        if not offer.sold_out():
            self._rest_offer(offer)
        return trades

    def submit_batch(self, orders: Iterable[Bid | Offer]) -> list[Trade]:
        """Orders that arrived together, processed in (arrival, id) order whatever order they are given in."""

        def order_key(order: Bid | Offer) -> tuple[int, int, str]:
            if isinstance(order, Bid):
                return (order.arrival, 0, order.bid_id)
            return (order.arrival, 1, order.offer_id)

        trades: list[Trade] = []
        for order in sorted(orders, key=order_key):
            trades.extend(self.add_bid(order) if isinstance(order, Bid) else self.add_offer(order))
        return trades

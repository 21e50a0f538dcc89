"""A slow, obviously-correct reference of the matching engine, for property tests of the indexed engine.

This is the engine as it was before indexing (one price-ordered list per unit and model, every candidate
checked in full in price-time order). It shares only the data classes with ``marketplace.matching``; its
capacity arithmetic (free, earliest start, sold out) is its own copy, so a change there cannot hide in both.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator

from sortedcontainers import SortedList

from marketplace.matching import ANY_MODEL, KEY_SCALE, MICRO, Bid, Offer, PriceUnit, Trade


def _key(price_micro: int, unit_micro: int) -> int:
    return (price_micro * KEY_SCALE) // unit_micro


def _free(offer: Offer, start: int, end: int) -> int:
    if not offer.allocations:
        return offer.accelerators
    points = sorted(
        [(s, n) for s, e, n in offer.allocations if s < end and e > start]
        + [(e, -n) for s, e, n in offer.allocations if s < end and e > start]
    )
    used = peak = 0
    for _at, delta in points:
        used += delta
        peak = max(peak, used)
    return offer.accelerators - peak


def _earliest_start(offer: Offer, lo: int, hi: int, hours: int, need: int) -> int | None:
    lo = max(lo, offer.start_hour)
    hi = min(hi, offer.end_hour)
    candidates = [lo, *sorted({e for _s, e, _n in offer.allocations if lo < e})]
    for start in candidates:
        if start + hours > hi:
            return None
        if _free(offer, start, start + hours) >= need:
            return start
    return None


def _sold_out(offer: Offer) -> bool:
    sold = sum((e - s) * n for s, e, n in offer.allocations)
    return sold >= offer.accelerators * (offer.end_hour - offer.start_hour)


def _ask_within_limit(offer: Offer, bid: Bid) -> bool:
    return offer.ask_micro * MICRO <= bid.limit_micro * offer.pool.unit_micro(bid.unit)


def _bid_price_for(offer: Offer, bid: Bid) -> int:
    return (bid.limit_micro * offer.pool.unit_micro(bid.unit)) // MICRO


def _scaled(entries: Iterable[tuple[int, int, str]], unit_micro: int) -> Iterator[tuple[int, int, str]]:
    for neg_limit, seq, bid_id in entries:
        yield neg_limit * unit_micro, seq, bid_id


class ReferenceOrderBook:
    """Same interface and, by specification, the same trades as ``marketplace.matching.OrderBook``."""

    def __init__(self) -> None:
        self.offers: dict[str, Offer] = {}
        self.bids: dict[str, Bid] = {}
        self._seq = itertools.count(1)
        self._offer_index: dict[PriceUnit, dict[str, SortedList]] = {unit: {} for unit in PriceUnit}
        self._bid_index: dict[PriceUnit, dict[str, SortedList]] = {unit: {} for unit in PriceUnit}

    def _rest_offer(self, offer: Offer) -> None:
        self.offers[offer.offer_id] = offer
        for unit in PriceUnit:
            unit_micro = offer.pool.unit_micro(unit)
            if unit_micro <= 0:
                continue
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

    def _offers_for(self, bid: Bid) -> Iterator[Offer]:
        books = self._offer_index[bid.unit]
        models = bid.constraints.models
        chosen = [books[m] for m in models if m in books] if models is not None else list(books.values())
        if not chosen:
            return
        limit_key = _key(bid.limit_micro, MICRO) + 1
        streams = [book.irange(maximum=(limit_key,), inclusive=(True, False)) for book in chosen]
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        for _key_value, _seq, offer_id in merged:
            offer = self.offers[offer_id]
            if _ask_within_limit(offer, bid):
                yield offer

    def _bids_for(self, offer: Offer) -> Iterator[Bid]:
        streams = []
        for unit in PriceUnit:
            unit_micro = offer.pool.unit_micro(unit)
            if unit_micro <= 0:
                continue
            min_limit = -((-offer.ask_micro * MICRO) // unit_micro)
            index = self._bid_index[unit]
            for bucket in (offer.pool.model, ANY_MODEL):
                book = index.get(bucket)
                if book:
                    streams.append(_scaled(book.irange(maximum=(-min_limit, 10**18)), unit_micro))
        if not streams:
            return
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        for _price, _seq, bid_id in merged:
            yield self.bids[bid_id]

    def _fill(self, bid: Bid, offer: Offer) -> tuple[int, int] | None:
        if bid.fixed_start_hour is not None:
            lo, hi = bid.fixed_start_hour, bid.fixed_start_hour + bid.hours
        else:
            lo, hi = bid.earliest_start_hour, bid.latest_end_hour
        if min(hi, offer.end_hour) - max(lo, offer.start_hour) < bid.hours or bid.hours < offer.min_lease_hours:
            return None
        if not bid.constraints.accepts(offer.pool):
            return None
        need = bid.accelerators - bid.filled
        if bid.split_allowed:
            start = _earliest_start(offer, lo, hi, bid.hours, 1)
            if start is None:
                return None
            return min(need, _free(offer, start, start + bid.hours)), start
        start = _earliest_start(offer, lo, hi, bid.hours, need)
        return (need, start) if start is not None else None

    def _book_trade(self, bid: Bid, offer: Offer, count: int, start: int, price: int, aggressor: str) -> Trade:
        end = start + bid.hours
        offer.allocations.append((start, end, count))
        bid.filled += count
        if bid.fixed_start_hour is None:
            bid.fixed_start_hour = start
        return Trade(bid.bid_id, offer.offer_id, offer.pool.pool_id, count, start, end, price, aggressor)

    def add_bid(self, bid: Bid) -> list[Trade]:
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
            if _sold_out(offer):
                sold_out.append(offer)
            if bid.accelerators - bid.filled == 0:
                break
        for offer in sold_out:
            self._unrest_offer(offer)
        if bid.accelerators - bid.filled > 0:
            self._rest_bid(bid)
        return trades

    def add_offer(self, offer: Offer) -> list[Trade]:
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
            trades.append(self._book_trade(bid, offer, count, start, _bid_price_for(offer, bid), "offer"))
            if bid.accelerators - bid.filled == 0:
                filled.append(bid)
            if _sold_out(offer):
                break
        for bid in filled:
            self._unrest_bid(bid)
        if not _sold_out(offer):
            self._rest_offer(offer)
        return trades

    def submit_batch(self, orders: Iterable[Bid | Offer]) -> list[Trade]:
        def order_key(order: Bid | Offer) -> tuple[int, int, str]:
            if isinstance(order, Bid):
                return (order.arrival, 0, order.bid_id)
            return (order.arrival, 1, order.offer_id)

        trades: list[Trade] = []
        for order in sorted(orders, key=order_key):
            trades.extend(self.add_bid(order) if isinstance(order, Bid) else self.add_offer(order))
        return trades

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

Speed (issue 4: 100,000 resting orders): an incoming order only walks the resting lists it could trade with
(its unit, the models it names, domestic-only bids apart), each list skipped whole when its bounds or its best
price rule it out, and rejects most entries with integer comparisons on the entry tuple itself (see
``OrderBook``); free capacity comes from a per-offer usage profile kept up to date as allocations are appended.
tests/marketplace/test_matching_reference.py checks on random books that this makes exactly the trades of the
slow reference engine it replaced (tests/marketplace/matching_reference.py).

Persistence (the database) is the final guard that no accelerator-hour of a pool is sold twice; the engine only
proposes trades.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from operator import itemgetter
from typing import Any, TypeVar

from sortedcontainers import SortedList

MICRO = 1_000_000
# Sort keys are prices scaled by KEY_SCALE before the floor division by the unit size.
KEY_SCALE = 10**12
ANY_MODEL = "*"  # bid index bucket of bids that accept every accelerator model
# Bid index bucket of the domestic-only bids that name no model, which an offer of a foreign model never scans.
_DOMESTIC = "*domestic"


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


class _Usage:
    """Accelerators in use per hour of an offer, as a step function: ``levels[i]`` from hour ``times[i]`` until
    ``times[i + 1]`` (the last step runs on forever). Built from an offer's allocations and kept in step with them
    as they are appended, so free capacity, the earliest start and "sold out" cost a bisection and a slice
    instead of a sort of every allocation."""

    __slots__ = ("absorbed", "allocations", "levels", "sold", "times")

    def __init__(self, allocations: list[tuple[int, int, int]]) -> None:
        self.allocations = allocations  # the list absorbed (a new list means start again)
        self.absorbed = 0
        self.times = [-(1 << 62)]
        self.levels = [0]
        self.sold = 0  # accelerator-hours

    def _split(self, at: int) -> int:
        times = self.times
        index = bisect_right(times, at) - 1
        if times[index] != at:
            index += 1
            times.insert(index, at)
            self.levels.insert(index, self.levels[index - 1])
        return index

    def absorb(self) -> None:
        allocations = self.allocations
        for start, end, count in allocations[self.absorbed :]:
            self.sold += (end - start) * count
            if start < end:
                first, last = self._split(start), self._split(end)
                self.levels[first:last] = [level + count for level in self.levels[first:last]]
        self.absorbed = len(allocations)

    def peak(self, start: int, end: int) -> int:
        """Most accelerators in use at any hour of [start, end), start < end (0 if none)."""
        times = self.times
        peak = max(self.levels[bisect_right(times, start) - 1 : bisect_left(times, end)])
        return peak if peak > 0 else 0

    def earliest_start(self, lo: int, hi: int, hours: int, allowed: int) -> int | None:
        """The first s in [lo, hi - hours] with at most ``allowed`` in use over [s, s + hours).

        The earliest such s is ``lo`` or the end of a step above ``allowed``: a window overlapping that step
        cannot fit, so the search jumps past the last such step inside the window."""
        if allowed < 0:
            return None
        times, levels = self.times, self.levels
        start = lo
        first = bisect_right(times, start) - 1
        while start + hours <= hi:
            last = bisect_left(times, start + hours, first)
            if max(levels[first:last]) <= allowed:
                return start
            blocking = last - 1
            while levels[blocking] <= allowed:
                blocking -= 1
            # levels[-1] is 0 <= allowed, so a blocking step is never the last one.
            first = blocking + 1
            start = times[first]
        return None


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
    # (start, end, accelerators) already sold from this offer. Append only: the usage profile follows it.
    allocations: list[tuple[int, int, int]] = field(default_factory=list)
    seq: int = 0
    _usage: _Usage | None = field(default=None, init=False, repr=False, compare=False)

    def usage(self) -> _Usage:
        """The usage profile of the allocations, brought up to date with any appended since the last call."""
        usage = self._usage
        if usage is None or usage.allocations is not self.allocations or usage.absorbed > len(self.allocations):
            usage = self._usage = _Usage(self.allocations)
        if usage.absorbed < len(self.allocations):
            usage.absorb()
        return usage

    def free(self, start: int, end: int) -> int:
        """Accelerators free during the whole of [start, end)."""
        if not self.allocations:
            return self.accelerators
        return self.accelerators - self.usage().peak(start, end)

    def earliest_start(self, lo: int, hi: int, hours: int, need: int) -> int | None:
        """The first s in [lo, hi - hours] with `need` accelerators free over [s, s + hours)."""
        lo = max(lo, self.start_hour)
        hi = min(hi, self.end_hour)
        if not self.allocations:
            return lo if lo + hours <= hi and self.accelerators >= need else None
        return self.usage().earliest_start(lo, hi, hours, self.accelerators - need)

    def sold_out(self) -> bool:
        sold = self.usage().sold if self.allocations else 0
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


_T = TypeVar("_T", bound=tuple[Any, ...])
_NO_LIMIT = 1 << 62  # "no maximum PUE": above any real figure


def _window(bid: Bid) -> tuple[int, int]:
    """The hours the bid's lease must fit in now: its window, or its fixed start once partly filled."""
    if bid.fixed_start_hour is not None:
        return bid.fixed_start_hour, bid.fixed_start_hour + bid.hours
    return bid.earliest_start_hour, bid.latest_end_hour


def _need(bid: Bid) -> int:
    """Accelerators one offer must have for this bid: all it still wants, or any if it may split."""
    return 1 if bid.split_allowed else bid.accelerators - bid.filled


# Index entries. Their leading (price, seq) is unique, so comparisons never reach the order objects. They copy
# what a scan filters on, so that rejecting a candidate reads one tuple and follows no pointer.
# Offer: (normalised ask key, seq, start_hour, end_hour, min_lease_hours, accelerators, green share, PUE,
#         domestic, verified, offer)
_OfferEntry = tuple[int, int, int, int, int, int, int, int, bool, bool, Offer]
# Bid: (-limit, seq, latest start = hi - hours, earliest end = lo + hours, hours, accelerators one offer must
#       have, min green share, max PUE, domestic only, verified only, bid). The window is the one the bid had
#       when it rested: a later partial fill only narrows it, so the entry stays a necessary condition.
_BidEntry = tuple[int, int, int, int, int, int, int, int, bool, bool, Bid]


class _OfferBook:
    """One price-ordered list of offer entries, and bounds on what its offers could give, widened as offers
    arrive (never narrowed), so that a list that cannot hold a candidate for a bid is not scanned."""

    __slots__ = ("domestic", "entries", "green", "head", "pue", "verified")

    def __init__(self) -> None:
        self.entries = SortedList()
        self.head: _OfferEntry | None = None  # the first entry, if any
        self.green = -1  # the best green share seen
        self.pue = _NO_LIMIT  # the best (lowest) PUE seen
        self.domestic = False  # any domestic offer seen
        self.verified = False  # any verified offer seen

    def add(self, entry: _OfferEntry) -> None:
        self.entries.add(entry)
        if self.head is None or entry < self.head:
            self.head = entry
        _key, _seq, _start, _end, _lease, _size, green, pue, domestic, verified, _offer = entry
        if green > self.green:
            self.green = green
        if pue < self.pue:
            self.pue = pue
        if domestic:
            self.domestic = True
        if verified:
            self.verified = True

    def remove(self, entry: _OfferEntry) -> None:
        self.entries.remove(entry)
        if entry is self.head:
            self.head = self.entries[0] if self.entries else None


class _BidBook:
    """One limit-ordered list of bid entries, and bounds on what its bids could accept, widened as bids arrive
    (never narrowed), so that a list that cannot hold a candidate for an offer is not scanned."""

    __slots__ = ("entries", "foreign", "green", "head", "pue", "unverified")

    def __init__(self) -> None:
        self.entries = SortedList()
        self.head: _BidEntry | None = None  # the first entry, if any
        self.green = 101  # the lowest green share required
        self.pue = -1  # the highest PUE accepted
        self.foreign = False  # any bid accepting a foreign accelerator
        self.unverified = False  # any bid accepting an unverified pool

    def add(self, entry: _BidEntry) -> None:
        self.entries.add(entry)
        if self.head is None or entry < self.head:
            self.head = entry
        _limit, _seq, _start, _end, _hours, _need, green, pue, domestic_only, verified_only, _bid = entry
        if green < self.green:
            self.green = green
        if pue > self.pue:
            self.pue = pue
        if not domestic_only:
            self.foreign = True
        if not verified_only:
            self.unverified = True

    def remove(self, entry: _BidEntry) -> None:
        self.entries.remove(entry)
        if entry is self.head:
            self.head = self.entries[0] if self.entries else None


def _offer_candidates(book: _OfferBook, limit_key: int, lo: int, hi: int, bid: Bid) -> Iterator[_OfferEntry]:
    """Entries of one price-ordered offer list up to the limit key whose offer could serve the bid: window,
    minimum lease, size and the cheap constraints checked inline (a necessary condition; ``_fill`` decides)."""
    hours = bid.hours
    latest_start, earliest_end = hi - hours, lo + hours
    constraints = bid.constraints
    min_green = constraints.min_green_share_pct
    max_pue = _NO_LIMIT if constraints.max_pue_milli is None else constraints.max_pue_milli
    domestic_only = constraints.domestic_only
    verified_only = constraints.verified_only
    need = _need(bid)
    for entry in book.entries:
        key, _seq, start, end, min_lease, accelerators, green, pue, domestic, verified, offer = entry
        if key >= limit_key:
            if key > limit_key:
                return
            if not ask_within_limit(offer, bid):
                continue  # the floor key equals the limit's but the exact price is above it
        if (
            start > latest_start
            or end < earliest_end
            or end - start < hours
            or min_lease > hours
            or accelerators < need
            or green < min_green
            or pue > max_pue
            or (domestic_only and not domestic)
            or (verified_only and not verified)
        ):
            continue
        yield entry


def _bid_candidates(
    book: _BidBook, max_neg_limit: int, unit_micro: int, offer: Offer
) -> Iterator[tuple[int, int, Bid]]:
    """Entries of one bid list (best limit first) down to the offer's ask whose bid could take from the offer,
    as (-price in ¥ per accelerator-hour of the offer's pool, seq, bid) so that lists of all units merge."""
    start, end, min_lease, accelerators = offer.start_hour, offer.end_hour, offer.min_lease_hours, offer.accelerators
    length = end - start
    pool = offer.pool
    green, pue, foreign, unverified = pool.green_share_pct, pool.pue_milli, not pool.domestic, not pool.verified
    for entry in book.entries:
        (
            neg_limit,
            seq,
            latest_start,
            earliest_end,
            hours,
            need,
            min_green,
            max_pue,
            domestic_only,
            verified_only,
            bid,
        ) = entry
        if neg_limit > max_neg_limit:
            return
        if (
            start > latest_start
            or end < earliest_end
            or length < hours
            or min_lease > hours
            or need > accelerators
            or green < min_green
            or pue > max_pue
            or (domestic_only and foreign)
            or (verified_only and unverified)
        ):
            continue
        yield neg_limit * unit_micro, seq, bid


def _merged(streams: list[tuple[tuple[int, int], Iterator[_T]]]) -> Iterator[_T]:
    """Items of several streams in order of their (price, seq) prefix, which is unique."""
    if not streams:
        return iter(())
    if len(streams) == 1:
        return streams[0][1]
    return _merge_lazily(streams)


def _merge_lazily(streams: list[tuple[tuple[int, int], Iterator[_T]]]) -> Iterator[_T]:
    """Each stream comes with a bound, the (price, seq) of the first entry of its list, below none of its items;
    a stream is only started (scanned up to its first item) when its bound is below the best item found so far,
    so lists whose best price is worse than what another list already offers are never scanned."""
    streams.sort(key=itemgetter(0))
    waiting = iter(streams)
    pending = next(waiting, None)
    heap: list[tuple[_T, Iterator[_T]]] = []
    while True:
        while pending is not None and (not heap or pending[0] < heap[0][0]):
            item = next(pending[1], None)
            if item is not None:
                heapq.heappush(heap, (item, pending[1]))
            pending = next(waiting, None)
        if not heap:
            return
        item, stream = heap[0]
        yield item
        following = next(stream, None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following, stream))


class OrderBook:
    """Resting offers and bids, indexed for price-time priority in each unit.

    Offers rest in one price-ordered list per (unit, accelerator model). Bids rest in one list per (unit, model
    named), or, naming none, per unit in ANY_MODEL or, if domestic only, in _DOMESTIC. Each entry carries what
    the cheap filters need (window, minimum lease, size, green share, PUE, domestic, verified), so a scan rejects
    most non-candidates with integer comparisons on one tuple and no function call; only survivors go through
    the exact price test, all constraints and the capacity search. A list whose bounds rule out every order in
    it is not scanned at all, nor one whose best price is worse than a candidate already found in another.
    Lists of several models or units are merged on the same keys as before, so the order in which candidates
    are tried, and hence every trade, is unchanged (tests/marketplace/test_matching_reference.py).
    """

    def __init__(self) -> None:
        self.offers: dict[str, Offer] = {}
        self.bids: dict[str, Bid] = {}
        self._seq = itertools.count(1)
        self._offer_index: dict[PriceUnit, dict[str, _OfferBook]] = {unit: {} for unit in PriceUnit}
        self._bid_index: dict[PriceUnit, dict[str, _BidBook]] = {unit: {} for unit in PriceUnit}
        # Where each resting order's entries are, to take them out without recomputing keys.
        self._offer_entries: dict[str, list[tuple[_OfferBook, _OfferEntry]]] = {}
        self._bid_entries: dict[str, list[tuple[_BidBook, _BidEntry]]] = {}

    # --- resting orders ----------------------------------------------------------------------------

    def _rest_offer(self, offer: Offer) -> None:
        self.offers[offer.offer_id] = offer
        pool = offer.pool
        placed = []
        for unit, unit_micro in (
            (PriceUnit.ACCELERATOR_HOUR, MICRO),
            (PriceUnit.SCU_HOUR, pool.scu_micro),
            (PriceUnit.BWU_HOUR, pool.bwu_micro),
        ):
            if unit_micro <= 0:
                continue  # no attested figure in this unit: not offered in it
            entry = (
                _key(offer.ask_micro, unit_micro),
                offer.seq,
                offer.start_hour,
                offer.end_hour,
                offer.min_lease_hours,
                offer.accelerators,
                pool.green_share_pct,
                pool.pue_milli,
                pool.domestic,
                pool.verified,
                offer,
            )
            index = self._offer_index[unit]
            book = index.get(pool.model)
            if book is None:
                book = index[pool.model] = _OfferBook()
            book.add(entry)
            placed.append((book, entry))
        self._offer_entries[offer.offer_id] = placed

    def _unrest_offer(self, offer: Offer) -> None:
        del self.offers[offer.offer_id]
        for book, entry in self._offer_entries.pop(offer.offer_id):
            book.remove(entry)

    def _rest_bid(self, bid: Bid) -> None:
        self.bids[bid.bid_id] = bid
        index = self._bid_index[bid.unit]
        lo, hi = _window(bid)
        hours = bid.hours
        constraints = bid.constraints
        max_pue = _NO_LIMIT if constraints.max_pue_milli is None else constraints.max_pue_milli
        entry = (
            -bid.limit_micro,
            bid.seq,
            hi - hours,
            lo + hours,
            hours,
            _need(bid),
            constraints.min_green_share_pct,
            max_pue,
            constraints.domestic_only,
            constraints.verified_only,
            bid,
        )
        models = constraints.models
        placed = []
        buckets: Iterable[str] = models  # type: ignore[assignment]
        if models is None:
            buckets = (_DOMESTIC,) if constraints.domestic_only else (ANY_MODEL,)
        for bucket in buckets:
            book = index.get(bucket)
            if book is None:
                book = index[bucket] = _BidBook()
            book.add(entry)
            placed.append((book, entry))
        self._bid_entries[bid.bid_id] = placed

    def _unrest_bid(self, bid: Bid) -> None:
        del self.bids[bid.bid_id]
        for book, entry in self._bid_entries.pop(bid.bid_id):
            book.remove(entry)

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

    def _offers_for(self, bid: Bid) -> Iterator[_OfferEntry]:
        """Entries of resting offers that may serve this bid, in price-time priority for its unit, up to its
        limit."""
        lo, hi = _window(bid)
        if hi - lo < bid.hours:
            return iter(())
        books = self._offer_index[bid.unit]
        constraints = bid.constraints
        models = constraints.models
        max_pue = _NO_LIMIT if constraints.max_pue_milli is None else constraints.max_pue_milli
        limit_key = bid.limit_micro * MICRO  # == _key(limit, MICRO)
        streams: list[tuple[tuple[int, int], Iterator[_OfferEntry]]] = []
        for book in books.values() if models is None else (books.get(m) for m in models):
            if book is None or book.head is None:
                continue
            head = book.head
            if (
                head[0] > limit_key
                or book.green < constraints.min_green_share_pct
                or book.pue > max_pue
                or (constraints.domestic_only and not book.domestic)
                or (constraints.verified_only and not book.verified)
            ):
                continue
            streams.append(((head[0], head[1]), _offer_candidates(book, limit_key, lo, hi, bid)))
        return _merged(streams)

    def _bids_for(self, offer: Offer) -> Iterator[tuple[int, int, Bid]]:
        """(-price, seq, bid) of resting bids that may take from this offer: highest limit in its terms
        (¥/accelerator-hour), then time."""
        pool = offer.pool
        streams: list[tuple[tuple[int, int], Iterator[tuple[int, int, Bid]]]] = []
        for unit, unit_micro in (
            (PriceUnit.ACCELERATOR_HOUR, MICRO),
            (PriceUnit.SCU_HOUR, pool.scu_micro),
            (PriceUnit.BWU_HOUR, pool.bwu_micro),
        ):
            if unit_micro <= 0:
                continue
            # limit x unit / 1e6 >= ask  <=>  limit >= ask x 1e6 / unit; -limit <= -ceil(...)
            max_neg_limit = (-offer.ask_micro * MICRO) // unit_micro
            index = self._bid_index[unit]
            for bucket in (pool.model, ANY_MODEL, _DOMESTIC) if pool.domestic else (pool.model, ANY_MODEL):
                book = index.get(bucket)
                if book is None or book.head is None:
                    continue
                head = book.head
                if (
                    head[0] > max_neg_limit
                    or book.green > pool.green_share_pct
                    or book.pue < pool.pue_milli
                    or (not book.foreign and not pool.domestic)
                    or (not book.unverified and not pool.verified)
                ):
                    continue
                bound = (head[0] * unit_micro, head[1])
                streams.append((bound, _bid_candidates(book, max_neg_limit, unit_micro, offer)))
        return _merged(streams)

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
        for entry in self._offers_for(bid):
            offer = entry[10]
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
        for entry in self._bids_for(offer):
            bid = entry[2]
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

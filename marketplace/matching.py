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
price rule it out, so an order that crosses nothing costs a few head checks and its inserts (one per offer:
offers rest in ask order once, and bids per SCU-hour or BWU-hour re-order what they read). Each list is a
blocked sorted list (``_Sorted``) whose prices and windows also sit in arrays of machine integers: an insert
bisects a contiguous array instead of scattered objects, and a scan rejects most entries on their window
without touching them (see ``OrderBook``). Free capacity comes from a per-offer usage profile kept up to date
as allocations are appended. tests/marketplace/test_matching_reference.py checks on random books that this
makes exactly the trades of the slow reference engine it replaced (tests/marketplace/matching_reference.py);
tests/marketplace/test_matching_index.py checks the lists themselves and the exact fallbacks for values beyond
the machine integers.

Persistence (the database) is the final guard that no accelerator-hour of a pool is sold twice; the engine only
proposes trades.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import importlib.machinery
import importlib.util
import itertools
import os
import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from operator import itemgetter
from typing import Any, Final, TypeVar

# Final aliases of the library functions the hot loops call: compiled (mypyc), a call reads a static instead of
# looking the name up in the module's dict; interpreted, nothing changes.
bisect_left: Final = bisect.bisect_left
bisect_right: Final = bisect.bisect_right
heappush: Final = heapq.heappush
heappop: Final = heapq.heappop
heapreplace: Final = heapq.heapreplace

MICRO: Final = 1_000_000
# Sort keys are prices scaled by KEY_SCALE before the floor division by the unit size.
KEY_SCALE: Final = 10**12
ANY_MODEL: Final = "*"  # bid index bucket of bids that accept every accelerator model
# Bid index bucket of the domestic-only bids that name no model, which an offer of a foreign model never scans.
_DOMESTIC: Final = "*domestic"


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
        self.times = [-(1 << 256)]  # before any hour
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
_NO_LIMIT: Final = 1 << 62  # "no maximum PUE": above any real figure

# Index keys: (price key << _SHIFT) | seq, one int that sorts like the pair (price key, seq) (seq < 2**_SHIFT), so
# that bisection compares plain ints and never follows a pointer into an entry.
_SHIFT: Final = 64
_SEQ_MASK: Final = (1 << _SHIFT) - 1
# Blocks of a sorted list are split above this size: an insert moves at most this many pointers.
_BLOCK_MAX: Final = 512


def _window(bid: Bid) -> tuple[int, int]:
    """The hours the bid's lease must fit in now: its window, or its fixed start once partly filled."""
    if bid.fixed_start_hour is not None:
        return bid.fixed_start_hour, bid.fixed_start_hour + bid.hours
    return bid.earliest_start_hour, bid.latest_end_hour


def _need(bid: Bid) -> int:
    """Accelerators one offer must have for this bid: all it still wants, or any if it may split."""
    return 1 if bid.split_allowed else bid.accelerators - bid.filled


# Prices and windows are also kept in arrays of machine integers beside each list, so that bisection and most of
# a scan read contiguous memory and touch no entry. Values there are clamped to +-_BOUND (which fit in int64).
# Clamping is monotone, so comparing clamped windows never rejects what the exact window would take; a clamped
# price is only exact strictly inside the bounds (``_exact``), and the exact keys decide otherwise.
_BOUND: Final = 1 << 62


def _clamp(value: int) -> int:
    return value if -_BOUND < value < _BOUND else _BOUND if value > 0 else -_BOUND


def _exact(value: int) -> bool:
    """Whether ``_clamp(value)`` is ``value`` and no other value clamps to it."""
    return -_BOUND < value < _BOUND


_EMPTY: Final = 1 << 256  # the best price of an empty list: above any bound, so that a head check skips it


# What a scan filters on beyond the window, one tuple per resting order, shared by every list the order is in. It
# holds the order's id rather than the order, so it holds no container and the garbage collector stops tracking it.
# Offer: (min_lease_hours, accelerators, green share, PUE, domestic, verified, offer_id, end_hour - start_hour,
#        ask_micro, scu_micro, bwu_micro, seq); the arrays hold start_hour and end_hour, the list is in ask order.
_OfferData = tuple[int, int, int, int, bool, bool, str, int, int, int, int, int]
# Bid: (hours, accelerators one offer must have, min green share, max PUE, domestic only, verified only, bid_id);
#      the arrays hold the latest start (hi - hours) and the earliest end (lo + hours). The window is the one the
#      bid had when it rested: a later partial fill only narrows it, so the data stay a necessary condition.
_BidData = tuple[int, int, int, int, bool, bool, str]


class _Sorted:
    """Orders of one list sorted by (price, seq), in blocks of parallel sequences: ``keys[i]`` (the exact keys
    ``price << _SHIFT | seq``), ``data[i]`` (the entries), and arrays of machine ints ``prices[i]`` (the price
    clamped into int64), ``first[i]`` and ``second[i]`` (the window, see ``_OfferData`` and ``_BidData``);
    ``maxes[i]`` is the last key of block i. Positions inside a block are found by bisecting the contiguous price
    array, not the scattered key objects: orders are added in increasing seq, so a new order goes after every
    order of the same price, and only clamped prices (outside +-2**62) fall back to the exact keys. An insert
    moves at most ``_BLOCK_MAX`` items. ``best`` is the price of the first order (above every price when the list
    is empty) and ``head`` its key."""

    __slots__ = ("best", "block_max", "data", "first", "head", "keys", "maxes", "prices", "second")

    def __init__(self, block_max: int = _BLOCK_MAX) -> None:
        self.block_max = block_max  # smaller in tests, to exercise splits
        self.keys: list[list[int]] = []
        self.data: list[list[Any]] = []
        self.prices: list[array[int]] = []
        self.first: list[array[int]] = []
        self.second: list[array[int]] = []
        self.maxes: list[int] = []
        self.head = 0
        self.best = _EMPTY

    def add(self, price: int, seq: int, data: Any, first: int, second: int) -> None:
        """Add an order whose seq is above that of every order in the list."""
        key = (price << _SHIFT) | seq
        exact = -_BOUND < price < _BOUND
        coarse = price if exact else _clamp(price)
        maxes = self.maxes
        if not maxes:
            self.keys.append([key])
            self.data.append([data])
            self.prices.append(array("q", (coarse,)))
            self.first.append(array("q", (first,)))
            self.second.append(array("q", (second,)))
            maxes.append(key)
            self.head, self.best = key, price
            return
        index = bisect_left(maxes, key)
        if index == len(maxes):
            index -= 1
            block = self.keys[index]
            block.append(key)
            self.data[index].append(data)
            self.prices[index].append(coarse)
            self.first[index].append(first)
            self.second[index].append(second)
            maxes[index] = key
        else:
            block = self.keys[index]
            # Unclamped: after every order of this price (all older). Clamped: by the exact keys.
            at = bisect_right(self.prices[index], coarse) if exact else bisect_left(block, key)
            block.insert(at, key)
            self.data[index].insert(at, data)
            self.prices[index].insert(at, coarse)
            self.first[index].insert(at, first)
            self.second[index].insert(at, second)
            if at == 0 and index == 0:
                self.head, self.best = key, price
        if len(block) > self.block_max:
            half = len(block) >> 1
            for blocks in (self.keys, self.data, self.prices, self.first, self.second):
                whole = blocks[index]
                blocks[index : index + 1] = [whole[:half], whole[half:]]  # type: ignore[list-item]
            maxes.insert(index, block[half - 1])

    def remove(self, price: int, seq: int) -> None:
        key = (price << _SHIFT) | seq
        coarse = _clamp(price)
        maxes = self.maxes
        index = bisect_left(maxes, key)
        if index == len(maxes):
            raise KeyError(key)
        block = self.keys[index]
        prices = self.prices[index]
        at = bisect_left(prices, coarse)
        if at == len(block) or block[at] != key:  # other orders at this price before it
            at = bisect_left(block, key, at, bisect_right(prices, coarse, at))
            if at == len(block) or block[at] != key:
                raise KeyError(key)
        del block[at]
        del self.data[index][at]
        del prices[at]
        del self.first[index][at]
        del self.second[index][at]
        if not block:
            del self.keys[index]
            del self.data[index]
            del self.prices[index]
            del self.first[index]
            del self.second[index]
            del maxes[index]
        elif at == len(block):
            maxes[index] = block[-1]
        if key == self.head:
            if maxes:
                self.head = self.keys[0][0]
                self.best = self.head >> _SHIFT
            else:
                self.head, self.best = 0, _EMPTY

    def __len__(self) -> int:
        return sum(map(len, self.keys))


class _OfferBook(_Sorted):
    """The offers of one accelerator model in order of their ask per accelerator-hour (then arrival), and bounds
    on what its offers could give, widened as offers arrive (never narrowed), so that a list that cannot hold a
    candidate for a bid is not scanned. Bids per SCU-hour or BWU-hour read the same list (see
    ``_offer_candidates_per_unit``): ``scu``/``bwu`` are the largest SCU/BWU per accelerator-hour seen (0: none)."""

    __slots__ = ("bwu", "domestic", "green", "pue", "scu", "verified")

    def __init__(self) -> None:
        super().__init__()
        self.green = -1  # the best green share seen
        self.pue = _NO_LIMIT  # the best (lowest) PUE seen
        self.domestic = False  # any domestic offer seen
        self.verified = False  # any verified offer seen
        self.scu = 0
        self.bwu = 0

    def widen(self, pool: PoolAttributes) -> None:
        if pool.green_share_pct > self.green:
            self.green = pool.green_share_pct
        if pool.pue_milli < self.pue:
            self.pue = pool.pue_milli
        if pool.domestic:
            self.domestic = True
        if pool.verified:
            self.verified = True
        if pool.scu_micro > self.scu:
            self.scu = pool.scu_micro
        if pool.bwu_micro > self.bwu:
            self.bwu = pool.bwu_micro


class _BidBook(_Sorted):
    """One limit-ordered list of bids, and bounds on what its bids could accept, widened as bids arrive (never
    narrowed), so that a list that cannot hold a candidate for an offer is not scanned."""

    __slots__ = ("foreign", "green", "pue", "unverified")

    def __init__(self) -> None:
        super().__init__()
        self.green = 101  # the lowest green share required
        self.pue = -1  # the highest PUE accepted
        self.foreign = False  # any bid accepting a foreign accelerator
        self.unverified = False  # any bid accepting an unverified pool

    def widen(self, green: int, pue: int, domestic_only: bool, verified_only: bool) -> None:
        if green < self.green:
            self.green = green
        if pue > self.pue:
            self.pue = pue
        if not domestic_only:
            self.foreign = True
        if not verified_only:
            self.unverified = True


def _offer_candidates(
    book: _OfferBook, limit_key: int, lo: int, hi: int, bid: Bid, offers: dict[str, Offer]
) -> Iterator[tuple[int, str]]:
    """(index key, offer_id) of one price-ordered offer list up to the limit key whose offer could serve the bid:
    window, minimum lease, size and the cheap constraints checked inline (a necessary condition; ``_fill``
    decides). Models need no check: the lists scanned are those of the models the bid accepts."""
    hours = bid.hours
    latest_start, earliest_end = _clamp(hi - hours), _clamp(lo + hours)
    constraints = bid.constraints
    min_green = constraints.min_green_share_pct
    max_pue = _NO_LIMIT if constraints.max_pue_milli is None else constraints.max_pue_milli
    domestic_only = constraints.domestic_only
    verified_only = constraints.verified_only
    need = _need(bid)
    # Prices are floor keys: from the limit's on, the exact price decides; above it, the scan ends. The arrays
    # hold clamped prices, exact for a limit inside the clamp (a clamped price lies beyond such a limit).
    coarse = _clamp(limit_key)
    exact = _exact(limit_key)
    tie, stop = limit_key << _SHIFT, (limit_key << _SHIFT) | _SEQ_MASK
    data: list[_OfferData]  # typed for mypyc: unpacking an entry reads native fields
    for keys, data, prices, starts, ends in zip(
        book.keys, book.data, book.prices, book.first, book.second, strict=True
    ):
        last = keys[-1] > stop
        if prices[-1] < coarse:
            exact_from = len(keys)
        elif exact:
            exact_from = bisect_left(prices, coarse)
            if last:
                starts = starts[: bisect_right(prices, coarse, exact_from)]
        else:
            exact_from = bisect_left(keys, tie)
            if last:
                starts = starts[: bisect_right(keys, stop, exact_from)]
        for at, start in enumerate(starts):
            if start > latest_start or ends[at] < earliest_end:
                continue
            min_lease, accelerators, green, pue, domestic, verified, offer_id, length, _ask, _scu, _bwu, _seq = data[at]
            if (
                length < hours
                or min_lease > hours
                or accelerators < need
                or green < min_green
                or pue > max_pue
                or (domestic_only and not domestic)
                or (verified_only and not verified)
            ):
                continue
            if at >= exact_from and not ask_within_limit(offers[offer_id], bid):
                continue  # the floor key equals the limit's but the exact price is above it
            yield keys[at], offer_id
        if last:
            return


def _offer_candidates_per_unit(
    book: _OfferBook, field: int, unit_max: int, lo: int, hi: int, bid: Bid
) -> Iterator[tuple[int, str]]:
    """What ``_offer_candidates`` gives for a list sorted in the bid's unit (SCU-hour or BWU-hour), read from the
    list in ask order: (key in the bid's unit, offer_id) in (unit price key, seq) order, up to the limit.

    An offer's unit key is ask x KEY_SCALE // unit, with unit <= ``unit_max`` (the list's largest), so every
    offer from ask a on has a unit key of at least a x KEY_SCALE // unit_max. Candidates wait in a heap and one
    is given once the scan has reached an ask whose bound is above its unit key (then no offer yet to be read
    can come before it); the scan ends at the first ask whose bound is above the limit's key."""
    hours = bid.hours
    latest_start, earliest_end = _clamp(hi - hours), _clamp(lo + hours)
    constraints = bid.constraints
    min_green = constraints.min_green_share_pct
    max_pue = _NO_LIMIT if constraints.max_pue_milli is None else constraints.max_pue_milli
    domestic_only = constraints.domestic_only
    verified_only = constraints.verified_only
    need = _need(bid)
    limit = bid.limit_micro
    # The list's prices are ask x MICRO; bound(price) = price x MICRO // unit_max (the unit key bound of its ask).
    # The scan ends at the first price whose bound is above the limit's key: price >= ceil((key + 1) x max / MICRO).
    stop = -((-(limit * MICRO + 1) * unit_max) // MICRO)
    exact = _exact(stop)
    coarse = _clamp(stop)
    heap: list[tuple[int, str]] = []
    release = _EMPTY  # the first price whose bound is above the heap's best unit key
    data: list[_OfferData]  # typed for mypyc: unpacking an entry reads native fields
    for keys, data, prices, starts, ends in zip(
        book.keys, book.data, book.prices, book.first, book.second, strict=True
    ):
        if exact:
            last = prices[-1] >= coarse
            if last:
                starts = starts[: bisect_left(prices, coarse)]
        else:
            last = keys[-1] >= stop << _SHIFT
            if last:
                starts = starts[: bisect_left(keys, stop << _SHIFT)]
        for at, start in enumerate(starts):
            if start > latest_start or ends[at] < earliest_end:
                continue
            if prices[at] >= release:  # clamped prices are at most the exact ones: a release is never early
                bound = (keys[at] >> _SHIFT) * MICRO // unit_max
                while heap and heap[0][0] >> _SHIFT < bound:
                    yield heappop(heap)
                release = -((-((heap[0][0] >> _SHIFT) + 1) * unit_max) // MICRO) if heap else _EMPTY
            entry = data[at]
            min_lease, accelerators, green, pue, domestic, verified, offer_id, length, ask, scu, bwu, seq = entry
            unit = bwu if field else scu
            if (
                unit <= 0
                or length < hours
                or min_lease > hours
                or accelerators < need
                or green < min_green
                or pue > max_pue
                or (domestic_only and not domestic)
                or (verified_only and not verified)
                or ask * MICRO > limit * unit  # exact: ask per unit above the limit
            ):
                continue
            key = ((ask * KEY_SCALE // unit) << _SHIFT) | seq
            if not heap or key < heap[0][0]:
                release = -((-((key >> _SHIFT) + 1) * unit_max) // MICRO)
            heappush(heap, (key, offer_id))
        if last:
            break
    while heap:
        yield heappop(heap)


def _bid_candidates(
    book: _BidBook, max_neg_limit: int, unit_micro: int, offer: Offer
) -> Iterator[tuple[int, int, str]]:
    """Bids of one list (best limit first) down to the offer's ask that could take from the offer, as
    (-price in ¥ per accelerator-hour of the offer's pool, seq, bid_id) so that lists of all units merge."""
    start, end = _clamp(offer.start_hour), _clamp(offer.end_hour)
    min_lease, accelerators = offer.min_lease_hours, offer.accelerators
    length = offer.end_hour - offer.start_hour
    pool = offer.pool
    green, pue, foreign, unverified = pool.green_share_pct, pool.pue_milli, not pool.domestic, not pool.verified
    coarse = _clamp(max_neg_limit)
    exact = _exact(max_neg_limit)
    stop = (max_neg_limit << _SHIFT) | _SEQ_MASK
    data: list[_BidData]  # typed for mypyc: unpacking an entry reads native fields
    for keys, data, prices, latest_starts, earliest_ends in zip(
        book.keys, book.data, book.prices, book.first, book.second, strict=True
    ):
        last = prices[-1] > coarse if exact else keys[-1] > stop
        if last:
            latest_starts = latest_starts[: bisect_right(prices, coarse) if exact else bisect_right(keys, stop)]
        for at, latest_start in enumerate(latest_starts):
            if start > latest_start or end < earliest_ends[at]:
                continue
            hours, need, min_green, max_pue, domestic_only, verified_only, bid_id = data[at]
            if (
                length < hours
                or min_lease > hours
                or need > accelerators
                or green < min_green
                or pue > max_pue
                or (domestic_only and foreign)
                or (verified_only and unverified)
            ):
                continue
            key = keys[at]
            yield (key >> _SHIFT) * unit_micro, key & _SEQ_MASK, bid_id
        if last:
            return


def _merged(streams: list[tuple[tuple[int, ...], Iterator[_T]]]) -> Iterator[_T]:
    """Items of several streams in order of their unique leading fields."""
    if len(streams) == 1:
        return streams[0][1]
    return _merge_lazily(streams)


def _merge_lazily(streams: list[tuple[tuple[int, ...], Iterator[_T]]]) -> Iterator[_T]:
    """Each stream comes with a bound, the leading fields of the first entry of its list, below none of its items;
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
                heappush(heap, (item, pending[1]))
            pending = next(waiting, None)
        if not heap:
            return
        item, stream = heap[0]
        yield item
        following = next(stream, None)
        if following is None:
            heappop(heap)
        else:
            heapreplace(heap, (following, stream))


def _plain(constraints: Constraints) -> bool:
    """Whether the index and the scan check all of these constraints (models, green share, PUE, domestic,
    verified), so that ``Constraints.accepts`` has nothing left to refuse."""
    return (
        not constraints.min_tflops
        and not constraints.min_memory_gb
        and constraints.hubs is None
        and constraints.provinces is None
    )


class OrderBook:
    """Resting offers and bids, indexed for price-time priority in each unit.

    Offers rest in one list per accelerator model, in order of their ask per accelerator-hour (then arrival);
    a bid per SCU-hour or BWU-hour reads the same list and puts its candidates back into its own unit's order
    (``_offer_candidates_per_unit``), so an offer costs one insert whatever units it is sold in. Bids rest in one
    list per (unit, model named), or, naming none, per unit in ANY_MODEL or, if domestic only, in _DOMESTIC.
    Lists are ``_Sorted``: int keys (price key and arrival sequence in one int), machine-int arrays of prices and
    windows, and a tuple per order of what the cheap filters need (minimum lease, size, green share, PUE,
    domestic, verified), so a scan rejects most non-candidates on the window arrays, the rest on one tuple, with
    no function call; only survivors go through the exact price test, the remaining constraints and the capacity
    search. A list whose bounds or best price rule out every order in it is not scanned at all, nor one whose
    best price is worse than a candidate already found in another; an order that crosses nothing costs its head
    checks and its inserts. Lists of several models or units are merged on the same keys as before, so the order
    in which candidates are tried, and hence every trade, is unchanged (tests/marketplace/test_matching_reference.py).
    """

    def __init__(self) -> None:
        self.offers: dict[str, Offer] = {}
        self.bids: dict[str, Bid] = {}
        self._seq = itertools.count(1)
        self._offer_books: dict[str, _OfferBook] = {}  # per accelerator model
        self._bid_index: dict[PriceUnit, dict[str, _BidBook]] = {unit: {} for unit in PriceUnit}

    def _next_seq(self) -> int:
        seq = next(self._seq)
        if seq > _SEQ_MASK:
            raise OverflowError("order sequence exhausted")
        return seq

    # --- resting orders ----------------------------------------------------------------------------

    def _rest_offer(self, offer: Offer) -> None:
        self.offers[offer.offer_id] = offer
        pool = offer.pool
        start, end = offer.start_hour, offer.end_hour
        data: _OfferData = (
            offer.min_lease_hours,
            offer.accelerators,
            pool.green_share_pct,
            pool.pue_milli,
            pool.domestic,
            pool.verified,
            offer.offer_id,
            end - start,
            offer.ask_micro,
            pool.scu_micro,
            pool.bwu_micro,
            offer.seq,
        )
        book = self._offer_books.get(pool.model)
        if book is None:
            book = self._offer_books[pool.model] = _OfferBook()
        book.add(offer.ask_micro * MICRO, offer.seq, data, _clamp(start), _clamp(end))
        book.widen(pool)

    def _unrest_offer(self, offer: Offer) -> None:
        del self.offers[offer.offer_id]
        self._offer_books[offer.pool.model].remove(offer.ask_micro * MICRO, offer.seq)

    def _bid_lists(self, bid: Bid) -> tuple[dict[str, _BidBook], Iterable[str]]:
        """The index of the bid's unit and the lists of it the bid rests in."""
        constraints = bid.constraints
        models = constraints.models
        buckets: Iterable[str] = models  # type: ignore[assignment]
        if models is None:
            buckets = (_DOMESTIC,) if constraints.domestic_only else (ANY_MODEL,)
        return self._bid_index[bid.unit], buckets

    def _rest_bid(self, bid: Bid) -> None:
        self.bids[bid.bid_id] = bid
        lo, hi = _window(bid)
        hours = bid.hours
        constraints = bid.constraints
        green = constraints.min_green_share_pct
        pue = _NO_LIMIT if constraints.max_pue_milli is None else constraints.max_pue_milli
        domestic_only, verified_only = constraints.domestic_only, constraints.verified_only
        data: _BidData = (hours, _need(bid), green, pue, domestic_only, verified_only, bid.bid_id)
        latest_start, earliest_end = _clamp(hi - hours), _clamp(lo + hours)
        index, buckets = self._bid_lists(bid)
        for bucket in buckets:
            book = index.get(bucket)
            if book is None:
                book = index[bucket] = _BidBook()
            book.add(-bid.limit_micro, bid.seq, data, latest_start, earliest_end)
            book.widen(green, pue, domestic_only, verified_only)

    def _unrest_bid(self, bid: Bid) -> None:
        del self.bids[bid.bid_id]
        index, buckets = self._bid_lists(bid)
        for bucket in buckets:
            index[bucket].remove(-bid.limit_micro, bid.seq)

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

    def _offers_for(self, bid: Bid) -> Iterator[tuple[int, str]] | None:
        """(key, offer_id) of resting offers that may serve this bid, in price-time priority for its unit, up to
        its limit; None when the head of no list could."""
        lo, hi = _window(bid)
        if hi - lo < bid.hours:
            return None
        books = self._offer_books
        constraints = bid.constraints
        models = constraints.models
        min_green = constraints.min_green_share_pct
        max_pue = _NO_LIMIT if constraints.max_pue_milli is None else constraints.max_pue_milli
        domestic_only, verified_only = constraints.domestic_only, constraints.verified_only
        limit_key = bid.limit_micro * MICRO  # == _key(limit, MICRO)
        unit = bid.unit
        field = 0 if unit is PriceUnit.SCU_HOUR else 1
        streams: list[tuple[tuple[int, ...], Iterator[tuple[int, str]]]] = []
        for book in books.values() if models is None else (books.get(m) for m in models):
            if (
                book is None
                or book.green < min_green
                or book.pue > max_pue
                or (domestic_only and not book.domestic)
                or (verified_only and not book.verified)
            ):
                continue
            if unit is PriceUnit.ACCELERATOR_HOUR:
                if book.best <= limit_key:
                    streams.append(((book.head,), _offer_candidates(book, limit_key, lo, hi, bid, self.offers)))
                continue
            unit_max = book.bwu if field else book.scu
            # Below every unit key of the list: its best ask per the largest unit (book.best is ask x MICRO).
            first = book.best * MICRO // unit_max if unit_max > 0 else _EMPTY
            if first <= limit_key:
                stream = _offer_candidates_per_unit(book, field, unit_max, lo, hi, bid)
                streams.append(((first << _SHIFT,), stream))
        return _merged(streams) if streams else None

    def _bids_for(self, offer: Offer) -> Iterator[tuple[int, int, str]] | None:
        """(-price, seq, bid_id) of resting bids that may take from this offer: highest limit in its terms
        (¥/accelerator-hour), then time; None when the head of no list could."""
        pool = offer.pool
        green, pue, domestic, verified = pool.green_share_pct, pool.pue_milli, pool.domestic, pool.verified
        buckets = (pool.model, ANY_MODEL, _DOMESTIC) if domestic else (pool.model, ANY_MODEL)
        ask = -offer.ask_micro * MICRO
        streams: list[tuple[tuple[int, ...], Iterator[tuple[int, int, str]]]] = []
        for unit, unit_micro in (
            (PriceUnit.ACCELERATOR_HOUR, MICRO),
            (PriceUnit.SCU_HOUR, pool.scu_micro),
            (PriceUnit.BWU_HOUR, pool.bwu_micro),
        ):
            if unit_micro <= 0:
                continue
            # limit x unit / 1e6 >= ask  <=>  limit >= ask x 1e6 / unit; -limit <= -ceil(...)
            max_neg_limit = ask // unit_micro
            index = self._bid_index[unit]
            for bucket in buckets:
                book = index.get(bucket)
                if book is None:
                    continue
                if (
                    book.best > max_neg_limit
                    or book.green > green
                    or book.pue < pue
                    or (not book.foreign and not domestic)
                    or (not book.unverified and not verified)
                ):
                    continue
                first = (book.best * unit_micro, book.head & _SEQ_MASK)
                streams.append((first, _bid_candidates(book, max_neg_limit, unit_micro, offer)))
        return _merged(streams) if streams else None

    # --- matching ----------------------------------------------------------------------------------

    def _fill(self, bid: Bid, offer: Offer) -> tuple[int, int] | None:
        """(accelerators, start) this offer can give this bid now, or None."""
        hours = bid.hours
        fixed = bid.fixed_start_hour
        if fixed is None:
            lo, hi = bid.earliest_start_hour, bid.latest_end_hour
        else:
            lo, hi = fixed, fixed + hours
        # The hours both windows share; cheapest tests first: they must leave room for the lease at all.
        if offer.start_hour > lo:
            lo = offer.start_hour
        if offer.end_hour < hi:
            hi = offer.end_hour
        if hi - lo < hours or hours < offer.min_lease_hours:
            return None
        constraints = bid.constraints
        if not (_plain(constraints) or constraints.accepts(offer.pool)):
            return None
        need = bid.accelerators - bid.filled
        split = bid.split_allowed
        if not offer.allocations:  # nothing sold yet: all its accelerators, from the first shared hour
            if offer.accelerators < (1 if split else need):
                return None
            return (need if need < offer.accelerators else offer.accelerators) if split else need, lo
        usage = offer.usage()
        if split:
            # Take as many as this offer has (at least one) at the earliest start where it has any.
            start = usage.earliest_start(lo, hi, hours, offer.accelerators - 1)
            if start is None:
                return None
            free = offer.accelerators - usage.peak(start, start + hours)
            return (need if need < free else free), start
        start = usage.earliest_start(lo, hi, hours, offer.accelerators - need)
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
        bid.seq = self._next_seq()
        trades: list[Trade] = []
        candidates = self._offers_for(bid)
        if candidates is not None:
            offers = self.offers
            sold_out: list[Offer] = []
            for _key, offer_id in candidates:
                offer = offers[offer_id]
                fill = self._fill(bid, offer)
                if fill is None:
                    continue
                count, start = fill
                trades.append(self._book_trade(bid, offer, count, start, offer.ask_micro, "bid"))
                if offer.sold_out():
                    sold_out.append(offer)
                if bid.filled >= bid.accelerators:
                    break
            for offer in sold_out:
                self._unrest_offer(offer)
        if bid.filled < bid.accelerators:
            self._rest_bid(bid)
        return trades

    def add_offer(self, offer: Offer) -> list[Trade]:
        """An incoming offer serves resting bids in priority order; what is left rests."""
        if offer.offer_id in self.offers:
            raise ValueError(f"offer {offer.offer_id} is already in the book")
        offer.seq = self._next_seq()
        trades: list[Trade] = []
        candidates = self._bids_for(offer)
        if candidates is not None:
            bids = self.bids
            filled: list[Bid] = []
            for _price, _seq, bid_id in candidates:
                bid = bids[bid_id]
                fill = self._fill(bid, offer)
                if fill is None:
                    continue
                count, start = fill
                trades.append(self._book_trade(bid, offer, count, start, bid_price_for(offer, bid), "offer"))
                if bid.filled >= bid.accelerators:
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


# --- the compiled engine ------------------------------------------------------------------------------
# The project's setup (Makefile, devtools/build_native.py) compiles this very file with mypyc into the virtual
# environment, under NATIVE_DIR, with the SHA-256 of the source it was built from. Importing the pure module then
# swaps in the compiled one if its source is this one, byte for byte; otherwise (never built, no compiler, an
# older build, SUANLI_MATCHING=pure) this module runs as it is. Both behave alike (the tests run against whichever
# this machine runs); the compiled one is about 1.8x faster (`make bench NAME=matching` says which one ran).
NATIVE_DIR: Final = os.path.join(sys.prefix, "suanli-native")


def _is_compiled() -> bool:
    return not hasattr(_is_compiled, "__code__")  # functions compiled by mypyc have no bytecode


COMPILED: Final = _is_compiled()
IMPLEMENTATION: Final = "compiled (mypyc)" if COMPILED else "pure Python"


def _load_compiled() -> None:
    directory = os.path.join(NATIVE_DIR, "marketplace")
    try:
        with open(os.path.join(directory, "matching.sha256")) as stamp:
            built_from = stamp.read().strip()
    except OSError:
        return  # never built: no C compiler, a failed build (which said so), or not set up through the Makefile
    with open(__file__, "rb") as source:
        digest = hashlib.sha256(source.read()).hexdigest()
    if built_from != digest:
        print(
            f"marketplace.matching: the compiled engine in {directory} was built from another source; running pure "
            "Python (`make setup` or `python -m devtools.build_native` rebuilds it)",
            file=sys.stderr,
        )
        return
    pure = sys.modules[__name__]
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    try:
        # The shared library first, then the module, which initialises from it and takes this one's sys.modules entry.
        for name in ("matching__mypyc", "matching"):
            spec = importlib.util.spec_from_file_location(f"marketplace.{name}", os.path.join(directory, name + suffix))
            if spec is None or spec.loader is None:
                raise ImportError(f"no loader for {name}{suffix}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        if not getattr(module, "COMPILED", False):
            raise ImportError("not the compiled engine")
    except Exception as error:  # a broken build must not break the engine: the pure module stays
        sys.modules[__name__] = pure
        sys.modules.pop("marketplace.matching__mypyc", None)
        print(
            f"marketplace.matching: the compiled engine failed to load ({error}); running pure Python", file=sys.stderr
        )
        return
    sys.modules[__name__] = module  # what `import marketplace.matching` returns from here on


if not COMPILED and __name__ == "marketplace.matching" and os.environ.get("SUANLI_MATCHING", "") != "pure":
    _load_compiled()

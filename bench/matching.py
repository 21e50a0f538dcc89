"""The matching engine alone, one core: 100,000 resting orders, then a realistic stream of new ones.

Mix of the stream: 50% bids, 50% offers; about a third of them cross the book; bids carry constraints
(models, green share, domestic-only, PUE) and a third are priced per SCU-hour or BWU-hour; a quarter may split.
Figures: orders per second over the stream and p50/p99 latency per order. First bar (issue 4): 50,000 orders/s,
p99 under 1 ms.
"""

from __future__ import annotations

import os
import random
import time

from bench import QUICK, report
from marketplace.matching import IMPLEMENTATION, MICRO, Bid, Constraints, Offer, OrderBook, PoolAttributes, PriceUnit

# (model, vendor, domestic, SCU per accelerator-hour, BWU per accelerator-hour, typical ¥/accelerator-hour)
MODELS = [
    ("H100 SXM5", "NVIDIA", False, 0.989, 3.35, 18.0),
    ("H20", "NVIDIA", False, 0.148, 4.0, 6.0),
    ("A800", "NVIDIA", False, 0.312, 2.0, 8.0),
    ("MI300X", "AMD", False, 1.307, 5.3, 20.0),
    ("Ascend 910B", "Huawei", True, 0.32, 1.6, 7.0),
    ("BW100", "Hygon", True, 0.2, 1.2, 5.0),
    ("MLU590", "Cambricon", True, 0.314, 1.2, 6.0),
    ("MTT S4000", "Moore Threads", True, 0.1, 0.768, 3.5),
]
HUBS = [("nmg", "15"), ("nx", "64"), ("gz", "52"), ("gs", "62"), ("jjj", "13"), ("csj", "31"), ("gd", "44")]


def _pools(rng: random.Random, count: int) -> list[PoolAttributes]:
    pools = []
    for index in range(count):
        model, vendor, domestic, scu, bwu, _price = rng.choice(MODELS)
        hub, province = rng.choice(HUBS)
        verified = rng.random() < 0.7
        factor = rng.uniform(0.85, 1.0) if verified else 1.0
        pools.append(
            PoolAttributes(
                f"pool{index}",
                model,
                vendor,
                domestic,
                verified,
                hub,
                province,
                rng.randint(10, 95),
                rng.randint(1100, 1500),
                int(scu * 1000 * factor),
                80,
                int(scu * factor * MICRO),
                int(bwu * factor * MICRO),
            )
        )
    return pools


def _price(rng: random.Random, model: str, spread: float) -> int:
    base = next(m[5] for m in MODELS if m[0] == model)
    return int(base * rng.uniform(1 - spread, 1 + spread) * MICRO)


def _offer(rng, pools, index, arrival, crossing: bool) -> Offer:
    pool = rng.choice(pools)
    start = rng.randint(0, 24 * 30)
    ask = _price(rng, pool.model, 0.1) if crossing else int(_price(rng, pool.model, 0.1) * 1.6)
    return Offer(
        f"o{index}",
        pool,
        rng.choice([1, 2, 4, 8, 8, 16]),
        start,
        start + rng.randint(24, 24 * 14),
        ask,
        rng.choice([1, 1, 4, 24]),
        arrival,
    )


def _bid(rng, index, arrival, crossing: bool) -> Bid:
    model, _vendor, domestic, scu, bwu, _typical = rng.choice(MODELS)
    unit = rng.choice([PriceUnit.ACCELERATOR_HOUR, PriceUnit.ACCELERATOR_HOUR, PriceUnit.SCU_HOUR, PriceUnit.BWU_HOUR])
    per_acc = _price(rng, model, 0.1) * (1.2 if crossing else 0.5)
    limit = per_acc if unit is PriceUnit.ACCELERATOR_HOUR else per_acc / (scu if unit is PriceUnit.SCU_HOUR else bwu)
    constraints = Constraints(
        models=frozenset([model]) if unit is PriceUnit.ACCELERATOR_HOUR or rng.random() < 0.5 else None,
        min_green_share_pct=rng.choice([0, 0, 30, 50]),
        max_pue_milli=rng.choice([None, None, 1400]),
        domestic_only=domestic and rng.random() < 0.5,
    )
    hours = rng.choice([1, 4, 8, 24, 72])
    start = rng.randint(0, 24 * 30)
    return Bid(
        f"b{index}",
        rng.choice([1, 2, 4, 8]),
        hours,
        start,
        start + hours + rng.randint(0, 48),
        int(limit),
        unit,
        constraints,
        rng.random() < 0.25,
        arrival,
    )


def run() -> None:
    rng = random.Random(20261123)
    resting, stream = (20_000, 5_000) if QUICK else (100_000, 50_000)
    pools = _pools(rng, 2_000)
    book = OrderBook()
    for index in range(resting):
        # The resting book does not cross: offers ask high, bids bid low.
        if index % 2:
            book.add_offer(_offer(rng, pools, index, index, crossing=False))
        else:
            book.add_bid(_bid(rng, index, index, False))
    incoming = [
        _offer(rng, pools, resting + i, resting + i, crossing=rng.random() < 0.33)
        if i % 2
        else _bid(rng, resting + i, resting + i, crossing=rng.random() < 0.33)
        for i in range(stream)
    ]
    latencies = []
    trades = 0
    began, cpu_began = time.perf_counter(), time.process_time()
    for order in incoming:
        t0 = time.perf_counter_ns()
        trades += len(book.add_offer(order) if isinstance(order, Offer) else book.add_bid(order))
        latencies.append(time.perf_counter_ns() - t0)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    latencies.sort()
    p50 = latencies[len(latencies) // 2] / 1e6
    p99 = latencies[int(len(latencies) * 0.99)] / 1e6
    print(
        f"# matching: {resting} resting, {stream} incoming, {trades} trades, "
        f"{len(book.offers)} offers and {len(book.bids)} bids resting after; engine {IMPLEMENTATION}",
        flush=True,
    )
    # The machine is shared: wall-clock figures below drop with other processes' load; CPU time much less so.
    print(f"# matching: {stream / cpu:.0f} orders per CPU-second; load average {os.getloadavg()[0]:.2f}", flush=True)
    report("matching", "orders_per_s", stream / elapsed, 50_000)
    report("matching", "p50_ms", p50, 1.0, higher_is_better=False)
    report("matching", "p99_ms", p99, 1.0, higher_is_better=False)

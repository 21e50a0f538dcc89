"""The token engine alone, one core: 50 resting endpoints per served model (300 in all), then a stream of
arriving token bids (20,000; QUICK: 2,000) with realistic limits, volumes, mixes and constraints, and arriving
endpoints against 2,000 resting bids. Figures: bids per second and p50/p99 latency per bid; endpoint arrivals
per second. The bar reuses the capacity engine's (issue 4): 50,000 orders/s, p99 under 1 ms.
"""

from __future__ import annotations

import random
import time

from bench import QUICK, report
from marketplace.token_matching import Bid, Endpoint, match_bid, match_endpoint

M = 1_000_000
# (model, typical ¥ per million input, output)
MODELS = [
    ("Qwen3-32B", 1.6, 6.4),
    ("Qwen3-235B-A22B", 1.8, 7.0),
    ("DeepSeek-V3", 2.0, 8.0),
    ("DeepSeek-R1", 4.0, 16.0),
    ("GLM-4.5", 2.0, 8.0),
    ("Kimi-K2-Instruct", 4.0, 16.0),
]
HUBS = ["nmg", "nx", "gz", "gs", "jjj", "csj", "gba", "cy"]


def _endpoint(rng: random.Random, index: int, model: str, price_in: float, price_out: float) -> Endpoint:
    throughput = rng.choice([2_000, 5_000, 10_000, 20_000])
    capacity = throughput * 2_592_000
    return Endpoint(
        f"e{index}",
        model,
        int(price_in * rng.uniform(0.8, 1.2) * M),
        int(price_out * rng.uniform(0.8, 1.2) * M),
        capacity,
        committed_tokens=int(capacity * rng.uniform(0, 0.8)),
        arrival=index,
        domestic=rng.random() < 0.4,
        hub=rng.choice(HUBS),
    )


def _bid(rng: random.Random, index: int) -> Bid:
    model, price_in, price_out = rng.choice(MODELS)
    return Bid(
        f"b{index}",
        model,
        int(price_in * rng.uniform(0.7, 1.3) * M),
        int(price_out * rng.uniform(0.7, 1.3) * M),
        rng.choice([100, 300, 500, 1_000, 3_000]) * M,
        input_weight=rng.choice([3, 3, 3, 1, 5]),
        output_weight=1,
        arrival=index,
        domestic_only=rng.random() < 0.2,
        hubs=frozenset(rng.sample(HUBS, 3)) if rng.random() < 0.2 else None,
    )


def run() -> None:
    rng = random.Random(4)
    per_model = 50
    book: dict[str, list[Endpoint]] = {m: [] for m, _, _ in MODELS}
    for model, price_in, price_out in MODELS:
        for _ in range(per_model):
            book[model].append(_endpoint(rng, sum(len(v) for v in book.values()), model, price_in, price_out))
    by_id = {e.endpoint_id: e for endpoints in book.values() for e in endpoints}
    stream = 2_000 if QUICK else 20_000
    bids = [_bid(rng, i) for i in range(stream)]
    latencies = []
    traded = 0
    started = time.perf_counter()
    for bid in bids:
        t0 = time.perf_counter()
        trade = match_bid(bid, book[bid.model])
        if trade is not None:
            by_id[trade.endpoint_id].committed_tokens += trade.monthly_tokens
            traded += 1
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(f"# {stream} bids against {per_model * len(MODELS)} endpoints, {traded} traded", flush=True)
    report("token_matching", "bids_per_s", stream / elapsed, 50_000)
    report("token_matching", "p50_ms", p50, 1.0, higher_is_better=False)
    report("token_matching", "p99_ms", p99, 1.0, higher_is_better=False)

    resting = [_bid(rng, stream + i) for i in range(2_000)]
    by_model: dict[str, list[Bid]] = {m: [] for m, _, _ in MODELS}
    for bid in resting:
        by_model[bid.model].append(bid)
    arrivals = 200 if QUICK else 1_000
    started = time.perf_counter()
    for index in range(arrivals):
        model, price_in, price_out = rng.choice(MODELS)
        match_endpoint(_endpoint(rng, 10_000 + index, model, price_in, price_out), by_model[model])
    elapsed = time.perf_counter() - started
    report("token_matching", "endpoints_per_s", arrivals / elapsed, 1_000)

"""Latency tiers relative to the buyer's province (东数西算 workload placement). Pure: no ORM, no I/O.

A bid says *training* or *inference*. Training may run in any hub: the western hubs (宁夏, 内蒙古, 甘肃, 贵州) are
the cheap, green, non-real-time bases. Inference honours a latency tier: which provinces are close enough to the
buyer's province. The tier turns into a set of provinces, which the engine already filters on
(``matching.Constraints.provinces``), so nothing else changes.

Tiers (round-trip time over terrestrial fibre, rule of thumb 1 ms RTT per ~100 km of route):

- ``region`` (同区域, about 10 ms or less): the buyer's own macro-region (the seven grid regions of China:
  north, northeast, east, central, south, southwest, northwest; roughly 1,000 km of route from one side to the
  other).
- ``near`` (邻近, about 20 ms or less): the buyer's region and the regions next to it. 20 ms is the end-to-end
  latency the 东数西算 plan sets for a hub cluster serving its demand cities (国家发展改革委等,《全国一体化大数据中心
  协同创新体系算力枢纽实施方案》, 2021: "集群内…网络时延原则上在20毫秒范围内"), and the "20 ms 时延圈" of the national
  hub network (《算力基础设施高质量发展行动计划》, 2023: 1 ms city, 5 ms province, 20 ms hub circles).
- ``any`` (不限): no limit; the same as training.

Assumptions (kept deliberately coarse, as a buyer filter and not a network SLA): a province's latency is that of
its macro-region; regions are adjacent where the backbone routes between their main cities are short (e.g. the
Yangtze delta and Anhui are one region; Guizhou serves the Greater Bay Area, Chengdu-Chongqing and, via the
south-west corridor, the east; Inner Mongolia serves Beijing-Tianjin-Hebei). The hubs and their provinces come
from ``marketplace/data/hubs.csv`` (see ``hubs_within``). Hong Kong, Macao and Taiwan are outside the 东数西算
network: only their own province counts as ``region``; ``near`` adds the south region for Hong Kong and Macao.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class Tier(StrEnum):
    REGION = "region"
    NEAR = "near"
    ANY = "any"


# Approximate one-way-and-back latency bound of each tier, for labels.
TIER_MAX_RTT_MS = {Tier.REGION: 10, Tier.NEAR: 20, Tier.ANY: None}

# GB/T 2260 province code -> macro-region (the grid regions of China, which follow the geography).
REGION_OF_PROVINCE: dict[str, str] = {
    # North: Beijing-Tianjin-Hebei, Shanxi, Shandong, western Inner Mongolia (Hohhot: the 和林格尔 cluster).
    "11": "north",
    "12": "north",
    "13": "north",
    "14": "north",
    "15": "north",
    "37": "north",
    # Northeast.
    "21": "northeast",
    "22": "northeast",
    "23": "northeast",
    # East: the Yangtze delta, Anhui (芜湖 cluster) and Fujian.
    "31": "east",
    "32": "east",
    "33": "east",
    "34": "east",
    "35": "east",
    # Central.
    "36": "central",
    "41": "central",
    "42": "central",
    "43": "central",
    # South: Guangdong (韶关 cluster), Guangxi, Hainan, Guizhou (贵安 cluster), Yunnan.
    "44": "south",
    "45": "south",
    "46": "south",
    "52": "south",
    "53": "south",
    # Southwest: Sichuan (天府 cluster), Chongqing, Tibet.
    "50": "southwest",
    "51": "southwest",
    "54": "southwest",
    # Northwest: Shaanxi, Gansu (庆阳 cluster), Qinghai, Ningxia (中卫 cluster), Xinjiang.
    "61": "northwest",
    "62": "northwest",
    "63": "northwest",
    "64": "northwest",
    "65": "northwest",
}

# Outside the mainland grid: their own "region" is the province alone.
_OWN_REGION = {"71": "taiwan", "81": "hk_macao", "82": "hk_macao"}

ADJACENT_REGIONS: dict[str, frozenset[str]] = {
    "north": frozenset({"northeast", "east", "central", "northwest"}),
    "northeast": frozenset({"north"}),
    "east": frozenset({"north", "central", "south"}),
    "central": frozenset({"north", "east", "south", "southwest", "northwest"}),
    "south": frozenset({"east", "central", "southwest", "hk_macao"}),
    "southwest": frozenset({"central", "south", "northwest"}),
    "northwest": frozenset({"north", "central", "southwest"}),
    "hk_macao": frozenset({"south"}),
    "taiwan": frozenset(),
}


def region_of(province: str) -> str | None:
    return REGION_OF_PROVINCE.get(province) or _OWN_REGION.get(province)


def _provinces_of(regions: Iterable[str]) -> frozenset[str]:
    wanted = set(regions)
    mainland = {p for p, r in REGION_OF_PROVINCE.items() if r in wanted}
    other = {p for p, r in _OWN_REGION.items() if r in wanted}
    return frozenset(mainland | other)


def provinces_within(buyer_province: str, tier: str | Tier) -> frozenset[str] | None:
    """The provinces within ``tier`` of ``buyer_province``; ``None`` means anywhere (tier ``any``).

    Raises ``ValueError`` for an unknown tier or province."""
    tier = Tier(tier)
    if tier is Tier.ANY:
        return None
    region = region_of(buyer_province)
    if region is None:
        raise ValueError(f"unknown province {buyer_province!r}")
    regions = {region}
    if tier is Tier.NEAR:
        regions |= ADJACENT_REGIONS[region]
    return _provinces_of(regions) | {buyer_province}


def placement_provinces(*, workload: str, buyer_province: str, tier: str | Tier) -> frozenset[str] | None:
    """Where a workload may run: training anywhere (``None``), inference within the tier."""
    if workload != "inference":
        return None
    return provinces_within(buyer_province, tier)


def hubs_within(buyer_province: str, tier: str | Tier, hub_provinces: Mapping[str, Iterable[str]]) -> list[str] | None:
    """The hub codes (of ``hub_provinces``: hub code -> province codes of its clusters) that have a cluster within
    the tier; ``None`` means every hub."""
    provinces = provinces_within(buyer_province, tier)
    if provinces is None:
        return None
    return sorted(code for code, hub_prov in hub_provinces.items() if provinces & set(hub_prov))

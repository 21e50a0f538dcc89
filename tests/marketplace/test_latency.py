"""Latency tiers relative to the buyer's province (东数西算 placement): a pure module."""

from __future__ import annotations

import pytest

from accounts.regions import PROVINCE_EN_BY_CODE
from marketplace import latency
from marketplace.reference_data import hub_rows

SHANGHAI, JIANGSU, ANHUI, GUANGDONG, GUIZHOU, NINGXIA, INNER_MONGOLIA, BEIJING = (
    "31",
    "32",
    "34",
    "44",
    "52",
    "64",
    "15",
    "11",
)


def test_every_province_has_a_region_and_adjacency_is_symmetric():
    for code in PROVINCE_EN_BY_CODE:
        assert latency.region_of(code) is not None, code
    for region, neighbours in latency.ADJACENT_REGIONS.items():
        for other in neighbours:
            assert region in latency.ADJACENT_REGIONS[other], (region, other)


def test_tiers_widen_and_always_include_the_buyers_province():
    for code in PROVINCE_EN_BY_CODE:
        region = latency.provinces_within(code, "region")
        near = latency.provinces_within(code, "near")
        assert region is not None
        assert near is not None
        assert code in region
        assert region <= near
        assert latency.provinces_within(code, "any") is None


def test_shanghai_inference_stays_in_the_yangtze_delta_and_neighbours():
    region = latency.provinces_within(SHANGHAI, latency.Tier.REGION)
    assert {SHANGHAI, JIANGSU, ANHUI} <= region
    assert NINGXIA not in region
    assert GUIZHOU not in region
    near = latency.provinces_within(SHANGHAI, latency.Tier.NEAR)
    assert GUIZHOU in near
    assert GUANGDONG in near
    assert NINGXIA not in near  # a western base: training only


def test_beijing_near_reaches_inner_mongolia_and_ningxia():
    assert INNER_MONGOLIA in latency.provinces_within(BEIJING, "region")
    assert NINGXIA in latency.provinces_within(BEIJING, "near")


def test_training_goes_anywhere_inference_honours_the_tier():
    assert latency.placement_provinces(workload="training", buyer_province=SHANGHAI, tier="region") is None
    assert latency.placement_provinces(workload="inference", buyer_province=SHANGHAI, tier="any") is None
    assert latency.placement_provinces(
        workload="inference", buyer_province=SHANGHAI, tier="region"
    ) == latency.provinces_within(SHANGHAI, "region")


def test_unknown_tier_or_province_is_an_error():
    with pytest.raises(ValueError, match="fast"):
        latency.provinces_within(SHANGHAI, "fast")
    with pytest.raises(ValueError, match="unknown province"):
        latency.provinces_within("99", "near")


def test_hubs_within_uses_the_hub_table():
    hub_provinces: dict[str, set[str]] = {}
    from accounts.regions import PROVINCE_CODE_BY_EN

    for row in hub_rows():
        codes = {PROVINCE_CODE_BY_EN[p.strip()] for p in row["provinces"].split(";") if p.strip()}
        hub_provinces.setdefault(row["hub_code"], set()).update(codes)
    assert latency.hubs_within(SHANGHAI, "region", hub_provinces) == ["csj"]
    near = latency.hubs_within(SHANGHAI, "near", hub_provinces)
    assert "gz" in near
    assert "gba" in near
    assert "nx" not in near
    assert latency.hubs_within(SHANGHAI, "any", hub_provinces) is None
    # every western hub is within "near" of some eastern demand centre
    for hub in ("nx", "nmg", "gs", "gz"):
        assert any(hub in (latency.hubs_within(p, "near", hub_provinces) or []) for p in ("11", "31", "44", "51"))

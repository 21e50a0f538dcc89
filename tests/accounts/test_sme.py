"""accounts.sme against 工信部联企业〔2011〕300号 (中小企业划型标准规定), article 4, boundaries included.

Revenue (营业收入) and total assets (资产总额) are in 万元. A class's lower bounds must all be reached
("…及以上"); falling below either lower bound of "small" makes a firm micro.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.sme import INDUSTRIES, SizeClass, classify, industry_choices

L, M, S, XS = SizeClass.LARGE, SizeClass.MEDIUM, SizeClass.SMALL, SizeClass.MICRO

# (industry, employees, revenue 万元, assets 万元, expected, the clause it checks)
CASES = [
    # (二) 工业: 从业人员1000人以下或营业收入40000万元以下为中小微; 中型 300人且2000万; 小型 20人且300万.
    ("industry", 1000, 40000, None, L, "both large bounds reached"),
    ("industry", 999, 40000, None, M, "one employee short of large"),
    ("industry", 1000, Decimal("39999.99"), None, M, "a fen short of large"),
    ("industry", 5000, 1999, None, S, "many employees but revenue below the medium bound"),
    ("industry", 300, 2000, None, M, "medium lower bounds, exactly"),
    ("industry", 299, 2000, None, S, "one employee short of medium"),
    ("industry", 300, Decimal("1999.99"), None, S, "revenue just short of medium"),
    ("industry", 20, 300, None, S, "small lower bounds, exactly"),
    ("industry", 19, 300, None, XS, "19 employees: micro"),
    ("industry", 19, 1_000_000, None, XS, "micro even with a big revenue"),
    ("industry", 20, Decimal("299.99"), None, XS, "revenue just short of small"),
    ("industry", 0, 0, None, XS, "a newly founded firm"),
    # (一) 农、林、牧、渔业: revenue only; 20000 / 500 / 50.
    ("agriculture", None, 20000, None, L, ""),
    ("agriculture", None, 19999, None, M, ""),
    ("agriculture", None, 500, None, M, ""),
    ("agriculture", None, 499, None, S, ""),
    ("agriculture", None, 50, None, S, ""),
    ("agriculture", None, 49, None, XS, ""),
    # (三) 建筑业: revenue and assets; 80000+80000 / 6000+5000 / 300+300.
    ("construction", None, 80000, 80000, L, ""),
    ("construction", None, 80000, 79999, M, ""),
    ("construction", None, 6000, 5000, M, ""),
    ("construction", None, 6000, 4999, S, ""),
    ("construction", None, 300, 300, S, ""),
    ("construction", None, 300, 299, XS, ""),
    # (四) 批发业: 200+40000 / 20+5000 / 5+1000.
    ("wholesale", 200, 40000, None, L, ""),
    ("wholesale", 20, 5000, None, M, ""),
    ("wholesale", 19, 5000, None, S, ""),
    ("wholesale", 5, 1000, None, S, ""),
    ("wholesale", 4, 1000, None, XS, ""),
    ("wholesale", 5, 999, None, XS, ""),
    # (五) 零售业: 300+20000 / 50+500 / 10+100.
    ("retail", 300, 20000, None, L, ""),
    ("retail", 50, 500, None, M, ""),
    ("retail", 49, 500, None, S, ""),
    ("retail", 10, 100, None, S, ""),
    ("retail", 9, 100, None, XS, ""),
    # (六) 交通运输业: 1000+30000 / 300+3000 / 20+200.
    ("transport", 1000, 30000, None, L, ""),
    ("transport", 300, 3000, None, M, ""),
    ("transport", 300, 2999, None, S, ""),
    ("transport", 20, 200, None, S, ""),
    ("transport", 20, 199, None, XS, ""),
    # (七) 仓储业: 200+30000 / 100+1000 / 20+100.
    ("warehousing", 200, 30000, None, L, ""),
    ("warehousing", 100, 1000, None, M, ""),
    ("warehousing", 20, 100, None, S, ""),
    ("warehousing", 19, 100, None, XS, ""),
    # (八) 邮政业: 1000+30000 / 300+2000 / 20+100.
    ("postal", 1000, 30000, None, L, ""),
    ("postal", 300, 2000, None, M, ""),
    ("postal", 20, 100, None, S, ""),
    ("postal", 20, 99, None, XS, ""),
    # (九) 住宿业 and (十) 餐饮业: 300+10000 / 100+2000 / 10+100.
    ("accommodation", 300, 10000, None, L, ""),
    ("accommodation", 100, 2000, None, M, ""),
    ("accommodation", 10, 100, None, S, ""),
    ("catering", 300, 10000, None, L, ""),
    ("catering", 99, 2000, None, S, ""),
    ("catering", 9, 100, None, XS, ""),
    # (十一) 信息传输业: 2000+100000 / 100+1000 / 10+100.
    ("telecom", 2000, 100000, None, L, ""),
    ("telecom", 1999, 100000, None, M, ""),
    ("telecom", 100, 1000, None, M, ""),
    ("telecom", 10, 100, None, S, ""),
    ("telecom", 10, 99, None, XS, ""),
    # (十二) 软件和信息技术服务业: 300+10000 / 100+1000 / 10+50.
    ("software", 300, 10000, None, L, ""),
    ("software", 100, 1000, None, M, ""),
    ("software", 100, 999, None, S, ""),
    ("software", 10, 50, None, S, ""),
    ("software", 10, 49, None, XS, ""),
    ("software", 9, 5000, None, XS, ""),
    # (十三) 房地产开发经营: revenue and assets; 200000+10000 / 1000+5000 / 100+2000.
    ("real_estate", None, 200000, 10000, L, ""),
    ("real_estate", None, 199999, 10000, M, ""),
    ("real_estate", None, 1000, 5000, M, ""),
    ("real_estate", None, 100, 2000, S, ""),
    ("real_estate", None, 100, 1999, XS, ""),
    # (十四) 物业管理: 1000+5000 / 300+1000 / 100+500.
    ("property_management", 1000, 5000, None, L, ""),
    ("property_management", 300, 1000, None, M, ""),
    ("property_management", 100, 500, None, S, ""),
    ("property_management", 99, 500, None, XS, ""),
    # (十五) 租赁和商务服务业: employees and assets; 300+120000 / 100+8000 / 10+100.
    ("leasing_business", 300, None, 120000, L, ""),
    ("leasing_business", 100, None, 8000, M, ""),
    ("leasing_business", 100, None, 7999, S, ""),
    ("leasing_business", 10, None, 100, S, ""),
    ("leasing_business", 10, None, 99, XS, ""),
    # (十六) 其他未列明行业: employees only; 300 / 100 / 10.
    ("other", 300, None, None, L, ""),
    ("other", 299, None, None, M, ""),
    ("other", 100, None, None, M, ""),
    ("other", 99, None, None, S, ""),
    ("other", 10, None, None, S, ""),
    ("other", 9, None, None, XS, ""),
]


@pytest.mark.parametrize(
    ("industry", "employees", "revenue", "assets", "expected"),
    [case[:5] for case in CASES],
    ids=[f"{c[0]}-{c[1]}p-{c[2]}rev-{c[3]}assets" for c in CASES],
)
def test_size_class(industry, employees, revenue, assets, expected):
    assert classify(industry, employees=employees, revenue_wan=revenue, assets_wan=assets) == expected


def test_measures_an_industry_does_not_use_are_ignored():
    # 其他未列明行业 is sized by employees alone: revenue does not move it.
    assert classify("other", employees=50, revenue_wan=10**9) == SizeClass.SMALL
    assert classify("agriculture", employees=10**6, revenue_wan=10) == SizeClass.MICRO


@pytest.mark.parametrize(
    ("industry", "employees", "revenue", "assets"),
    [
        ("industry", None, 1000, None),
        ("industry", 50, None, None),
        ("construction", None, 1000, None),
        ("leasing_business", 50, 1000, None),  # sized by assets, not revenue
    ],
)
def test_a_missing_measure_is_refused(industry, employees, revenue, assets):
    with pytest.raises(ValueError, match="sized by"):
        classify(industry, employees=employees, revenue_wan=revenue, assets_wan=assets)


def test_unknown_industry_and_negative_measures_are_refused():
    with pytest.raises(ValueError, match="unknown industry"):
        classify("mining_on_mars", employees=10, revenue_wan=10)
    with pytest.raises(ValueError, match="negative"):
        classify("industry", employees=-1, revenue_wan=10)


def test_every_industry_of_the_standard_is_offered():
    assert len(INDUSTRIES) == 16
    codes = [code for code, _label in industry_choices()]
    assert codes == list(INDUSTRIES)
    labels = dict(industry_choices())
    assert labels["industry"].startswith("工业")
    assert labels["software"].startswith("软件和信息技术服务业")


def test_every_industry_has_ordered_bounds():
    """Each class's bounds are at least the next class's, so the classes nest as the standard intends."""
    for _zh, _en, rule in INDUSTRIES.values():
        assert set(rule.large) == set(rule.medium) == set(rule.small)
        for measure in rule.large:
            assert rule.large[measure] >= rule.medium[measure] >= rule.small[measure] > 0

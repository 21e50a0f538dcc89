"""China's enterprise size classification (大中小微型企业划分), a pure function.

Source: 工业和信息化部、国家统计局、发展改革委、财政部《关于印发中小企业划型标准规定的通知》
(工信部联企业〔2011〕300号), restated in 国家统计局《统计上大中小微型企业划分办法（2017）》(国统字〔2017〕213号).

Each industry is sized by employees (从业人员), operating revenue (营业收入) or total assets (资产总额).
A firm is medium or small only when it meets *both* lower bounds of that class; it is micro when it falls
below *either* lower bound of "small"; it is large when it reaches every SME upper bound.
Revenue and assets are in 万元 (10,000 CNY).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class SizeClass(StrEnum):
    LARGE = "large"
    MEDIUM = "medium"
    SMALL = "small"
    MICRO = "micro"


# measure names
EMP, REV, ASSETS = "employees", "revenue_wan", "assets_wan"


@dataclass(frozen=True)
class Rule:
    # Each class: {measure: lower bound}; the class applies when every listed measure reaches its bound.
    large: dict[str, int]
    medium: dict[str, int]
    small: dict[str, int]


# Industry code -> (Chinese name, English name, rule). Bounds from the 2011 standard's article 4.
INDUSTRIES: dict[str, tuple[str, str, Rule]] = {
    "agriculture": (
        "农、林、牧、渔业",
        "Agriculture, forestry, animal husbandry, fishery",
        Rule(large={REV: 20000}, medium={REV: 500}, small={REV: 50}),
    ),
    "industry": (
        "工业",
        "Industry (mining, manufacturing, utilities)",
        Rule(large={EMP: 1000, REV: 40000}, medium={EMP: 300, REV: 2000}, small={EMP: 20, REV: 300}),
    ),
    "construction": (
        "建筑业",
        "Construction",
        Rule(large={REV: 80000, ASSETS: 80000}, medium={REV: 6000, ASSETS: 5000}, small={REV: 300, ASSETS: 300}),
    ),
    "wholesale": (
        "批发业",
        "Wholesale",
        Rule(large={EMP: 200, REV: 40000}, medium={EMP: 20, REV: 5000}, small={EMP: 5, REV: 1000}),
    ),
    "retail": (
        "零售业",
        "Retail",
        Rule(large={EMP: 300, REV: 20000}, medium={EMP: 50, REV: 500}, small={EMP: 10, REV: 100}),
    ),
    "transport": (
        "交通运输业",
        "Transport",
        Rule(large={EMP: 1000, REV: 30000}, medium={EMP: 300, REV: 3000}, small={EMP: 20, REV: 200}),
    ),
    "warehousing": (
        "仓储业",
        "Warehousing",
        Rule(large={EMP: 200, REV: 30000}, medium={EMP: 100, REV: 1000}, small={EMP: 20, REV: 100}),
    ),
    "postal": (
        "邮政业",
        "Postal services",
        Rule(large={EMP: 1000, REV: 30000}, medium={EMP: 300, REV: 2000}, small={EMP: 20, REV: 100}),
    ),
    "accommodation": (
        "住宿业",
        "Accommodation",
        Rule(large={EMP: 300, REV: 10000}, medium={EMP: 100, REV: 2000}, small={EMP: 10, REV: 100}),
    ),
    "catering": (
        "餐饮业",
        "Catering",
        Rule(large={EMP: 300, REV: 10000}, medium={EMP: 100, REV: 2000}, small={EMP: 10, REV: 100}),
    ),
    "telecom": (
        "信息传输业",
        "Information transmission (telecom, internet)",
        Rule(large={EMP: 2000, REV: 100000}, medium={EMP: 100, REV: 1000}, small={EMP: 10, REV: 100}),
    ),
    "software": (
        "软件和信息技术服务业",
        "Software and information technology services",
        Rule(large={EMP: 300, REV: 10000}, medium={EMP: 100, REV: 1000}, small={EMP: 10, REV: 50}),
    ),
    "real_estate": (
        "房地产开发经营",
        "Real estate development",
        Rule(
            large={REV: 200000, ASSETS: 10000},
            medium={REV: 1000, ASSETS: 5000},
            small={REV: 100, ASSETS: 2000},
        ),
    ),
    "property_management": (
        "物业管理",
        "Property management",
        Rule(large={EMP: 1000, REV: 5000}, medium={EMP: 300, REV: 1000}, small={EMP: 100, REV: 500}),
    ),
    "leasing_business": (
        "租赁和商务服务业",
        "Leasing and business services",
        Rule(large={EMP: 300, ASSETS: 120000}, medium={EMP: 100, ASSETS: 8000}, small={EMP: 10, ASSETS: 100}),
    ),
    "other": (
        "其他未列明行业",
        "Other industries",
        Rule(large={EMP: 300}, medium={EMP: 100}, small={EMP: 10}),
    ),
}


def industry_choices() -> list[tuple[str, str]]:
    return [(code, f"{zh} {en}") for code, (zh, en, _rule) in INDUSTRIES.items()]


def _meets(bounds: dict[str, int], measures: dict[str, Decimal]) -> bool:
    return all(measures[name] >= bound for name, bound in bounds.items())


def classify(
    industry: str,
    *,
    employees: int | None,
    revenue_wan: Decimal | int | None,
    assets_wan: Decimal | int | None = None,
) -> SizeClass:
    """The size class of a firm. Raises ValueError when a measure the industry needs is missing."""
    try:
        rule = INDUSTRIES[industry][2]
    except KeyError:
        raise ValueError(f"unknown industry {industry!r}") from None
    given = {EMP: employees, REV: revenue_wan, ASSETS: assets_wan}
    needed = set(rule.large) | set(rule.medium) | set(rule.small)
    missing = sorted(name for name in needed if given[name] is None)
    if missing:
        raise ValueError(f"industry {industry!r} is sized by {', '.join(missing)}")
    measures = {name: Decimal(given[name]) for name in needed}  # type: ignore[arg-type]
    if any(value < 0 for value in measures.values()):
        raise ValueError("employees, revenue and assets cannot be negative")
    if _meets(rule.large, measures):
        return SizeClass.LARGE
    if _meets(rule.medium, measures):
        return SizeClass.MEDIUM
    if _meets(rule.small, measures):
        return SizeClass.SMALL
    return SizeClass.MICRO

"""Template filters for voucher pages: money in minor units, ratios as percentages."""

from __future__ import annotations

from decimal import Decimal

from django import template

from core.money import format_money

register = template.Library()


@register.filter
def money(amount_minor: int | None, currency: str = "CNY") -> str:
    if amount_minor is None:
        return "—"
    return format_money(int(amount_minor), currency or "CNY")


@register.filter
def pct(ratio: Decimal | None) -> str:
    if ratio is None:
        return "—"
    value = (Decimal(ratio) * 100).normalize()
    return f"{value:f}%"


@register.filter
def share(part: int | None, whole: int | None) -> int:
    """Percentage (0-100, whole number) of part in whole, for progress bars."""
    if not whole or part is None:
        return 0
    return max(0, min(100, round(100 * int(part) / int(whole))))


@register.filter
def minus(value: int | None, other: int | None) -> int:
    return int(value or 0) - int(other or 0)


@register.filter
def provinces(codes: list[str] | None) -> str:
    """GB/T 2260 province codes as names (Chinese names: the programmes are Chinese public policy)."""
    from accounts.regions import PROVINCE_ZH_BY_CODE

    return "、".join(PROVINCE_ZH_BY_CODE.get(code, code) for code in codes or [])

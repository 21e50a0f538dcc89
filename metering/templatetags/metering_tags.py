"""Display helpers for usage figures (exact Decimal arithmetic, no floats)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template

register = template.Library()


@register.filter
def acc_hours(seconds: int | None) -> str:
    """Accelerator-seconds as accelerator-hours with two decimals."""
    if seconds is None:
        return "–"
    return f"{(Decimal(seconds) / 3600).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


@register.filter
def ratio_pct(value: Decimal | None) -> str:
    """A 0..1 ratio as a percentage with one decimal."""
    if value is None:
        return "–"
    return f"{(Decimal(value) * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)} %"


@register.filter
def kwh(wh: int | None) -> str:
    if wh is None:
        return "–"
    return f"{(Decimal(wh) / 1000).quantize(Decimal('0.001'), rounding=ROUND_HALF_UP):,}"


@register.filter
def bp_pct(bp: int | None) -> str:
    return "–" if bp is None else f"{Decimal(bp) / 100:.1f} %"

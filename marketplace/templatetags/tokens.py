"""Template helpers of the token-market pages: token counts in millions, shares of capacity."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django import template

register = template.Library()


@register.filter
def mtokens(value: Any) -> str:
    """Tokens as millions with thousands separators, e.g. 2592000000 -> "2,592" (the page says "M tokens")."""
    if value is None or value == "":
        return "–"
    millions = (Decimal(int(value)) / Decimal(1_000_000)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    if millions == millions.to_integral_value():
        millions = millions.quantize(Decimal(1))
    return f"{millions:,}"


@register.filter
def share_pct(part: Any, whole: Any) -> int:
    """``part`` as a whole percentage of ``whole`` (0 when ``whole`` is 0), for progress bars."""
    whole = int(whole or 0)
    return 0 if whole <= 0 else min(100, round(int(part or 0) * 100 / whole))

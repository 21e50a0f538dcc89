"""Template helpers of the supply pages."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template
from django.utils.formats import number_format

register = template.Library()


@register.filter
def plain(value: Any) -> str:
    """A Decimal without trailing zeros or exponent (0.9890 -> "0.989", 1E+3 -> "1000"); None -> "–"."""
    if value is None or value == "":
        return "–"
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    text = format(value.normalize(), "f")
    return number_format(Decimal(text), decimal_pos=None, use_l10n=True, force_grouping=True)


@register.filter
def with_units(pools: Any) -> list[tuple[Any, Any]]:
    """Pools -> (pool, per-accelerator normalised figures) pairs."""
    return [(pool, pool.normalised()) for pool in pools]

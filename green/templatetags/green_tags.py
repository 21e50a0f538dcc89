"""Template filters of the green app: Wh shown as kWh, province names."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template
from django.utils.translation import get_language

from accounts.regions import PROVINCE_EN_BY_CODE, PROVINCE_ZH_BY_CODE

register = template.Library()


@register.filter
def kwh(value: Any, places: int = 3) -> str:
    """Wh (an integer) as kWh with ``places`` decimals and thousands separators: 1234567 -> "1,234.567"."""
    if value is None or value == "":
        return "—"
    amount = Decimal(value) / 1000
    return f"{amount:,.{int(places)}f}"


@register.filter
def province_name(code: str) -> str:
    names = PROVINCE_ZH_BY_CODE if (get_language() or "zh-hans").startswith("zh") else PROVINCE_EN_BY_CODE
    return names.get(code, code)


@register.filter
def tonnes(kg: Any) -> str:
    if kg is None or kg == "":
        return "—"
    return f"{Decimal(kg) / 1000:,.3f}"


@register.filter
def mwh(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return f"{Decimal(value) / 1_000_000:,.1f}"


@register.inclusion_tag("green/_dashboard_widget.html", takes_context=True)
def green_widget(context: Any) -> dict[str, Any]:
    """The buyer dashboard's green card: the latest month's share and CO2, and a link to the statements."""
    from core.errors import ApplicationError
    from green import selectors

    organization = context.get("current_organization")
    try:
        series = selectors.buyer_monthly(organization, months=1) if organization is not None else []
    except ApplicationError:  # no emission factor for the year: the dashboard must still render
        series = []
    return {"latest": series[-1] if series else None}


@register.filter
def energy_source(value: str) -> str:
    from green.models import EnergySource

    try:
        return str(EnergySource(value).label)
    except ValueError:
        return value

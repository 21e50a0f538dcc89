"""Tenancy-matrix factories for the billing URLs (registered in tests/tenancy.py)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from accounts.models import Organization

MakeOrg = Callable[..., Organization]


def _invoice(make_org: MakeOrg) -> tuple[Organization, str]:
    from billing.models import Invoice
    from core.timeutils import Window

    buyer = make_org("buyer")
    october = Window.month(2026, 10)
    invoice = Invoice.objects.create(
        buyer=buyer, period_start=october.start, period_end=october.end, vat_rate=Decimal("0.06")
    )
    return buyer, str(invoice.public_id)


BILLING_FACTORIES = {"invoice_id": _invoice}

"""The billing demo: paid, open and draft invoices, payouts split among owners; idempotent."""

from __future__ import annotations

import pytest

from billing.ledger import ledger_verify
from billing.models import Invoice, Payout

pytestmark = pytest.mark.django_db


def test_demo_has_paid_open_and_draft_invoices_and_split_payouts(stripe_server):
    from accounts import demo as accounts_demo
    from billing import demo
    from marketplace import demo as marketplace_demo
    from tests.marketplace.factories import ensure_reference_data

    ensure_reference_data()
    accounts_demo.seed()
    marketplace_demo.seed()
    demo.seed()
    statuses = set(Invoice.objects.values_list("status", flat=True))
    assert {"paid", "finalized", "draft"} <= statuses
    assert Invoice.objects.filter(lines__kind="sla_credit").exists()
    paid = Payout.objects.filter(status="paid")
    assert paid.exists()
    # 合作分成: one invoice's payouts go to two owners of the shared H100 pool.
    assert any(
        Payout.objects.filter(invoice_id=invoice_id, status="paid").count() >= 2
        for invoice_id in paid.values_list("invoice_id", flat=True)
    )
    counts = (Invoice.objects.count(), Payout.objects.count())
    demo.seed()
    assert (Invoice.objects.count(), Payout.objects.count()) == counts
    assert ledger_verify().mismatches == []

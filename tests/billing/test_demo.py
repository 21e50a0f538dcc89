"""The billing demo: paid, open and draft invoices, payouts split among owners; idempotent."""

from __future__ import annotations

import pytest

from billing.ledger import ledger_verify
from billing.models import Invoice, InvoiceLine, Payout
from core.timeutils import Window

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
    # The usage behind the demo's September and October invoices came through the signed ingest: a reviewer can
    # verify each lease's batches (later months bill leases still to run).
    from metering import selectors as metering_selectors

    billed = InvoiceLine.objects.filter(invoice__period_start__in=[Window.month(*m).start for m in demo.MONTHS])
    subjects = {str(s) for s in billed.exclude(subject_public_id=None).values_list("subject_public_id", flat=True)}
    evidence = metering_selectors.usage_evidence(subject_ids=subjects)
    assert len(evidence) >= len(demo.HISTORY)
    assert all(e.batch_count > 0 and e.record_count > 0 for e in evidence)
    counts = (Invoice.objects.count(), Payout.objects.count())
    demo.seed()
    assert (Invoice.objects.count(), Payout.objects.count()) == counts
    assert ledger_verify().mismatches == []

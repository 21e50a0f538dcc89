"""The metering demo: weeks of signed usage for demo leases, an outage with an SLA credit, one open dispute."""

from __future__ import annotations

import pytest

from core.timeutils import Window, utcnow
from metering import selectors
from metering.models import Dispute, SignedBatch, UsageHour, UsageObservation, UsageRecord


@pytest.mark.slow
@pytest.mark.django_db
def test_demo_usage_is_signed_reconciled_and_idempotent():
    from accounts import demo as accounts_demo
    from marketplace import demo as market_demo
    from metering import demo
    from tests.marketplace.factories import ensure_reference_data

    ensure_reference_data()  # live-server tests flush the data migration's rows
    accounts_demo.seed()
    market_demo.seed()
    demo.seed()
    records = UsageRecord.objects.count()
    assert records > 500
    assert UsageHour.objects.filter(subject_kind="lease").count() > 400
    assert all(selectors.batch_verification(b.public_id).valid for b in SignedBatch.objects.all()[:3])
    dispute = Dispute.objects.get()
    assert dispute.is_open
    assert dispute.lease.status == "disputed"
    lease_ids = list(UsageHour.objects.values_list("subject_id", flat=True).distinct())
    usage = selectors.lease_period_usage(lease_public_ids=lease_ids, window=Window(dispute.lease.start, utcnow()))
    credited = [u for u in usage.values() if u.sla_credit_ratio > 0]
    assert credited, "the outage earns an SLA credit"
    assert any(u.energy_estimated_wh > 0 for u in usage.values()), "a day without energy readings is estimated"
    observed = UsageObservation.objects.count()
    assert observed >= 20, "a buyer posted its own measurements for the last day"
    assert not UsageObservation.objects.filter(dispute__isnull=False).exists(), "they agree within the threshold"

    demo.seed()
    assert UsageRecord.objects.count() == records
    assert Dispute.objects.count() == 1
    assert UsageObservation.objects.count() == observed

"""The issuer sees the metered usage behind a redemption: per line, the leases' usage over the invoice's period
and the signed batches, each with its public verification link."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from metering import services as metering_services
from metering.models import SignedBatch
from tests.metering.test_usage_ingest import NOW, new_provider, records, send
from tests.vouchers.tenancy_factories import _redemption
from vouchers import selectors
from vouchers.models import Redemption, RedemptionLine

START = NOW - timedelta(hours=48)  # the first record's hour in tests.metering.test_usage_ingest.records


@pytest.fixture
def redemption(make_org):
    provider = new_provider(make_org)
    first = send(provider, records(provider, count=3, start_hour=0))
    send(provider, records(provider, count=3, start_hour=3))  # after the invoice's period
    while metering_services.usage_rollup_dirty(now=NOW):
        pass
    issuer, public_id = _redemption(make_org)
    redemption = Redemption.objects.get(public_id=public_id)
    period = [START.isoformat(), (START + timedelta(hours=3)).isoformat()]
    for index, evidence in enumerate(({"subjects": [provider.lease_id], "period": period}, {})):
        RedemptionLine.objects.create(
            redemption=redemption,
            line_index=index,
            provider=provider,
            amount_minor=50_000,
            ratio=Decimal("0.3"),
            subsidy_minor=15_000,
            chip_domestic=True,
            evidence=evidence,
        )
    redemption.issuer = issuer
    redemption.first_batch = SignedBatch.objects.get(pk=first.batch_id).public_id
    return redemption


@pytest.mark.django_db
def test_each_line_shows_its_usage_in_the_period_and_the_batches_it_came_in(redemption):
    metered, bare = selectors.redemption_evidence(redemption)
    [subject] = metered.subjects
    assert (subject.accelerator_seconds, subject.record_count, subject.energy_wh) == (3 * 8 * 3600, 3, 3 * 5200)
    assert [b.public_id for b in subject.batches] == [redemption.first_batch]  # not the batch after the period
    assert subject.batches[0].records == 3
    assert bare.subjects == []


@pytest.mark.django_db
def test_the_page_links_every_batch_to_its_public_verification(redemption, client_for, make_org):
    page = client_for(redemption.issuer.owner).get(f"/issuer/redemptions/{redemption.public_id}/evidence/")
    assert page.status_code == 200
    body = page.content.decode()
    assert f"/verify/batches/{redemption.first_batch}/" in body
    assert 'data-testid="no-evidence"' in body  # the line without subjects says so
    listing = client_for(redemption.issuer.owner).get("/issuer/redemptions/?status=").content.decode()
    assert f"/issuer/redemptions/{redemption.public_id}/evidence/" in listing
    other_issuer = make_org("issuer")
    assert (
        client_for(other_issuer.owner).get(f"/issuer/redemptions/{redemption.public_id}/evidence/").status_code == 404
    )

"""The provider's ingest health page and the public verification of a kept batch."""

from __future__ import annotations

import pytest
from django.test import Client

from metering.models import SignedBatch
from tests.metering.test_usage_ingest import records, send


@pytest.mark.django_db
def test_health_counts_outcomes_and_rejections_by_code(provider, client_for):
    send(provider, records(provider, 3))
    send(provider, [*records(provider, 2), {"record_id": "bad", "lease_id": provider.lease_id}])
    batch = SignedBatch.objects.filter(organization=provider).order_by("-id").first()
    assert batch.outcome == {"accepted": 0, "duplicate": 2, "conflict": 0, "rejected": {"invalid_window": 1}}
    page = client_for(provider.owner).get("/provider/ingest/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "invalid_window" in body
    assert page.context["health"]["accepted"] == 3
    assert page.context["health"]["batches"] == 2


@pytest.mark.django_db
def test_anyone_with_the_link_can_verify_and_tampering_shows(provider, make_org, client_for):
    send(provider, records(provider, 2))
    batch = SignedBatch.objects.get(organization=provider)
    anonymous = Client()
    page = anonymous.get(f"/verify/batches/{batch.public_id}/")
    assert page.status_code == 200
    assert 'data-valid="yes"' in page.content.decode()
    assert "rec-0" in page.content.decode()
    # Someone alters the kept bytes: the page says so.
    SignedBatch.objects.filter(pk=batch.pk).update(body=bytes(batch.body).replace(b"5200", b"5201"))
    assert 'data-valid="no"' in anonymous.get(f"/verify/batches/{batch.public_id}/").content.decode()
    assert anonymous.get("/verify/batches/00000000-0000-0000-0000-000000000000/").status_code == 404
    # The health page is the provider's own.
    assert client_for(make_org("buyer").owner).get("/provider/ingest/").status_code == 403
    other = client_for(make_org("provider").owner).get("/provider/ingest/")
    assert other.context["health"]["batches"] == 0

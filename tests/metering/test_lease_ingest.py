"""Metering sees the market's leases: a signed batch for a real lease is accepted through the API."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from core.timeutils import floor_hour, utcnow
from metering import selectors, services, signing
from metering.models import UsageRecord
from tests.marketplace.factories import make_lease

PATH = "/api/v1/metering/records"


@pytest.mark.django_db
def test_a_signed_batch_for_a_real_lease_is_accepted(make_org, api_client_for):
    provider, buyer = make_org("provider"), make_org("buyer")
    start = floor_hour(utcnow()) - timedelta(hours=3)
    lease = make_lease(provider, buyer, accelerators=4, start=start, end=start + timedelta(hours=6), status="active")
    cancelled = make_lease(provider, buyer, accelerators=1, start=start, end=start + timedelta(hours=6))
    cancelled.status = "cancelled"
    cancelled.save()
    private = signing.load_private_key(signing.generate_private_key_pem())
    services.signing_key_register(
        organization=provider, name="agent", public_key=signing.public_key_text(signing.public_raw_of(private))
    )
    # Only the provider's own, usable leases are facts: not the buyer's view, not a cancelled one.
    assert set(selectors.subject_facts(provider, {str(lease.public_id), str(cancelled.public_id), "x"})) == {
        str(lease.public_id)
    }
    assert selectors.subject_facts(buyer, {str(lease.public_id)}) == {}

    records = [
        {
            "record_id": f"lease-{hour}",
            "lease_id": str(lease.public_id),
            "window_start": (start + timedelta(hours=hour)).isoformat(),
            "window_end": (start + timedelta(hours=hour + 1)).isoformat(),
            "accelerator_seconds": 4 * 3600,
            "avg_utilization_pct": 80,
            "energy_wh": 2600,
        }
        for hour in range(2)
    ]
    body = json.dumps({"records": records}).encode()
    headers = signing.signed_headers(private, int(time.time()), "POST", PATH, body)
    response = api_client_for(provider, ["metering:write"]).post(
        PATH,
        data=body,
        content_type="application/json",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
    )
    assert response.status_code == 200, response.json()
    assert response.json()["accepted"] == 2, response.json()
    assert UsageRecord.objects.filter(provider=provider).count() == 2

"""Metering sees the market's token contracts: a signed batch for a real contract is accepted through the API."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from core.timeutils import floor_hour, utcnow
from metering import selectors, services, signing
from metering.models import UsageRecord
from tests.marketplace.token_factories import make_token_contract

PATH = "/api/v1/metering/records"


@pytest.mark.django_db
def test_a_signed_batch_for_a_token_contract_is_accepted(make_org, api_client_for):
    provider, buyer = make_org("provider"), make_org("buyer")
    start = floor_hour(utcnow()) - timedelta(hours=3)
    contract = make_token_contract(provider, buyer, start=start, end=start + timedelta(days=30), status="active")
    cancelled = make_token_contract(provider, buyer, start=start, end=start + timedelta(days=30))
    cancelled.status = "cancelled"
    cancelled.save()
    private = signing.load_private_key(signing.generate_private_key_pem())
    services.signing_key_register(
        organization=provider, name="agent", public_key=signing.public_key_text(signing.public_raw_of(private))
    )
    # Only the provider's own, usable contracts are facts: not the buyer's view, not a cancelled one.
    facts = selectors.subject_facts(provider, {str(contract.public_id), str(cancelled.public_id), "x"})
    assert set(facts) == {str(contract.public_id)}
    assert (facts[str(contract.public_id)].kind, facts[str(contract.public_id)].accelerators) == ("contract", 0)
    assert selectors.subject_facts(buyer, {str(contract.public_id)}) == {}

    records = [
        {
            "record_id": f"tokens-{hour}",
            "contract_id": str(contract.public_id),
            "window_start": (start + timedelta(hours=hour)).isoformat(),
            "window_end": (start + timedelta(hours=hour + 1)).isoformat(),
            "tokens_in": 1_200_000,
            "tokens_out": 400_000,
            "requests": 950,
        }
        for hour in range(2)
    ]
    # Named as a lease, a contract is unknown (the kinds are not interchangeable).
    records.append({**records[0], "record_id": "as-lease", "lease_id": records[0]["contract_id"]})
    del records[-1]["contract_id"]
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
    assert response.json()["rejected"] == 1
    refused = next(r for r in response.json()["results"] if r["record_id"] == "as-lease")
    assert (refused["status"], refused["code"]) == ("rejected", "unknown_lease")
    stored = UsageRecord.objects.filter(provider=provider)
    assert stored.count() == 2
    assert {(r.subject_kind, r.tokens_in, r.tokens_out, r.requests) for r in stored} == {
        ("contract", 1_200_000, 400_000, 950)
    }

"""Usage ingest on PostgreSQL: per-record outcomes, idempotency, races, the signed batch kept verbatim."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from core.errors import ApplicationError
from metering import selectors, services, signing
from metering.ingest import LeaseFacts
from metering.models import SignedBatch, UsageRecord, UsageRecordKey

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
PATH = "/api/v1/metering/records"


def new_provider(make_org):
    """A provider with a registered signing key (``.private_key``) and one 8-accelerator lease (``.lease_id``)."""
    organization = make_org("provider")
    private = signing.load_private_key(signing.generate_private_key_pem())
    services.signing_key_register(
        organization=organization, name="agent", public_key=signing.public_key_text(signing.public_raw_of(private))
    )
    organization.private_key = private
    lease = LeaseFacts(str(uuid.uuid4()), organization.pk, 8, NOW - timedelta(days=3), NOW + timedelta(days=3))
    organization.subjects = {lease.public_id: lease}
    organization.lease_id = lease.public_id
    return organization


def records(provider, count=3, start_hour=0, **overrides):
    base = NOW - timedelta(hours=48)
    out = []
    for i in range(count):
        begin = base + timedelta(hours=start_hour + i)
        record = {
            "record_id": f"rec-{start_hour + i}",
            "lease_id": provider.lease_id,
            "window_start": begin.isoformat(),
            "window_end": (begin + timedelta(hours=1)).isoformat(),
            "accelerator_seconds": 8 * 3600,
            "avg_utilization_pct": 90,
            "energy_wh": 5200,
        }
        record.update(overrides)
        out.append(record)
    return out


def send(provider, batch, subjects=None, body=None, timestamp=None):
    body = body if body is not None else json.dumps({"records": batch}).encode()
    stamp = timestamp or int(time.time())
    headers = signing.signed_headers(provider.private_key, stamp, "POST", PATH, body)
    return services.usage_batch_ingest(
        organization=provider,
        method="POST",
        path=PATH,
        body=body,
        content_type="application/json",
        timestamp=headers[signing.TIMESTAMP_HEADER],
        signature=headers[signing.SIGNATURE_HEADER],
        subjects=provider.subjects if subjects is None else subjects,
        now=NOW,
    )


def statuses(result):
    return [(r.record_id, r.status) for r in result.results]


@pytest.mark.django_db
def test_accept_duplicate_conflict_reject(provider):
    first = send(provider, records(provider, 3))
    assert [s for _id, s in statuses(first)] == ["accepted"] * 3
    assert UsageRecord.objects.filter(provider=provider).count() == 3

    changed = records(provider, 3)
    changed[1]["energy_wh"] = 9999
    changed.append({"record_id": "bad", "lease_id": provider.lease_id})
    second = send(provider, changed)
    assert statuses(second) == [
        ("rec-0", "duplicate"),
        ("rec-1", "conflict"),
        ("rec-2", "duplicate"),
        ("bad", "rejected"),
    ]
    assert second.results[3].code == "invalid_window"
    # The first version stands; nothing was added.
    assert UsageRecord.objects.filter(provider=provider).count() == 3
    assert UsageRecord.objects.get(provider=provider, record_id="rec-1").energy_wh == 5200


@pytest.mark.django_db
def test_repeated_id_inside_one_batch(provider):
    batch = records(provider, 1) * 2 + [dict(records(provider, 1)[0], energy_wh=1)]
    result = send(provider, batch)
    assert [s for _id, s in statuses(result)] == ["accepted", "duplicate", "conflict"]
    assert UsageRecordKey.objects.filter(provider=provider).count() == 1


@pytest.mark.django_db
def test_unknown_and_foreign_leases_are_rejected_alike(provider, make_org):
    other = make_org("provider")
    foreign = LeaseFacts(str(uuid.uuid4()), other.pk, 8, NOW - timedelta(days=1), NOW + timedelta(days=1))
    subjects = {**provider.subjects, foreign.public_id: foreign}
    result = send(
        provider,
        records(provider, 1, lease_id=foreign.public_id) + records(provider, 1, 5, lease_id=str(uuid.uuid4())),
        subjects=subjects,
    )
    assert [(r.status, r.code) for r in result.results] == [("rejected", "unknown_lease")] * 2


@pytest.mark.django_db
def test_signature_is_required_and_checked(provider):
    body = json.dumps({"records": records(provider, 1)}).encode()
    with pytest.raises(ApplicationError) as missing:
        services.usage_batch_ingest(
            organization=provider,
            method="POST",
            path=PATH,
            body=body,
            content_type="application/json",
            timestamp=None,
            signature=None,
            subjects={},
        )
    assert missing.value.status_code == 401
    headers = signing.signed_headers(provider.private_key, int(time.time()), "POST", PATH, body)
    tampered = body.replace(b"5200", b"5300")
    with pytest.raises(ApplicationError) as bad:
        services.usage_batch_ingest(
            organization=provider,
            method="POST",
            path=PATH,
            body=tampered,
            content_type="application/json",
            timestamp=headers[signing.TIMESTAMP_HEADER],
            signature=headers[signing.SIGNATURE_HEADER],
            subjects=provider.subjects,
        )
    assert bad.value.code == "signature_invalid"
    assert not SignedBatch.objects.exists()


@pytest.mark.django_db
def test_the_signed_batch_is_kept_and_verifiable(provider):
    result = send(provider, records(provider, 2))
    batch = SignedBatch.objects.get(pk=result.batch_id)
    message = signing.canonical_message(batch.timestamp, batch.method, batch.path, bytes(batch.body))
    assert signing.verify(bytes(batch.signing_key.public_key), message, batch.signature)
    stored = UsageRecord.objects.get(provider=provider, record_id="rec-0")
    assert stored.batch_id == batch.pk
    assert json.loads(bytes(batch.body))["records"][0]["record_id"] == "rec-0"
    assert (batch.records_total, batch.records_accepted) == (2, 2)


@pytest.mark.django_db
def test_period_close_after_grace(provider):
    # 2026-12-01 00:30 is inside the 1 h grace: November still open. At 01:00 it closes.
    assert selectors.usage_closed_before(datetime(2026, 12, 1, 0, 30, tzinfo=UTC)) == datetime(2026, 11, 1, tzinfo=UTC)
    assert selectors.usage_closed_before(datetime(2026, 12, 1, 1, 0, tzinfo=UTC)) == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.django_db
def test_partitions_are_created_ahead_and_used(provider):
    created = services.usage_partitions_ensure(months_ahead=1, now=NOW)
    assert created == ["metering_usagerecord_202611", "metering_usagerecord_202612"]
    assert services.usage_partitions_ensure(months_ahead=1, now=NOW) == []
    send(provider, records(provider, 2))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metering_usagerecord_202611")
        assert cursor.fetchone()[0] == 2


@pytest.mark.django_db(transaction=True)
def test_racing_batches_count_every_record_once(provider):
    """Six connections send overlapping batches at once: each record id is stored exactly once."""
    batches = [records(provider, 20, start_hour=(i % 3) * 10) for i in range(6)]
    barrier = threading.Barrier(len(batches))
    outcomes = []
    errors = []

    def worker(batch):
        try:
            barrier.wait()
            outcomes.append(send(provider, batch))
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    accepted = [r.record_id for o in outcomes for r in o.results if r.status == "accepted"]
    assert sorted(accepted) == sorted({f"rec-{h}" for h in range(40)})  # each id accepted once, by someone
    assert all(r.status in ("accepted", "duplicate") for o in outcomes for r in o.results)
    assert UsageRecord.objects.filter(provider=provider).count() == 40


@pytest.mark.django_db
def test_api_whole_request_errors(provider, api_client_for, monkeypatch):
    client = api_client_for(provider, ["metering:write"])
    unsigned = client.post(PATH, data=b'{"records": []}', content_type="application/json")
    assert unsigned.status_code == 401
    assert unsigned.json()["errors"][0]["code"] == "signature_missing"

    def signed(body, content_type="application/json"):
        headers = signing.signed_headers(provider.private_key, int(time.time()), "POST", PATH, body)
        return client.post(
            PATH,
            data=body,
            content_type=content_type,
            **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
        )

    assert signed(b"{nope").json()["errors"][0]["code"] == "invalid_json"
    too_many = json.dumps({"records": [{}] * 10_001}).encode()
    assert signed(too_many).status_code == 413

    # Until the market creates leases, the endpoint rejects every record as unknown; with facts it accepts.
    body = json.dumps({"records": records(provider, 2)}).encode()
    response = signed(body)
    assert response.status_code == 200
    assert response.json()["rejected"] == 2
    monkeypatch.setattr(selectors, "subject_facts", lambda organization, ids: provider.subjects)
    monkeypatch.setattr(selectors, "usage_closed_before", lambda now: NOW - timedelta(days=30))
    accepted = signed(body.replace(b"rec-", b"new-"))
    assert accepted.json()["accepted"] == 2, accepted.json()
    assert accepted.json()["results"][0] == {
        "record_id": "new-0",
        "status": "accepted",
        "code": None,
        "field": None,
        "message": None,
    }

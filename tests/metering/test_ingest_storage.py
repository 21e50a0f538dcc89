"""How ingest stores a batch: record ids of any text through COPY, one row per id (the key table is the only
unique constraint), the batch row and its records sharing one id, rollup marks on UTC hours."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from metering.models import SignedBatch, UsageDirtyHour, UsageRecord, UsageRecordKey
from tests.metering.test_usage_ingest import NOW, records, send, statuses


@pytest.mark.django_db
def test_record_ids_with_copy_special_characters_are_stored_exactly(provider):
    ids = ["tab\there", "new\nline", "back\\slash", "cr\rx", "\\.", "end\\", "\\N", "中文-记录", "quote'\"", "x" * 128]
    batch = [dict(r, record_id=record_id) for r, record_id in zip(records(provider, len(ids)), ids, strict=True)]
    assert [s for _id, s in statuses(send(provider, batch))] == ["accepted"] * len(ids)
    stored = set(UsageRecord.objects.filter(provider=provider).values_list("record_id", flat=True))
    assert stored == set(ids)
    assert set(UsageRecordKey.objects.filter(provider=provider).values_list("record_id", flat=True)) == set(ids)
    # The same records again: every one is recognised as a duplicate, by its exact id and content.
    assert [s for _id, s in statuses(send(provider, batch))] == ["duplicate"] * len(ids)


@pytest.mark.django_db
def test_each_id_is_stored_once_under_the_batch_that_accepted_it(provider):
    first = send(provider, records(provider, 3))
    again = records(provider, 4, start_hour=1)  # rec-1, rec-2 again, rec-3, rec-4 new
    again[1]["energy_wh"] = 1  # rec-2 with other content
    second = send(provider, again)
    assert statuses(second) == [
        ("rec-1", "duplicate"),
        ("rec-2", "conflict"),
        ("rec-3", "accepted"),
        ("rec-4", "accepted"),
    ]
    rows = list(UsageRecord.objects.filter(provider=provider).values_list("record_id", "batch_id", "energy_wh"))
    assert sorted(rows) == [
        ("rec-0", first.batch_id, 5200),
        ("rec-1", first.batch_id, 5200),
        ("rec-2", first.batch_id, 5200),  # the first version stands
        ("rec-3", second.batch_id, 5200),
        ("rec-4", second.batch_id, 5200),
    ]
    kept = SignedBatch.objects.get(pk=second.batch_id)
    assert bytes(kept.body) == json.dumps({"records": again}).encode()
    assert (kept.records_total, kept.records_accepted) == (4, 2)
    assert kept.outcome == {"accepted": 2, "duplicate": 1, "conflict": 1, "rejected": {}}
    assert kept.organization_id == provider.pk
    assert second.batch_id > first.batch_id


@pytest.mark.django_db
def test_a_batch_with_nothing_to_store_is_kept_too(provider):
    result = send(provider, records(provider, 2, lease_id="00000000-0000-0000-0000-000000000000"))
    assert [r.code for r in result.results] == ["unknown_lease", "unknown_lease"]
    kept = SignedBatch.objects.get(pk=result.batch_id)
    assert (kept.records_total, kept.records_accepted) == (2, 0)
    assert kept.outcome == {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": {"unknown_lease": 2}}
    assert not UsageRecord.objects.filter(provider=provider).exists()
    assert send(provider, records(provider, 1)).batch_id > result.batch_id


@pytest.mark.django_db
def test_rollup_marks_are_the_utc_hours_a_record_touches_whatever_the_session_time_zone(provider):
    base = (NOW - timedelta(hours=30)).replace(minute=0)
    straddling = records(provider, 1)[0] | {
        "record_id": "straddling",
        "window_start": (base + timedelta(minutes=30)).isoformat(),
        "window_end": (base + timedelta(minutes=90)).isoformat(),
        "accelerator_seconds": 3600,
    }
    whole = records(provider, 1)[0] | {
        "record_id": "whole-hour",
        "window_start": (base + timedelta(hours=3)).isoformat(),
        "window_end": (base + timedelta(hours=4)).isoformat(),  # the end is exclusive: the next hour is untouched
    }
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'Asia/Kolkata'")  # UTC+5:30: local hours are not UTC hours
    try:
        send(provider, [straddling, whole])
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
    marked = {h.astimezone(UTC) for h in UsageDirtyHour.objects.values_list("hour_start", flat=True)}
    assert marked == {base, base + timedelta(hours=1), base + timedelta(hours=3)}
    assert all(h == datetime(h.year, h.month, h.day, h.hour, tzinfo=UTC) for h in marked)

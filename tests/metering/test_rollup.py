"""Hourly rollups: exact splits across hours, and identical results however batches are replayed or split."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering import rollup, services, signing
from metering.models import UsageDirtyHour, UsageHour
from metering.tasks import usage_rollup_dirty
from tests.metering.test_usage_ingest import NOW, PATH, new_provider, records

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@st.composite
def raw_usage(draw):
    start = T0 + timedelta(seconds=draw(st.integers(0, 10 * 3600)))
    length = draw(st.integers(1, 3600))
    return rollup.RawUsage(
        start,
        start + timedelta(seconds=length),
        draw(st.integers(0, 8 * length)),
        draw(st.integers(0, 10_000)),
        draw(st.none() | st.integers(0, 10_000)),
        draw(st.integers(0, 10**6)),
        draw(st.integers(0, 10**6)),
        draw(st.integers(0, 1000)),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(raw_usage(), max_size=30), st.randoms(use_true_random=False))
def test_hours_sum_to_the_records_in_any_order(items, rng):
    hours = rollup.rollup(items)
    for name in ("accelerator_seconds", "tokens_in", "tokens_out", "requests"):
        assert sum(getattr(t, name) for t in hours.values()) == sum(getattr(r, name) for r in items)
    assert sum(t.energy_wh for t in hours.values()) == sum(r.energy_wh or 0 for r in items)
    shuffled = list(items)
    rng.shuffle(shuffled)
    assert {h: (t.accelerator_seconds, t.energy_wh, t.utilization_bp) for h, t in rollup.rollup(shuffled).items()} == {
        h: (t.accelerator_seconds, t.energy_wh, t.utilization_bp) for h, t in hours.items()
    }


def test_a_record_straddling_two_hours_is_split_by_seconds():
    record = rollup.RawUsage(T0 + timedelta(minutes=40), T0 + timedelta(minutes=100), 3600, 5000, 3601, 0, 0, 0)
    hours = rollup.rollup([record])
    first, second = hours[T0], hours[T0 + timedelta(hours=1)]
    assert (first.accelerator_seconds, second.accelerator_seconds) == (1200, 2400)
    assert first.energy_wh + second.energy_wh == 3601


def _send(org, batch):
    body = json.dumps({"records": batch}).encode()
    headers = signing.signed_headers(org.private_key, int(time.time()), "POST", PATH, body)
    return services.usage_batch_ingest(
        organization=org,
        method="POST",
        path=PATH,
        body=body,
        content_type="application/json",
        timestamp=headers[signing.TIMESTAMP_HEADER],
        signature=headers[signing.SIGNATURE_HEADER],
        subjects=org.subjects,
        now=NOW,
    )


def _run_enqueued_rollups():
    usage_rollup_dirty()


def _rollup_rows(org):
    return list(
        UsageHour.objects.filter(provider=org)
        .order_by("hour_start")
        .values_list("hour_start", "record_count", "accelerator_seconds", "energy_wh", "utilization_bp")
    )


@pytest.mark.django_db
def test_replayed_shuffled_and_split_batches_give_identical_rollups(make_org):
    """The same 24 records (half of them straddling hours) sent as one batch, or shuffled, split, replayed."""
    rng = random.Random(7)
    reference_rows = None
    for attempt in range(4):
        org = new_provider(make_org)
        batch = records(org, 24)
        for i, record in enumerate(batch):
            if i % 2:  # shift half of them by 30 minutes so they straddle two hours
                start = datetime.fromisoformat(record["window_start"]) + timedelta(minutes=30)
                record["window_start"] = start.isoformat()
                record["window_end"] = (start + timedelta(hours=1)).isoformat()
        if attempt == 0:
            _send(org, batch)
        else:
            rng.shuffle(batch)
            cuts = sorted(rng.sample(range(1, len(batch)), 3))
            parts = [batch[a:b] for a, b in zip([0, *cuts], [*cuts, len(batch)], strict=True)]
            for part in parts + parts[:attempt]:  # some parts replayed
                _send(org, part)
        _run_enqueued_rollups()
        _run_enqueued_rollups()  # a task running twice changes nothing
        rows = [row[1:] for row in _rollup_rows(org)]
        assert sum(r[1] for r in rows) == 24 * 8 * 3600
        if reference_rows is None:
            reference_rows = rows
        assert rows == reference_rows
        assert not UsageDirtyHour.objects.exists()  # every mark consumed


@pytest.mark.django_db
def test_a_mark_added_during_a_rollup_run_survives_for_the_next(make_org, monkeypatch):
    """Marks are consumed by id: one added while a run is recomputing (a concurrent ingest) is not lost."""
    org = new_provider(make_org)
    _send(org, records(org, 2))
    assert UsageDirtyHour.objects.count() == 2
    real = services.usage_rollup_hours
    late = {}

    def concurrent_ingest(**kwargs):
        if not late:
            late["mark"] = UsageDirtyHour.objects.create(subject_id=org.lease_id, hour_start=kwargs["hours"][0])
        return real(**kwargs)

    monkeypatch.setattr(services, "usage_rollup_hours", concurrent_ingest)
    assert services.usage_rollup_dirty() == 2
    assert list(UsageDirtyHour.objects.values_list("id", flat=True)) == [late["mark"].id]
    assert services.usage_rollup_dirty() == 1
    assert services.usage_rollup_dirty() == 0
    assert UsageHour.objects.filter(subject_id=org.lease_id).count() == 2

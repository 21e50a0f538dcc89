"""Record validation: every rejection code, both wire formats, and verdicts independent of batching."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering import ingest
from metering.ingest import (
    CLOUDEVENTS_BATCH,
    MAX_RECORDS,
    BatchError,
    LeaseFacts,
    Record,
    Rejection,
    parse_batch,
    validate_record,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
LEASE = LeaseFacts("lease-1", provider_id=7, accelerators=8, start=T0, end=T0 + timedelta(days=2))
FOREIGN = LeaseFacts("lease-2", provider_id=9, accelerators=8, start=T0, end=T0 + timedelta(days=2))
CONTRACT = LeaseFacts(
    "contract-1", provider_id=7, accelerators=0, start=T0, end=T0 + timedelta(days=30), kind="contract"
)
SUBJECTS = {s.public_id: s for s in (LEASE, FOREIGN, CONTRACT)}
NOW = T0 + timedelta(days=1)


def record(**overrides):
    base = {
        "record_id": "r-1",
        "lease_id": "lease-1",
        "window_start": "2026-11-01T08:00:00Z",
        "window_end": "2026-11-01T09:00:00Z",
        "accelerator_seconds": 8 * 3600,
        "avg_utilization_pct": 87.5,
        "energy_wh": 5600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def verdict(raw, closed_before=T0):
    return validate_record(raw, provider_id=7, subjects=SUBJECTS, now=NOW, closed_before=closed_before)


def test_a_good_record():
    result = verdict(record())
    assert isinstance(result, Record)
    assert result.accelerator_seconds == 28_800
    assert result.utilization_bp == 8750
    assert result.window_end - result.window_start == timedelta(hours=1)


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"lease_id": "nope"}, "unknown_lease", "lease_id"),
        ({"lease_id": "lease-2"}, "unknown_lease", "lease_id"),  # another provider's lease looks unknown
        ({"lease_id": None}, "subject_required", "lease_id"),
        ({"contract_id": "contract-1"}, "subject_required", "lease_id"),  # both given
        ({"window_start": "yesterday"}, "invalid_window", "window_start"),
        ({"window_start": "2026-11-01T08:00:00"}, "invalid_window", "window_start"),  # naive: zone unknown
        ({"window_end": "2026-11-01T08:00:00Z"}, "invalid_window", "window_end"),
        ({"window_end": "2026-11-01T09:00:01Z"}, "window_too_long", "window_end"),
        (
            {"window_start": "2026-10-31T23:30:00Z", "window_end": "2026-11-01T00:30:00Z"},
            "outside_lease",
            "window_start",
        ),
        ({"window_start": "2026-11-02T08:00:00Z", "window_end": "2026-11-02T09:00:00Z"}, "in_future", "window_end"),
        ({"accelerator_seconds": 8 * 3600 + 1}, "over_capacity", "accelerator_seconds"),
        ({"accelerator_seconds": -1}, "negative_value", "accelerator_seconds"),
        ({"energy_wh": -5}, "negative_value", "energy_wh"),
        ({"tokens_in": 1.5}, "invalid_measure", "tokens_in"),
        ({"accelerator_seconds": True}, "invalid_measure", "accelerator_seconds"),
        ({"avg_utilization_pct": 101}, "invalid_measure", "avg_utilization_pct"),
        ({"record_id": ""}, "invalid_record_id", "record_id"),
        ({"record_id": "x" * 129}, "invalid_record_id", "record_id"),
    ],
)
def test_rejections(overrides, code, field):
    result = verdict(record(**overrides))
    assert isinstance(result, Rejection), result
    assert (result.code, result.field) == (code, field)


def test_too_late_after_the_period_closed():
    result = verdict(record(), closed_before=T0 + timedelta(hours=9))
    assert isinstance(result, Rejection)
    assert result.code == "too_late"


def test_token_contract_records():
    result = verdict(
        record(
            lease_id=None,
            contract_id="contract-1",
            accelerator_seconds=None,
            tokens_in=120_000,
            tokens_out=30_000,
            requests=42,
        )
    )
    assert isinstance(result, Record)
    assert (result.tokens_in, result.tokens_out, result.subject_kind) == (120_000, 30_000, "contract")


def test_same_content_same_hash_other_content_other_hash():
    a = verdict(record())
    b = verdict(record(avg_utilization_pct=87.50))
    c = verdict(record(energy_wh=5601))
    assert a.content_hash == b.content_hash != c.content_hash


def test_both_wire_formats_give_the_same_records():
    records = [record(record_id=f"r-{i}") for i in range(3)]
    plain = parse_batch(json.dumps({"records": records}).encode(), "application/json")
    events = [
        {
            "specversion": "1.0",
            "id": r["record_id"],
            "source": "agent",
            "type": "suanli.usage",
            "data": {k: v for k, v in r.items() if k != "record_id"},
        }
        for r in records
    ]
    cloud = parse_batch(json.dumps(events).encode(), CLOUDEVENTS_BATCH + "; charset=utf-8")
    assert [verdict(r) for r in plain] == [verdict(r) for r in cloud]


@pytest.mark.parametrize(
    ("body", "content_type", "code", "status"),
    [
        (b"{not json", "application/json", "invalid_json", 400),
        (b'{"rows": []}', "application/json", "invalid_batch", 400),
        (b'{"records": []}', "application/json", "empty_batch", 400),
        (b'{"records": []}', CLOUDEVENTS_BATCH, "invalid_batch", 400),
        (json.dumps({"records": [{}] * (MAX_RECORDS + 1)}).encode(), "application/json", "batch_too_large", 413),
    ],
)
def test_whole_request_errors(body, content_type, code, status):
    with pytest.raises(BatchError) as error:
        parse_batch(body, content_type)
    assert (error.value.code, error.value.status) == (code, status)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_verdicts_do_not_depend_on_batching(hours, rng):
    """The verdict of a record is a function of the record alone: any split or order gives the same verdicts."""
    raws = [
        record(
            record_id=f"r-{i}",
            window_start=(T0 + timedelta(hours=h)).isoformat(),
            window_end=(T0 + timedelta(hours=h + 1)).isoformat(),
        )
        for i, h in enumerate(hours)
    ]
    expected = {r["record_id"]: verdict(r) for r in raws}
    shuffled = list(raws)
    rng.shuffle(shuffled)
    cut = rng.randint(0, len(shuffled))
    for part in (shuffled[:cut], shuffled[cut:]):
        for raw in part:
            assert verdict(raw) == expected[raw["record_id"]]


# --- The fast content hash is byte-for-byte the documented one ------------------------------------------


@given(
    subject=st.text(max_size=40),
    kind=st.sampled_from(["lease", "contract"]),
    start=st.text(max_size=30),
    end=st.text(max_size=30),
    measures=st.fixed_dictionaries({name: st.integers(0, 10**15) for name in ingest.INTEGER_MEASURES}),
    energy=st.none() | st.integers(0, 10**12),
    util=st.none() | st.integers(0, 10_000),
)
def test_fast_content_hash_equals_the_canonical_json_hash(subject, kind, start, end, measures, energy, util):
    normalised = {
        "subject": subject,
        "kind": kind,
        "start": start,
        "end": end,
        **measures,
        "energy_wh": energy,
        "util": util,
    }
    fast = ingest.record_content_hash(
        subject=subject, kind=kind, start=start, end=end, measures=measures, energy=energy, util=util
    )
    assert fast == ingest.content_hash(normalised)

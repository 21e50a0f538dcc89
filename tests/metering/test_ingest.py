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


# --- The batch validator gives exactly validate_record's verdicts ---------------------------------------

_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 40_000),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1]),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=200),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=1),
)
_BOUNDS = [
    "2026-11-01T08:00:00Z",
    "2026-11-01T08:30:00+00:00",
    "2026-11-01T09:00:00Z",
    "2026-11-01T09:00:01Z",
    "2026-11-01T10:15:00+08:00",
    "2026-10-31T23:30:00Z",
    "2026-11-02T08:00:00Z",
    "2026-11-02T09:00:00Z",
    "2026-11-01T08:00:00",
    "yesterday",
]
_FIELDS = {
    "record_id": st.one_of(
        st.sampled_from(["r-1", "r-2", " ", "", "x" * 128, "x" * 129, "a\x00b", "é\t\n\\"]), _ANY_VALUE
    ),
    "lease_id": st.one_of(st.sampled_from(["lease-1", "lease-2", "contract-1", "nope", ""]), _ANY_VALUE),
    "contract_id": st.one_of(st.sampled_from(["contract-1", "lease-1", ""]), _ANY_VALUE),
    "window_start": st.one_of(st.sampled_from(_BOUNDS), _ANY_VALUE),
    "window_end": st.one_of(st.sampled_from(_BOUNDS), _ANY_VALUE),
    **{name: _ANY_VALUE for name in (*ingest.INTEGER_MEASURES, ingest.UTILISATION)},
}


@st.composite
def raw_records(draw):
    """Mostly valid records with a few fields replaced, removed or added; sometimes not an object at all."""
    if draw(st.integers(0, 30)) == 0:
        return draw(_ANY_VALUE)
    raw = record(
        record_id=draw(st.sampled_from(["r-1", "r-2", "r-3"])),
        window_start=draw(st.sampled_from(_BOUNDS[:2])),
        window_end=draw(st.sampled_from(_BOUNDS[1:3])),
        accelerator_seconds=draw(st.integers(0, 8 * 1800)),
        avg_utilization_pct=draw(st.one_of(st.none(), st.integers(0, 100), st.floats(0, 100))),
        energy_wh=draw(st.one_of(st.none(), st.integers(0, 10**6))),
    )
    if draw(st.booleans()):
        raw.pop("lease_id")
        raw["contract_id"] = "contract-1"
        raw.update({"tokens_in": draw(st.integers(0, 10**9)), "requests": draw(st.integers(0, 10**4))})
    for name in draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=3)):
        if draw(st.booleans()):
            raw[name] = draw(_FIELDS[name])
        else:
            raw.pop(name, None)
    return raw


@settings(max_examples=300, deadline=None)
@given(st.lists(raw_records(), min_size=1, max_size=20), st.sampled_from([T0, T0 + timedelta(hours=8, minutes=30)]))
def test_the_batch_validator_gives_validate_records_verdicts(raws, closed_before):
    expected = [verdict(raw, closed_before=closed_before) for raw in raws]
    batch = ingest.validate_batch(raws, provider_id=7, subjects=SUBJECTS, now=NOW, closed_before=closed_before)
    assert batch == expected


def test_a_measure_too_large_for_postgresql_is_rejected_on_its_own():
    result = verdict(record(tokens_in=2**63))
    assert isinstance(result, Rejection)
    assert (result.code, result.field) == ("invalid_measure", "tokens_in")
    assert isinstance(verdict(record(tokens_in=2**63 - 1)), Record)


@pytest.mark.parametrize("body", [b'{"records": [{"energy_wh": NaN}]}', b'{"records": ["\\ud800"]}'])
def test_bodies_postgresql_could_not_hold_are_refused_whole(body):
    with pytest.raises(BatchError) as error:
        parse_batch(body, "application/json")
    assert error.value.code == "invalid_json"

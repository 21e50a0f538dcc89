"""Hypothesis state machine over metering ingest: random batches of new, repeated, conflicting and invalid records,
sent in random splits; after every step each record is stored once, every verdict is what a sequential model of
"the first version of a record id stands" says, and the hourly rollups equal the sums of the stored records.

The model (``IngestModel.expect``) processes records one by one: a valid record whose id is unknown is
``accepted`` (and becomes the stored version), the same id with the stored content is a ``duplicate``, with other
content a ``conflict``; invalid records are ``rejected`` with their code. ``ingest.py`` promises that a record's
verdict does not depend on how the records are split into batches, so any split must give the model's verdicts.

The machine found that a record id sent twice in one batch after a conflicting copy was judged against the batch's
first copy instead of the stored version (fixed in ``usage_batch_ingest``; the case is pinned by the last test).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from accounts.models import Organization
from core.timeutils import parse_rfc3339
from metering import rollup, services, signing
from metering.ingest import LeaseFacts
from metering.models import SignedBatch, UsageDirtyHour, UsageHour, UsageRecord, UsageRecordKey

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
PATH = "/api/v1/metering/records"
ACCELERATORS = 8
MEASURES = ("accelerator_seconds", "energy_wh", "tokens_in", "tokens_out", "requests")

# The invalid records the machine sends, each with the code the service must give it.
INVALID = {
    "window_too_long": ("window_too_long", lambda r: r | {"window_end": _shift(r["window_start"], 61 * 60)}),
    "window_reversed": ("invalid_window", lambda r: r | {"window_end": r["window_start"]}),
    "negative_energy": ("negative_value", lambda r: r | {"energy_wh": -1}),
    "over_capacity": ("over_capacity", lambda r: r | {"accelerator_seconds": 10**9}),
    "unknown_lease": ("unknown_lease", lambda r: r | {"lease_id": str(uuid.uuid4())}),
    "bad_measure": ("invalid_measure", lambda r: r | {"tokens_in": "many"}),
    "in_future": (
        "in_future",
        lambda r: r | {"window_start": (NOW + timedelta(hours=1)).isoformat(), "window_end": _later(NOW, 2)},
    ),
}


def _shift(text: str, seconds: int) -> str:
    return (parse_rfc3339(text) + timedelta(seconds=seconds)).isoformat()


def _later(at: datetime, hours: int) -> str:
    return (at + timedelta(hours=hours)).isoformat()


@st.composite
def contents(draw: Any) -> dict[str, Any]:
    """A valid record's content (without id): a window of 1 to 60 minutes in the last day, which may straddle an
    hour boundary, and measures within the lease's capacity."""
    start = NOW - timedelta(hours=26) + timedelta(minutes=draw(st.integers(0, 24 * 60)))
    minutes = draw(st.integers(1, 60))
    content: dict[str, Any] = {
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(minutes=minutes)).isoformat(),
        "accelerator_seconds": draw(st.integers(0, ACCELERATORS * minutes * 60)),
        "tokens_in": draw(st.integers(0, 10**6)),
        "tokens_out": draw(st.integers(0, 10**6)),
        "requests": draw(st.integers(0, 1000)),
    }
    energy = draw(st.one_of(st.none(), st.integers(0, 50_000)))
    if energy is not None:
        content["energy_wh"] = energy
    utilisation = draw(st.one_of(st.none(), st.integers(0, 100)))
    if utilisation is not None:
        content["avg_utilization_pct"] = utilisation
    return content


def _measures(record: dict[str, Any]) -> tuple:
    """A record's stored figures as the database keeps them (utilisation in basis points, energy maybe null)."""
    utilisation = record.get("avg_utilization_pct")
    return (
        parse_rfc3339(record["window_start"]),
        parse_rfc3339(record["window_end"]),
        record["accelerator_seconds"],
        None if utilisation is None else round(utilisation * 100),
        record.get("energy_wh"),
        record["tokens_in"],
        record["tokens_out"],
        record["requests"],
    )


class IngestModel:
    """The specification: records processed one by one, the first version of an id stands."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}

    def expect(self, item: dict[str, Any]) -> tuple[str, str | None]:
        if item["_invalid"]:
            return "rejected", INVALID[item["_invalid"]][0]
        record = item["record"]
        first = self.stored.get(record["record_id"])
        if first is None:
            self.stored[record["record_id"]] = record
            return "accepted", None
        return ("duplicate", None) if _measures(first) == _measures(record) else ("conflict", "conflict")


class IngestMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.model = IngestModel()
        self.ids = 0
        self.batches: list[int] = []

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    @initialize()
    def provider(self) -> None:
        services.usage_partitions_ensure(months_ahead=0, now=NOW)
        self.org = Organization.objects.create(name=f"stateful provider {uuid.uuid4().hex[:6]}", kind="provider")
        self.key = signing.load_private_key(signing.generate_private_key_pem())
        services.signing_key_register(
            organization=self.org, name="agent", public_key=signing.public_key_text(signing.public_raw_of(self.key))
        )
        lease = LeaseFacts(
            str(uuid.uuid4()), self.org.pk, ACCELERATORS, NOW - timedelta(days=3), NOW + timedelta(days=3)
        )
        self.lease = lease
        self.subjects = {lease.public_id: lease}

    def _record(self, record_id: str, content: dict[str, Any]) -> dict[str, Any]:
        return {"record_id": record_id, "lease_id": self.lease.public_id, **content}

    def _send(self, records: list[dict[str, Any]]) -> list[tuple[str | None, str, str | None]]:
        body = json.dumps({"records": records}).encode()
        headers = signing.signed_headers(self.key, int(time.time()), "POST", PATH, body)
        result = services.usage_batch_ingest(
            organization=self.org,
            method="POST",
            path=PATH,
            body=body,
            content_type="application/json",
            timestamp=headers[signing.TIMESTAMP_HEADER],
            signature=headers[signing.SIGNATURE_HEADER],
            subjects=self.subjects,
            now=NOW,
        )
        self.batches.append(result.batch_id)
        return [(r.record_id, r.status, r.code) for r in result.results]

    @rule(data=st.data())
    def send(self, data: st.DataObject) -> None:
        """One step: a list of records, cut into consecutive batches at random points, sent in order."""
        items: list[dict[str, Any]] = []
        for _ in range(data.draw(st.integers(1, 12), label="size")):
            sent_now = [i["record"] for i in items if not i["_invalid"]]
            kinds = ["new", "invalid"]
            stored_ids = list(self.model.stored)
            if stored_ids:
                kinds += ["repeat", "conflict"]
            if sent_now:
                kinds += ["again"]
            kind = data.draw(st.sampled_from(kinds), label="kind")
            if kind == "new":
                self.ids += 1
                item = {"record": self._record(f"rec-{self.ids}", data.draw(contents())), "_invalid": None}
            elif kind == "invalid":
                self.ids += 1
                reason = data.draw(st.sampled_from(sorted(INVALID)), label="invalid")
                record = INVALID[reason][1](self._record(f"bad-{self.ids}", data.draw(contents())))
                item = {"record": record, "_invalid": reason}
            elif kind == "repeat":
                record = self.model.stored[data.draw(st.sampled_from(sorted(stored_ids)), label="repeat")]
                item = {"record": dict(record), "_invalid": None}
            elif kind == "conflict":
                record_id = data.draw(st.sampled_from(sorted(stored_ids)), label="conflict")
                changed = data.draw(contents().filter(lambda c, r=record_id: self._differs(r, c)), label="changed")
                item = {"record": self._record(record_id, changed), "_invalid": None}
            else:  # the same record again inside this step: exactly, or changed (a conflict)
                record = data.draw(st.sampled_from(sent_now))
                if data.draw(st.booleans(), label="changed"):
                    changed = data.draw(contents().filter(lambda c, r=record: _measures({**r, **c}) != _measures(r)))
                    record = self._record(record["record_id"], changed)
                item = {"record": dict(record), "_invalid": None}
            items.append(item)
        cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(items) - 1)), max_size=3), label="cuts")))
        bounds = [0, *[c for c in cuts if c < len(items)], len(items)]
        for start, end in itertools.pairwise(bounds):
            chunk = items[start:end]
            expected = [self.model.expect(item) for item in chunk]
            got = self._send([item["record"] for item in chunk])
            assert [(status, code) for _id, status, code in got] == expected, (chunk, got, expected)
            assert [record_id for record_id, _s, _c in got] == [item["record"]["record_id"] for item in chunk]

    def _differs(self, record_id: str, content: dict[str, Any]) -> bool:
        stored = self.model.stored[record_id]
        return _measures(stored) != _measures({**stored, **content})

    @rule()
    def roll_up(self) -> None:
        """The periodic rollup job, whenever Hypothesis decides it runs."""
        while services.usage_rollup_dirty(now=NOW):
            pass

    @invariant()
    def every_record_stored_once_as_first_sent(self) -> None:
        if not hasattr(self, "org"):
            return
        rows = list(
            UsageRecord.objects.filter(provider=self.org).values_list(
                "record_id",
                "window_start",
                "window_end",
                "accelerator_seconds",
                "utilization_bp",
                "energy_wh",
                "tokens_in",
                "tokens_out",
                "requests",
            )
        )
        ids = [row[0] for row in rows]
        assert len(ids) == len(set(ids))  # once each
        assert UsageRecordKey.objects.filter(provider=self.org).count() == len(ids)
        assert {row[0]: row[1:] for row in rows} == {
            record_id: _measures(record) for record_id, record in self.model.stored.items()
        }
        # Nothing half-applied: each batch row counts exactly the records stored with it.
        per_batch = Counter(UsageRecord.objects.filter(provider=self.org).values_list("batch_id", flat=True))
        for batch in SignedBatch.objects.filter(organization=self.org):
            assert batch.records_accepted == per_batch.get(batch.pk, 0)
            outcome = batch.outcome
            assert outcome["accepted"] == batch.records_accepted
            assert sum(outcome[s] for s in ("accepted", "duplicate", "conflict")) + sum(
                outcome["rejected"].values()
            ) == (batch.records_total)

    @invariant()
    def rollups_equal_the_stored_records(self) -> None:
        if not hasattr(self, "org") or UsageDirtyHour.objects.filter(subject_id=self.lease.public_id).exists():
            return  # the rollup job has not run since the last ingest: nothing to compare yet
        hours = {
            h.hour_start: h for h in UsageHour.objects.filter(subject_id=self.lease.public_id).exclude(record_count=0)
        }
        expected = rollup.rollup(rollup.RawUsage(*_measures(r)) for r in self.model.stored.values())
        assert set(hours) == set(expected)
        for hour, totals in expected.items():
            row = hours[hour]
            assert row.record_count == totals.record_count
            assert row.accelerator_seconds == totals.accelerator_seconds
            assert row.energy_wh == totals.energy_wh
            assert row.records_without_energy == totals.records_without_energy
            assert (row.tokens_in, row.tokens_out, row.requests) == (
                totals.tokens_in,
                totals.tokens_out,
                totals.requests,
            )
            assert row.utilization_bp == totals.utilization_bp
        # Independently of rollup.rollup: the hours' sums are the records' sums (nothing lost in the split).
        sums = UsageHour.objects.filter(subject_id=self.lease.public_id).aggregate(
            **{name: Sum(name) for name in MEASURES}
        )
        for name in MEASURES:
            assert (sums[name] or 0) == sum(r.get(name) or 0 for r in self.model.stored.values()), name


@pytest.mark.django_db
@pytest.mark.slow
def test_ingest_verdicts_and_rollups_hold_under_any_sequence_and_split():
    run_state_machine_as_test(
        IngestMachine,
        settings=settings(
            max_examples=20, stateful_step_count=10, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )


@pytest.mark.django_db
def test_a_repeated_id_after_a_conflicting_copy_in_one_batch_is_judged_against_the_stored_version(make_org):
    from tests.metering.test_usage_ingest import new_provider, records, send

    provider = new_provider(make_org)
    (stored,) = records(provider, 1)
    send(provider, [stored])
    changed = dict(stored, energy_wh=1)
    together = send(provider, [changed, stored, changed])
    assert [r.status for r in together.results] == ["conflict", "duplicate", "conflict"]

"""Parsing and validation of usage-record batches. Pure: no ORM, no Django.

A batch is JSON ``{"records": [...]}`` or a CloudEvents 1.0 JSON batch (``application/cloudevents-batch+json``:
a list of events whose ``id`` is the record id and whose ``data`` holds the measures). Each record is checked
on its own against the facts of the lease (or token contract) it names; the verdict of one record never
depends on the others in the batch, so any split, shuffle or replay of the same records gives the same
verdicts (the storage layer then decides ``accepted`` / ``duplicate`` / ``conflict`` by record id).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any

import orjson

from core.timeutils import HOUR, parse_rfc3339

MAX_RECORDS = 10_000
MAX_RECORD_ID_LENGTH = 128
FUTURE_SKEW = timedelta(minutes=5)
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
# The measures a record may carry, all non-negative integers except the utilisation percentage.
INTEGER_MEASURES = ("accelerator_seconds", "energy_wh", "tokens_in", "tokens_out", "requests")
UTILISATION = "avg_utilization_pct"
# The measures are stored as PostgreSQL bigint: a larger number is refused per record, not by a failed COPY.
MAX_MEASURE = 2**63 - 1


class BatchError(ValueError):
    """The whole request is unusable (400 or 413); nothing is stored."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class LeaseFacts:
    """What the ingest needs to know about a lease or token contract, looked up by its public id."""

    public_id: str
    provider_id: int
    accelerators: int  # 0 for a token contract
    start: datetime
    end: datetime
    kind: str = "lease"  # or "contract"


@dataclass(slots=True)  # not frozen: frozen costs an object.__setattr__ per field, 10x to build; never mutated
class Record:
    record_id: str
    subject_id: str  # the lease or contract public id
    subject_kind: str
    window_start: datetime
    window_end: datetime
    accelerator_seconds: int
    utilization_bp: int | None  # average utilisation in basis points (0..10,000 = 0..100%)
    energy_wh: int | None
    tokens_in: int
    tokens_out: int
    requests: int
    content_hash: str


@dataclass(frozen=True, slots=True)
class Rejection:
    record_id: str | None
    code: str
    field: str | None
    message: str


def parse_batch(body: bytes, content_type: str) -> list[Any]:
    """The list of raw records in a request body; BatchError for an unusable body."""
    try:
        # orjson: ~4x faster than json on a 10,000-record body; stricter (no NaN/Infinity literals, no lone
        # surrogates, integers within 64 bits), so a body PostgreSQL could not store is refused whole, up front.
        payload = orjson.loads(body)
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        raise BatchError("invalid_json", "The body is not valid JSON.") from None
    if content_type.split(";")[0].strip().lower() == CLOUDEVENTS_BATCH:
        if not isinstance(payload, list):
            raise BatchError("invalid_batch", "A CloudEvents batch is a JSON array of events.")
        raw = [_from_cloudevent(event) for event in payload]
    else:
        if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
            raise BatchError("invalid_batch", 'Send {"records": [...]}.')
        raw = payload["records"]
    if not raw:
        raise BatchError("empty_batch", "The batch has no records.")
    if len(raw) > MAX_RECORDS:
        raise BatchError("batch_too_large", f"At most {MAX_RECORDS} records per request.", status=413)
    return raw


def _from_cloudevent(event: Any) -> Any:
    if not isinstance(event, dict) or "data" not in event or not isinstance(event["data"], dict):
        return event  # validate_record rejects it with a precise reason
    merged = dict(event["data"])
    merged.setdefault("record_id", event.get("id"))
    return merged


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def content_hash(fields: Mapping[str, Any]) -> str:
    """Hash of a record's normalised content: same id + same hash = duplicate, other hash = conflict."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _json_value(value: int | str | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return encode_basestring_ascii(value)  # what json.dumps writes for a str (ensure_ascii)
    return str(int(value))


def record_content_hash(
    *, subject: str, kind: str, start: str, end: str, measures: Mapping[str, int], energy: int | None, util: int | None
) -> str:
    """``content_hash`` of a record's normalised fields, without building and sorting a dict: the same bytes as
    ``json.dumps(..., sort_keys=True, separators=(",", ":"))`` (tests/metering/test_ingest.py proves it), about
    five times faster, which matters at 10,000 records a request."""
    canonical = (
        f'{{"accelerator_seconds":{measures["accelerator_seconds"]:d},"end":{_json_value(end)},'
        f'"energy_wh":{_json_value(energy)},"kind":{_json_value(kind)},"requests":{measures["requests"]:d},'
        f'"start":{_json_value(start)},"subject":{_json_value(subject)},"tokens_in":{measures["tokens_in"]:d},'
        f'"tokens_out":{measures["tokens_out"]:d},"util":{_json_value(util)}}}'
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@lru_cache(maxsize=8192)
def _instant(text: str) -> tuple[datetime, str]:
    """A window bound parsed once per batch (records share their windows): (UTC datetime, its isoformat)."""
    value = parse_rfc3339(text)
    return value, value.isoformat()


def validate_record(
    raw: Any, *, provider_id: int, subjects: Mapping[str, LeaseFacts], now: datetime, closed_before: datetime
) -> Record | Rejection:
    """One record's verdict. ``closed_before``: windows ending at or before it belong to closed periods."""
    if not isinstance(raw, dict):
        return Rejection(None, "invalid_record", None, "Each record is a JSON object.")
    record_id = raw.get("record_id")
    if (
        not isinstance(record_id, str)
        or not record_id.strip()
        or len(record_id) > MAX_RECORD_ID_LENGTH
        or "\x00" in record_id  # PostgreSQL text cannot hold NUL
    ):
        return Rejection(None, "invalid_record_id", "record_id", "record_id is a non-empty string (at most 128).")

    def reject(code: str, field: str | None, message: str) -> Rejection:
        return Rejection(record_id, code, field, message)

    lease_id, contract_id = raw.get("lease_id"), raw.get("contract_id")
    if bool(lease_id) == bool(contract_id):
        return reject("subject_required", "lease_id", "Give exactly one of lease_id or contract_id.")
    subject_id = str(lease_id or contract_id)
    subject = subjects.get(subject_id)
    # A foreign lease is reported exactly like an unknown one: its existence is not ours to reveal.
    if subject is None or subject.provider_id != provider_id or subject.kind != ("lease" if lease_id else "contract"):
        return reject("unknown_lease", "lease_id" if lease_id else "contract_id", "No such lease or contract of yours.")

    try:
        start, start_iso = _instant(str(raw.get("window_start", "")))
        end, end_iso = _instant(str(raw.get("window_end", "")))
    except (ValueError, TypeError):
        return reject("invalid_window", "window_start", "window_start and window_end are RFC 3339 UTC timestamps.")
    if end <= start:
        return reject("invalid_window", "window_end", "window_end must be after window_start.")
    if end - start > HOUR:
        return reject("window_too_long", "window_end", "A record covers at most one hour.")
    if start < subject.start or end > subject.end:
        return reject("outside_lease", "window_start", "The window is outside the lease.")
    if end > now + FUTURE_SKEW:
        return reject("in_future", "window_end", "The window ends in the future.")
    if end <= closed_before:
        return reject("too_late", "window_end", "The billing period of this window is closed.")

    measures: dict[str, int] = {}
    for name in INTEGER_MEASURES:
        value = raw.get(name, 0)
        number = _int(value)
        if number is None:
            return reject("invalid_measure", name, f"{name} must be a whole number.")
        if number < 0:
            return reject("negative_value", name, f"{name} cannot be negative.")
        if number > MAX_MEASURE:
            return reject("invalid_measure", name, f"{name} is at most {MAX_MEASURE}.")
        measures[name] = number
    energy = raw.get("energy_wh")
    utilisation_raw = raw.get(UTILISATION)
    utilisation: int | None = None
    if utilisation_raw is not None:
        if isinstance(utilisation_raw, bool) or not isinstance(utilisation_raw, (int, float)):
            return reject("invalid_measure", UTILISATION, "avg_utilization_pct is a number from 0 to 100.")
        if not 0 <= utilisation_raw <= 100:
            return reject(
                "negative_value" if utilisation_raw < 0 else "invalid_measure",
                UTILISATION,
                "avg_utilization_pct is a number from 0 to 100.",
            )
        utilisation = round(utilisation_raw * 100)  # basis points
    capacity = subject.accelerators * int((end - start).total_seconds())
    if subject.kind == "lease" and measures["accelerator_seconds"] > capacity:
        return reject(
            "over_capacity",
            "accelerator_seconds",
            f"More accelerator-seconds than the lease's {subject.accelerators} accelerators hold in the window.",
        )

    energy_value = None if energy is None else measures["energy_wh"]
    return Record(
        record_id=record_id,
        subject_id=subject_id,
        subject_kind=subject.kind,
        window_start=start,
        window_end=end,
        accelerator_seconds=measures["accelerator_seconds"],
        utilization_bp=utilisation,
        energy_wh=energy_value,
        tokens_in=measures["tokens_in"],
        tokens_out=measures["tokens_out"],
        requests=measures["requests"],
        content_hash=record_content_hash(
            subject=subject_id,
            kind=subject.kind,
            start=start_iso,
            end=end_iso,
            measures=measures,
            energy=energy_value,
            util=utilisation,
        ),
    )


_ABSENT = object()


def validate_batch(
    raws: Sequence[Any],
    *,
    provider_id: int,
    subjects: Mapping[str, LeaseFacts],
    now: datetime,
    closed_before: datetime,
) -> list[Record | Rejection]:
    """``validate_record`` of every record, in order: the same verdicts, about ten times faster.

    Records of one batch share their subjects and windows, so what depends only on a subject or a window (its
    usability, parsed bounds, JSON form in the content hash, future / closed-period checks) is worked out once
    per batch. A record goes through one tight loop of exact-type checks; anything that loop does not accept as
    plainly valid (every rejection, and unusual but valid forms) is judged by ``validate_record`` itself, so the
    verdicts cannot drift apart (tests/metering/test_ingest.py compares both on generated records)."""
    # Per usable subject: its facts, its id and kind as JSON (for the content hash), and the most accelerator-seconds
    # per second it can hold (None: a token contract, no limit).
    usable: dict[str, dict[str, tuple[LeaseFacts, str, str, int | None]]] = {"lease": {}, "contract": {}}
    for key, facts in subjects.items():
        if facts.provider_id == provider_id and facts.kind in usable:
            limit = facts.accelerators if facts.kind == "lease" else None
            usable[facts.kind][key] = (facts, _json_value(key), _json_value(facts.kind), limit)
    leases, contracts = usable["lease"], usable["contract"]
    latest_end = now + FUTURE_SKEW
    # (window_start text, window_end text) -> (start, end, seconds, start JSON, end JSON), or None: not plain.
    windows: dict[tuple[Any, Any], tuple[datetime, datetime, int, str, str] | None] = {}
    out: list[Record | Rejection] = []
    append = out.append
    for raw in raws:
        # A try block costs nothing when nothing is raised: a record that is not a plain valid one raises
        # _Slow (or a KeyError/TypeError from a shape the loop does not expect) and is judged the slow way.
        try:
            if type(raw) is not dict:
                raise _Slow
            get: Any = raw.get
            record_id = get("record_id")
            if (
                type(record_id) is not str
                or not 0 < len(record_id) <= MAX_RECORD_ID_LENGTH
                or "\x00" in record_id
                or not record_id.strip()
            ):
                raise _Slow
            lease_id = get("lease_id")
            if lease_id is not None:
                if get("contract_id") is not None or type(lease_id) is not str:
                    raise _Slow
                facts, subject_json, kind_json, per_second = leases[lease_id]
                subject_id = lease_id
            else:
                subject_id = get("contract_id")
                if type(subject_id) is not str:
                    raise _Slow
                facts, subject_json, kind_json, per_second = contracts[subject_id]
            window_key = (get("window_start"), get("window_end"))
            try:
                window = windows[window_key]
            except KeyError:
                window = windows[window_key] = _plain_window(window_key, latest_end, closed_before)
            if window is None:
                raise _Slow
            start, end, seconds, start_json, end_json = window
            if start < facts.start or end > facts.end:
                raise _Slow
            seconds_used = get("accelerator_seconds", 0)
            energy = get("energy_wh", _ABSENT)
            tokens_in = get("tokens_in", 0)
            tokens_out = get("tokens_out", 0)
            requests = get("requests", 0)
            if energy is _ABSENT:
                energy = None
            elif type(energy) is not int or not 0 <= energy <= MAX_MEASURE:
                raise _Slow
            if (
                type(seconds_used) is not int
                or type(tokens_in) is not int
                or type(tokens_out) is not int
                or type(requests) is not int
                or not 0 <= seconds_used <= MAX_MEASURE
                or not 0 <= tokens_in <= MAX_MEASURE
                or not 0 <= tokens_out <= MAX_MEASURE
                or not 0 <= requests <= MAX_MEASURE
                or (per_second is not None and seconds_used > per_second * seconds)
            ):
                raise _Slow
            utilisation = get(UTILISATION)
            if utilisation is not None:
                if (type(utilisation) is not float and type(utilisation) is not int) or not 0 <= utilisation <= 100:
                    raise _Slow
                utilisation = round(utilisation * 100)
            canonical = (
                f'{{"accelerator_seconds":{seconds_used},"end":{end_json},'
                f'"energy_wh":{"null" if energy is None else energy},"kind":{kind_json},"requests":{requests},'
                f'"start":{start_json},"subject":{subject_json},"tokens_in":{tokens_in},'
                f'"tokens_out":{tokens_out},"util":{"null" if utilisation is None else utilisation}}}'
            )
            append(
                Record(
                    record_id,
                    subject_id,
                    facts.kind,
                    start,
                    end,
                    seconds_used,
                    utilisation,
                    energy,
                    tokens_in,
                    tokens_out,
                    requests,
                    hashlib.sha256(canonical.encode()).hexdigest(),
                )
            )
        except (_Slow, KeyError, TypeError):
            append(
                validate_record(raw, provider_id=provider_id, subjects=subjects, now=now, closed_before=closed_before)
            )
    return out


class _Slow(Exception):
    """This record is not plainly valid: judge it with validate_record."""


def _plain_window(
    key: tuple[Any, Any], latest_end: datetime, closed_before: datetime
) -> tuple[datetime, datetime, int, str, str] | None:
    """A window's facts when it passes every check that does not depend on the record's subject, else None."""
    start_text, end_text = key
    if type(start_text) is not str or type(end_text) is not str:
        return None
    try:
        start, start_iso = _instant(start_text)
        end, end_iso = _instant(end_text)
    except (ValueError, TypeError):
        return None
    if end <= start or end - start > HOUR or end > latest_end or end <= closed_before:
        return None
    return start, end, int((end - start).total_seconds()), _json_value(start_iso), _json_value(end_iso)

"""Demo usage (``manage.py seed_demo``): three weeks of signed usage for the demo leases, a few anomalies, one dispute.

Usage goes through the real ingest service (signature check, validation, COPY, dedupe) with a demo signing key
derived from a fixed seed, one signed batch per lease-day, exactly as ``suanli-agent run`` would send it minus
HTTP. Anomalies: an outage of several hours on one lease (missing hours -> availability below 99 %, an SLA
credit), a day without energy readings (estimated from TDP), and one open dispute over the outage.
Idempotent: record ids are deterministic, so a second run only meets duplicates.

The market cannot sell windows in the past (by design), so when the market demo has no lease that started
already, two backdated demo leases are written here directly (``_backdated_demo_leases``), with their offer,
bid and accelerator allocations, so that the exclusion constraint still guards them.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import transaction

from accounts.models import Organization, OrganizationKind, User
from core.timeutils import HOUR, Window, floor_hour, utcnow
from marketplace import demo as market_demo
from marketplace.models import Lease, Pool, PoolStatus
from metering import agent, services, signing
from metering.models import Dispute, SigningKey, UsageHour

DEMO_DAYS = 21
DEMO_KEY_SEED = hashlib.sha256(b"suanli demo metering key").digest()
PATH = "/api/v1/metering/records"
OUTAGE_HOURS = range(30, 36)  # hours after the first lease's start: six hours without usage
NO_ENERGY_DAY = 3  # the second lease's agent lost its power readings that day


def _private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(DEMO_KEY_SEED)


def _owner(organization: Organization) -> User | None:
    membership = organization.memberships.select_related("user").order_by("id").first()
    return membership.user if membership else None


def _ensure_key(provider: Organization) -> None:
    raw = signing.public_raw_of(_private_key())
    if not SigningKey.objects.filter(organization=provider, fingerprint=signing.fingerprint(raw)).exists():
        services.signing_key_register(
            organization=provider,
            name="demo agent (rack A3)",
            public_key=signing.public_key_text(raw),
            actor_label="demo",
        )


def _demo_leases(now: datetime) -> list[Lease]:
    leases = list(
        Lease.objects.filter(
            provider__memberships__user__email__endswith=".demo",
            buyer__memberships__user__email__endswith=".demo",
            status__in=["active", "completed", "disputed"],
            start__lt=floor_hour(now) - timedelta(days=2),
        )
        .select_related("pool__accelerator_model", "provider", "buyer")
        .distinct()
        .order_by("start", "id")[:4]
    )
    return leases or _backdated_demo_leases(now)


def _backdated_demo_leases(now: datetime) -> list[Lease]:
    """Two leases that began DEMO_DAYS ago on listed demo pools (see the module docstring for why)."""
    buyers = list(
        Organization.objects.filter(kind=OrganizationKind.BUYER, memberships__user__email__endswith=".demo")
        .distinct()
        .order_by("id")[:2]
    )
    pools = list(
        Pool.objects.filter(status=PoolStatus.LISTED, organization__memberships__user__email__endswith=".demo")
        .exclude(accelerator_model__tdp_w=None)
        .select_related("organization", "accelerator_model")
        .distinct()
        .order_by("id")[:2]
    )
    if not buyers or not pools:
        return []
    start = floor_hour(now) - timedelta(days=DEMO_DAYS)
    leases = []
    for index, (pool, accelerators, days) in enumerate(
        zip(pools, (8, 4), (DEMO_DAYS + 9, DEMO_DAYS - 2), strict=False)
    ):
        buyer = buyers[index % len(buyers)]
        end = start + timedelta(days=days)
        price = Decimal("18.50") if index == 0 else Decimal("9.80")
        lease = market_demo.backdated_lease(
            buyer=buyer, pool=pool, accelerators=accelerators, start=start, end=end, price=price, now=now
        )
        leases.append(lease)
    return leases


def _records(lease: Lease, index: int, day_start: datetime, day_end: datetime) -> list[dict[str, object]]:
    source = agent.SimulatorSource(
        utilization_pct=78 if index == 0 else 55,
        tdp_w=lease.pool.accelerator_model.tdp_w or 500,
        seed=f"demo-{lease.public_id}",
    )
    mapping = agent.LeaseMap(str(lease.public_id), tuple(range(lease.accelerators)))
    out = []
    for start, end in agent.windows_between(day_start, day_end, 60):
        offset = int((start - lease.start) / HOUR)
        if index == 0 and offset in OUTAGE_HOURS:
            continue  # the outage: the agent had nothing to report
        usage = [source.measure(start, end, d) for d in mapping.devices]
        record = agent.build_record(mapping, start, end, usage)
        if index == 0 and offset == OUTAGE_HOURS.stop:
            record["accelerator_seconds"] = int(record["accelerator_seconds"]) // 2  # half the cards back
        if index == 1 and (start - lease.start).days == NO_ENERGY_DAY:
            record.pop("energy_wh", None)
        out.append(record)
    return out


def signed_usage(lease: Lease, *, now: datetime, skip_hours: range = range(0)) -> None:
    """A lease's usage as its provider's agent would have sent it: one signed batch per lease-day, each received
    shortly after its day (so inside its billing period), the hours ``skip_hours`` after the start left out (an
    outage), then rolled up. For demos of earlier months (billing's); idempotent like ``seed``."""
    services.usage_partitions_ensure(months_ahead=2, now=lease.start)
    _ensure_key(lease.provider)
    day, end = lease.start, min(lease.end, floor_hour(now))
    while day < end:
        day_end = min(day + timedelta(days=1), end)
        records = [
            r
            for r in _records(lease, -1, day, day_end)
            if (datetime.fromisoformat(str(r["window_start"])) - lease.start) // HOUR not in skip_hours
        ]
        if records:
            _send(lease.provider, records, now=min(day_end + timedelta(minutes=10), now))
        day = day_end
    while services.usage_rollup_dirty(now=now):
        pass


def _send(provider: Organization, records: list[dict[str, object]], now: datetime) -> None:
    body = json.dumps({"records": records}, separators=(",", ":")).encode()
    headers = signing.signed_headers(_private_key(), int(time.time()), "POST", PATH, body)
    services.usage_batch_ingest(
        organization=provider,
        method="POST",
        path=PATH,
        body=body,
        content_type="application/json",
        timestamp=headers[signing.TIMESTAMP_HEADER],
        signature=headers[signing.SIGNATURE_HEADER],
        now=now,
    )


def seed() -> None:
    now = utcnow()
    with transaction.atomic():
        leases = _demo_leases(now)
    if not leases:
        return
    services.usage_partitions_ensure(months_ahead=2, now=min(lease.start for lease in leases))
    services.usage_partitions_ensure(months_ahead=2, now=now)
    until = floor_hour(now)
    for index, lease in enumerate(leases):
        _ensure_key(lease.provider)
        day = lease.start
        end = min(lease.end, until)
        while day < end:
            day_end = min(day + timedelta(days=1), end)
            records = _records(lease, index, day, day_end)
            if records:
                # Sent as the agent would have, shortly after the day: inside its billing period, not in the future.
                _send(lease.provider, records, now=min(day_end + timedelta(minutes=10), now))
            day = day_end
    # The periodic rollup (a worker, every 10 s) would do this; the demo does it now, then reconciles every
    # elapsed hour, including those without usage.
    while services.usage_rollup_dirty(now=now):
        pass
    for lease in leases:
        services.lease_hours_reconcile(
            window=Window(lease.start, min(lease.end, until)), lease_public_ids=[str(lease.public_id)], now=now
        )
    first = Lease.objects.get(pk=leases[0].pk)
    disputed_until = first.start + (OUTAGE_HOURS.stop + 1) * HOUR
    fits = disputed_until <= min(first.end, now)
    if fits and not Dispute.objects.filter(lease=first).exists() and first.status in ("active", "completed"):
        services.dispute_open(
            organization=first.buyer,
            lease=first,
            actor=_owner(first.buyer),
            now=now,
            data=services.DisputeInput(
                period_start=first.start + OUTAGE_HOURS.start * HOUR,
                period_end=disputed_until,
                reason="训练任务在这段时间内中断，节点不可达。/ Our training job stalled; the nodes were unreachable.",
                observed_downtime_minutes=400,
                observations="nvidia-smi: No devices were found (02:14–08:20 UTC+8); NCCL timeout in rank 3.",
            ),
        )
    if len(leases) > 1:
        _observe(Lease.objects.get(pk=leases[1].pk), until=until, now=now)


def _observe(lease: Lease, *, until: datetime, now: datetime) -> None:
    """The second lease's buyer posts its own measurements for the last day: within 1.5 % of the reports, so
    they open nothing (a wider gap would open a dispute by itself)."""
    start = max(floor_hour(lease.start), min(lease.end, until) - timedelta(hours=24))
    reported = UsageHour.objects.filter(
        subject_kind="lease", subject_id=lease.public_id, hour_start__gte=start, hour_start__lt=until
    ).values_list("hour_start", "accelerator_seconds")
    observations = [
        services.ObservationInput(str(lease.public_id), hour, seconds * 985 // 1000, "dcgm-exporter")
        for hour, seconds in reported
    ]
    if observations and lease.status in services.OBSERVABLE_STATUSES:
        services.usage_observations_submit(organization=lease.buyer, observations=observations, now=now)

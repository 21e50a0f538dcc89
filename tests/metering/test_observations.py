"""Buyers' own observations: stored per lease-hour, idempotent; a clear gap to the provider's reports opens a
dispute by itself (issue 5: "a gap above a threshold opens a dispute")."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from core.errors import ApplicationError, ValidationFailed
from core.timeutils import HOUR, floor_hour, utcnow
from marketplace.models import Lease
from metering import services
from metering.models import Dispute, UsageHour, UsageObservation
from tests.marketplace.factories import make_lease

FULL_HOUR = 4 * 3600  # the lease has 4 accelerators


@pytest.fixture
def lease(make_org):
    """Four accelerators for 12 hours from 6 hours ago; the provider reported full hours 0-5."""
    start = floor_hour(utcnow()) - timedelta(hours=6)
    lease = make_lease(
        make_org("provider"), make_org("buyer"), accelerators=4, start=start, end=start + 12 * HOUR, status="active"
    )
    for i in range(6):
        report(lease, i, FULL_HOUR)
    return lease


def report(lease, hour_index, seconds):
    UsageHour.objects.update_or_create(
        subject_id=lease.public_id,
        hour_start=lease.start + hour_index * HOUR,
        defaults={
            "provider_id": lease.provider_id,
            "subject_kind": "lease",
            "record_count": 1,
            "accelerator_seconds": seconds,
            "energy_wh": 1000,
            "records_without_energy": 0,
            "tokens_in": 0,
            "tokens_out": 0,
            "requests": 0,
        },
    )


def observe(lease, *pairs, note=""):
    return [
        services.ObservationInput(str(lease.public_id), lease.start + i * HOUR, seconds, note) for i, seconds in pairs
    ]


def submit(lease, *pairs, **kwargs):
    return services.usage_observations_submit(organization=lease.buyer, observations=observe(lease, *pairs), **kwargs)


@pytest.mark.django_db
def test_observations_that_agree_open_nothing(lease):
    outcome = submit(lease, (0, FULL_HOUR), (1, FULL_HOUR - 600))  # 600 s < 5 % of 14,400
    assert [r.status for r in outcome.results] == ["accepted", "accepted"]
    assert outcome.disputes == []
    assert UsageObservation.objects.filter(lease=lease).count() == 2
    assert Lease.objects.get(pk=lease.pk).status == "active"


@pytest.mark.django_db
def test_a_clear_gap_opens_a_dispute_over_those_hours(lease):
    outcome = submit(lease, (0, FULL_HOUR), (2, 3600), (4, 7200))
    [dispute] = outcome.disputes
    assert dispute.opened_automatically
    assert (dispute.period_start, dispute.period_end) == (lease.start + 2 * HOUR, lease.start + 5 * HOUR)
    assert dispute.claimed_accelerator_seconds == (FULL_HOUR - 3600) + (FULL_HOUR - 7200)
    assert Lease.objects.get(pk=lease.pk).status == "disputed"
    linked = UsageObservation.objects.filter(dispute=dispute).values_list("hour_start", flat=True)
    assert sorted(linked) == [lease.start + 2 * HOUR, lease.start + 4 * HOUR]
    # The same observations again: duplicates, no second dispute.
    again = submit(lease, (2, 3600), (4, 7200))
    assert [r.status for r in again.results] == ["duplicate", "duplicate"]
    assert again.disputes == []
    assert Dispute.objects.filter(lease=lease).count() == 1


@pytest.mark.django_db
def test_another_figure_for_an_observed_hour_is_a_conflict(lease):
    submit(lease, (0, FULL_HOUR))
    outcome = submit(lease, (0, 100), (1, FULL_HOUR))
    assert [(r.status, r.code) for r in outcome.results] == [("conflict", "conflict"), ("accepted", "")]
    assert UsageObservation.objects.get(lease=lease, hour_start=lease.start).accelerator_seconds == FULL_HOUR


@pytest.mark.django_db
def test_reports_arriving_after_the_observation_open_the_dispute_in_the_periodic_job(lease):
    hour = 5
    UsageHour.objects.filter(subject_id=lease.public_id, hour_start=lease.start + hour * HOUR).delete()
    outcome = submit(lease, (hour, 0))
    assert outcome.disputes == []  # nothing reported yet for that hour: nothing to contest
    report(lease, hour, FULL_HOUR)
    services.lease_hours_reconcile_due()
    dispute = Dispute.objects.get(lease=lease)
    assert dispute.opened_automatically
    assert dispute.claimed_accelerator_seconds == FULL_HOUR
    services.lease_hours_reconcile_due()  # idempotent
    assert Dispute.objects.filter(lease=lease).count() == 1


@pytest.mark.django_db
def test_resolved_hours_are_not_disputed_again_but_new_ones_are(lease, make_user):
    [dispute] = submit(lease, (1, 0)).disputes
    staff = make_user(is_staff=True)
    services.dispute_resolve(dispute=dispute, actor=staff, buyer_favour=False)
    UsageObservation.objects.filter(dispute=dispute).update(dispute=None)  # even unlinked, the hour stays settled
    assert services.usage_observation_disputes_open() == []
    [second] = submit(lease, (3, 0)).disputes
    assert (second.period_start, second.period_end) == (lease.start + 3 * HOUR, lease.start + 4 * HOUR)


@pytest.mark.django_db
def test_bad_observations_are_refused_one_by_one_and_change_nothing(lease, make_org):
    other = make_lease(lease.provider, make_org("buyer"), accelerators=4, start=lease.start, end=lease.end)
    items = [
        services.ObservationInput(str(other.public_id), lease.start, 0),  # someone else's lease
        services.ObservationInput("not-a-uuid", lease.start, 0),
        services.ObservationInput(str(lease.public_id), lease.start + timedelta(minutes=30), 0),
        services.ObservationInput(str(lease.public_id), lease.start + 6 * HOUR, 0),  # the current hour
        services.ObservationInput(str(lease.public_id), lease.start - HOUR, 0),  # before the lease
        services.ObservationInput(str(lease.public_id), lease.start, FULL_HOUR + 1),
        services.ObservationInput(str(lease.public_id), lease.start, -1),
        services.ObservationInput(str(lease.public_id), lease.start + HOUR, 10),
        services.ObservationInput(str(lease.public_id), lease.start + HOUR, 10),
    ]
    outcome = services.usage_observations_submit(organization=lease.buyer, observations=items)
    assert [(r.status, r.code, r.field) for r in outcome.results] == [
        ("rejected", "unknown_lease", "lease_id"),
        ("rejected", "unknown_lease", "lease_id"),
        ("rejected", "whole_hours", "hour_start"),
        ("rejected", "in_future", "hour_start"),
        ("rejected", "outside_lease", "hour_start"),
        ("rejected", "above_contracted", "accelerator_seconds"),
        ("rejected", "negative_value", "accelerator_seconds"),
        ("accepted", "", ""),
        ("rejected", "duplicate_in_request", "hour_start"),
    ]
    assert list(UsageObservation.objects.values_list("hour_start", flat=True)) == [lease.start + HOUR]
    with pytest.raises(ApplicationError) as provider:
        services.usage_observations_submit(organization=lease.provider, observations=observe(lease, (0, 0)))
    assert provider.value.code == "not_a_buyer"
    with pytest.raises(ValidationFailed):
        services.usage_observations_submit(organization=lease.buyer, observations=[])


@pytest.mark.django_db(transaction=True)
def test_racing_submissions_store_each_hour_once_and_open_one_dispute(lease):
    barrier = threading.Barrier(3)
    statuses: list[list[str]] = []

    def worker():
        try:
            barrier.wait()
            statuses.append([r.status for r in submit(lease, (1, 0), (2, 0)).results])
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [["accepted", "accepted"], ["duplicate", "duplicate"], ["duplicate", "duplicate"]]
    assert UsageObservation.objects.filter(lease=lease).count() == 2
    assert Dispute.objects.filter(lease=lease).count() == 1


@pytest.mark.django_db
def test_api_takes_observations_from_the_buyer_only(lease, api_client_for):
    body = {
        "observations": [
            {
                "lease_id": str(lease.public_id),
                "hour_start": (lease.start + 2 * HOUR).isoformat(),
                "accelerator_seconds": 0,
            },
            {"lease_id": str(lease.public_id), "hour_start": "2026-01-01T00:30:00Z", "accelerator_seconds": 5},
        ]
    }
    buyer = api_client_for(lease.buyer, scopes=["metering:write", "market:read"])
    answer = buyer.post("/api/v1/metering/observations", body, format="json")
    assert answer.status_code == 200, answer.content
    payload = answer.json()
    assert payload["counts"] == {"accepted": 1, "duplicate": 0, "conflict": 0, "rejected": 1}
    assert payload["results"][1]["code"] == "whole_hours"
    assert payload["disputes_opened"][0]["claimed_accelerator_seconds"] == FULL_HOUR
    listed = buyer.get("/api/v1/metering/observations").json()
    assert [o["accelerator_seconds"] for o in listed] == [0]
    assert listed[0]["dispute_id"] == payload["disputes_opened"][0]["id"]
    bad = buyer.post("/api/v1/metering/observations", {"observations": [{"lease_id": "x"}]}, format="json")
    assert bad.status_code == 400
    provider = api_client_for(lease.provider, scopes=["metering:write", "market:read"])
    assert provider.post("/api/v1/metering/observations", body, format="json").status_code == 403
    read_only = api_client_for(lease.buyer, scopes=["market:read"])
    assert read_only.post("/api/v1/metering/observations", body, format="json").status_code == 403


@pytest.mark.django_db
def test_pages_show_the_observed_gap_and_the_automatic_dispute(lease, client_for):
    [dispute] = submit(lease, (2, 3600)).disputes
    for user in (lease.buyer.owner, lease.provider.owner):
        client = client_for(user)
        usage = client.get(f"/usage/leases/{lease.public_id}/").content.decode()
        assert 'data-flag="observed-less"' in usage
        assert 'data-testid="observations-summary"' in usage
        detail = client.get(f"/usage/disputes/{dispute.public_id}/").content.decode()
        assert 'data-testid="dispute-automatic"' in detail
        assert 'data-testid="observation-hours"' in detail

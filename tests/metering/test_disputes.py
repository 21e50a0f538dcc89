"""Usage disputes: the buyer opens one, the provider answers, staff resolve; lease status, audit, credits."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils.timezone import localtime

from core.errors import ApplicationError, ValidationFailed
from core.models import AuditLog
from core.timeutils import HOUR, Window, floor_hour, utcnow
from marketplace.models import Lease
from metering import selectors, services
from metering.models import Dispute, UsageHour
from tests.marketplace.factories import make_lease


@pytest.fixture
def lease(make_org):
    start = floor_hour(utcnow()) - timedelta(hours=6)
    lease = make_lease(
        make_org("provider"),
        make_org("buyer"),
        accelerators=4,
        start=start,
        end=start + timedelta(hours=12),
        status="active",
    )
    UsageHour.objects.bulk_create(
        [
            UsageHour(
                provider_id=lease.provider_id,
                subject_kind="lease",
                subject_id=lease.public_id,
                hour_start=start + i * HOUR,
                record_count=1,
                accelerator_seconds=4 * 3600 if i != 1 else 3600,
                energy_wh=1000,
                records_without_energy=0,
                tokens_in=0,
                tokens_out=0,
                requests=0,
            )
            for i in range(6)
        ]
    )
    return lease


def data(lease, hours=(0, 3), **extra):
    values = {
        "period_start": lease.start + hours[0] * HOUR,
        "period_end": lease.start + hours[1] * HOUR,
        "reason": "training job stalled",
    }
    values.update(extra)
    return services.DisputeInput(**values)


@pytest.fixture
def staff(make_user):
    user = make_user()
    user.is_staff = True
    user.save()
    return user


@pytest.mark.django_db
def test_buyer_opens_provider_answers_staff_credit(lease, staff):
    buyer = lease.buyer
    dispute = services.dispute_open(organization=buyer, lease=lease, data=data(lease), actor=buyer.owner)
    assert dispute.claimed_accelerator_seconds == 3 * 3600  # the shortfall of hour 1 from the provider's own reports
    assert Lease.objects.get(pk=lease.pk).status == "disputed"
    with pytest.raises(ApplicationError) as again:
        services.dispute_open(organization=buyer, lease=Lease.objects.get(pk=lease.pk), data=data(lease))
    assert again.value.code == "lease_not_disputable"

    services.dispute_respond(organization=lease.provider, dispute=dispute, response="maintenance window, announced")
    dispute.refresh_from_db()
    assert dispute.status == "answered"

    resolved = services.dispute_resolve(dispute=dispute, actor=staff, buyer_favour=True, note="not announced")
    assert resolved.status == "resolved_buyer"
    assert resolved.credited_accelerator_seconds == 3 * 3600
    assert Lease.objects.get(pk=lease.pk).status == "active"
    actions = set(AuditLog.objects.values_list("action", flat=True))
    assert {
        "dispute.opened",
        "dispute.answered",
        "dispute.resolved",
        "lease.disputed",
        "lease.dispute_closed",
    } <= actions
    with pytest.raises(ApplicationError) as closed:
        services.dispute_resolve(dispute=dispute, actor=staff, buyer_favour=False)
    assert closed.value.code == "dispute_closed"
    window = Window(utcnow() - HOUR, utcnow() + HOUR)
    usage = selectors.lease_period_usage(lease_public_ids=[lease.public_id], window=window)[lease.public_id]
    assert usage.dispute_credit_accelerator_seconds == 3 * 3600


@pytest.mark.django_db
def test_measured_downtime_claim_is_capped_by_the_contract(lease, staff):
    dispute = services.dispute_open(
        organization=lease.buyer, lease=lease, data=data(lease, hours=(0, 1), observed_downtime_minutes=600)
    )
    assert dispute.claimed_accelerator_seconds == 4 * 3600
    resolved = services.dispute_resolve(
        dispute=dispute, actor=staff, buyer_favour=True, credited_accelerator_seconds=10**9
    )
    assert resolved.credited_accelerator_seconds == 4 * 3600


@pytest.mark.django_db
def test_provider_favour_credits_nothing(lease, staff):
    dispute = services.dispute_open(organization=lease.buyer, lease=lease, data=data(lease))
    resolved = services.dispute_resolve(dispute=dispute, actor=staff, buyer_favour=False)
    assert resolved.credited_accelerator_seconds == 0
    assert Lease.objects.get(pk=lease.pk).status == "active"


@pytest.mark.django_db
def test_who_may_do_what(lease, make_org, make_user):
    with pytest.raises(ApplicationError) as foreign:
        services.dispute_open(organization=make_org("buyer"), lease=lease, data=data(lease))
    assert foreign.value.status_code == 404
    with pytest.raises(ApplicationError) as provider:
        services.dispute_open(organization=lease.provider, lease=lease, data=data(lease))
    assert provider.value.status_code == 403
    dispute = services.dispute_open(organization=lease.buyer, lease=lease, data=data(lease))
    with pytest.raises(ApplicationError) as not_staff:
        services.dispute_resolve(dispute=dispute, actor=make_user(), buyer_favour=True)
    assert not_staff.value.status_code == 403
    with pytest.raises(ApplicationError):
        services.dispute_respond(organization=lease.buyer, dispute=dispute, response="me too")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("hours", "code"),
    [((3, 2), "invalid_period"), ((-1, 2), "outside_lease"), ((7, 8), "in_future"), ((0, 14), "outside_lease")],
)
def test_period_validation(lease, hours, code):
    with pytest.raises(ValidationFailed) as error:
        services.dispute_open(organization=lease.buyer, lease=lease, data=data(lease, hours=hours))
    assert error.value.errors[0].code == code


@pytest.mark.django_db(transaction=True)
def test_racing_buyers_open_one_dispute(lease):
    """Two members of the buyer open a dispute at the same moment: one wins, the other is told, status stays sane."""
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def worker():
        try:
            barrier.wait()
            fresh = Lease.objects.get(pk=lease.pk)
            outcomes.append(services.dispute_open(organization=lease.buyer, lease=fresh, data=data(lease)))
        except ApplicationError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(str(o) if isinstance(o, str) else "ok" for o in outcomes) in (
        ["dispute_open", "ok"],
        ["lease_not_disputable", "ok"],
    )
    assert Dispute.objects.filter(lease=lease).count() == 1
    assert Lease.objects.get(pk=lease.pk).status == "disputed"


@pytest.mark.django_db
def test_portal_pages_for_both_sides(lease, client_for, staff):
    buyer, provider = client_for(lease.buyer.owner), client_for(lease.provider.owner)
    page = buyer.get(f"/usage/leases/{lease.public_id}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-testid="usage-chart"' in body
    assert "87.5 %" in body  # (5 x 4 + 1) of 24 elapsed accelerator-hours
    assert "50.0 %" in body  # below 90 %: half the capacity charge
    assert 'data-testid="dispute-form"' in body
    assert 'data-testid="dispute-form"' not in provider.get(f"/usage/leases/{lease.public_id}/").content.decode()

    start = localtime(lease.start + HOUR).strftime("%Y-%m-%dT%H:%M")  # the portal's time zone
    end = localtime(lease.start + 2 * HOUR).strftime("%Y-%m-%dT%H:%M")
    opened = buyer.post(
        f"/usage/leases/{lease.public_id}/",
        {"period_start": start, "period_end": end, "reason": "GPU 3 fell off the bus", "observed_downtime_minutes": ""},
    )
    assert opened.status_code == 302, opened.content.decode()[:2000]
    dispute = Dispute.objects.get(lease=lease)
    assert dispute.period_start == lease.start + HOUR
    assert dispute.claimed_accelerator_seconds == 3 * 3600
    assert provider.post(f"/usage/leases/{lease.public_id}/", {"reason": "x"}).status_code == 403

    detail = f"/usage/disputes/{dispute.public_id}/"
    assert 'data-testid="response-form"' not in buyer.get(detail).content.decode()
    assert buyer.post(detail, {"provider_response": "x"}).status_code == 403
    assert provider.post(detail, {"provider_response": "Replaced the card at 02:10."}).status_code == 302
    assert "Replaced the card" in buyer.get(detail).content.decode()
    overview = buyer.get("/usage/").content.decode()
    assert detail in overview


@pytest.mark.django_db
def test_dispute_api(lease, api_client_for):
    client = api_client_for(lease.buyer, ["market:read", "market:write"])
    body = {
        "lease_id": str(lease.public_id),
        "period_start": (lease.start + HOUR).isoformat(),
        "period_end": (lease.start + 2 * HOUR).isoformat(),
        "reason": "down",
        "observed_downtime_minutes": 30,
    }
    created = client.post("/api/v1/metering/disputes", body, format="json", HTTP_IDEMPOTENCY_KEY="d-1")
    assert created.status_code == 201, created.json()
    assert created.json()["claimed_accelerator_seconds"] == 30 * 60 * 4
    replay = client.post("/api/v1/metering/disputes", body, format="json", HTTP_IDEMPOTENCY_KEY="d-1")
    assert replay.json()["id"] == created.json()["id"]
    again = client.post("/api/v1/metering/disputes", body, format="json")
    assert again.status_code == 409
    listed = client.get("/api/v1/metering/disputes").json()
    assert [d["id"] for d in listed] == [created.json()["id"]]
    seen_by_provider = api_client_for(lease.provider, ["market:read"]).get(
        f"/api/v1/metering/disputes/{created.json()['id']}"
    )
    assert seen_by_provider.status_code == 200
    usage = client.get(f"/api/v1/metering/leases/{lease.public_id}/usage").json()
    assert usage["missing_hours"] == 0
    assert usage["delivered_accelerator_seconds"] == 21 * 3600
    assert usage["hours"][1]["delivered_accelerator_seconds"] == 3600


@pytest.mark.django_db
def test_staff_resolve_in_the_admin(lease, client_for, staff):
    dispute = services.dispute_open(organization=lease.buyer, lease=lease, data=data(lease))
    staff.is_superuser = True  # the platform operator's admin account
    staff.save()
    client = client_for(staff)
    changelist = client.get("/admin/metering/dispute/")
    assert "resolve_for_buyer" in changelist.content.decode()
    response = client.post(
        "/admin/metering/dispute/", {"action": "resolve_for_buyer", "_selected_action": [dispute.pk]}, follow=True
    )
    assert response.status_code == 200
    dispute.refresh_from_db()
    assert dispute.status == "resolved_buyer"
    assert dispute.credited_accelerator_seconds == dispute.claimed_accelerator_seconds
    assert dispute.resolved_by == staff

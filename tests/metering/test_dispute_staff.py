"""Platform staff decide a dispute in the admin: side, a credit they may change (capped), a note."""

from __future__ import annotations

import pytest

from metering import services
from metering.models import Dispute
from tests.metering.test_observations import FULL_HOUR, lease, submit  # noqa: F401  (lease is a fixture)


@pytest.fixture
def staff_client(client, make_user):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def dispute(lease):  # noqa: F811
    [dispute] = submit(lease, (1, 0), (2, 0)).disputes
    return dispute


def url(dispute):
    return f"/admin/metering/dispute/{dispute.pk}/resolve/"


@pytest.mark.django_db
def test_staff_credit_a_changed_amount_with_a_note(staff_client, dispute):
    page = staff_client.get(url(dispute))
    assert page.status_code == 200
    assert page.context["observation_hours"][0][1:] == (0, FULL_HOUR)
    listing = staff_client.get("/admin/metering/dispute/").content.decode()
    assert url(dispute) in listing
    answer = staff_client.post(url(dispute), {"decision": "buyer", "credited_accelerator_hours": "2.5", "note": "half"})
    assert answer.status_code == 302
    dispute.refresh_from_db()
    assert (dispute.status, dispute.credited_accelerator_seconds, dispute.resolution_note) == (
        "resolved_buyer",
        9000,
        "half",
    )
    assert dispute.lease.status == "active"
    assert url(dispute) not in staff_client.get("/admin/metering/dispute/").content.decode()


@pytest.mark.django_db
def test_the_credit_never_exceeds_the_contracted_hours(staff_client, dispute):
    staff_client.post(url(dispute), {"decision": "buyer", "credited_accelerator_hours": "1000", "note": "all"})
    assert Dispute.objects.get(pk=dispute.pk).credited_accelerator_seconds == 2 * FULL_HOUR


@pytest.mark.django_db
def test_an_empty_credit_is_the_claim_and_the_provider_side_credits_nothing(staff_client, dispute, lease):  # noqa: F811
    staff_client.post(url(dispute), {"decision": "buyer", "note": "as claimed"})
    assert Dispute.objects.get(pk=dispute.pk).credited_accelerator_seconds == dispute.claimed_accelerator_seconds
    [second] = submit(lease, (4, 0)).disputes
    staff_client.post(url(second), {"decision": "provider", "credited_accelerator_hours": "3", "note": "logs fine"})
    assert Dispute.objects.get(pk=second.pk).credited_accelerator_seconds == 0


@pytest.mark.django_db
def test_bad_input_is_shown_beside_the_field_and_changes_nothing(staff_client, dispute):
    page = staff_client.post(url(dispute), {"decision": "buyer", "credited_accelerator_hours": "-1", "note": ""})
    assert page.status_code == 200
    assert set(page.context["form"].errors) == {"credited_accelerator_hours", "note"}
    assert Dispute.objects.get(pk=dispute.pk).is_open


@pytest.mark.django_db
def test_only_staff_reach_it(client_for, dispute, lease):  # noqa: F811
    for user in (lease.buyer.owner, lease.provider.owner):
        answer = client_for(user).post(url(dispute), {"decision": "buyer", "note": "mine"})
        assert answer.status_code == 302
        assert "/admin/login/" in answer["Location"]
    assert services.usage_observation_disputes_open() == []
    assert Dispute.objects.get(pk=dispute.pk).is_open

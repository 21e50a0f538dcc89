"""The portal's tenant plumbing: the current organisation (middleware), selectors, and member_required."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import timezone

from accounts import selectors
from accounts.decorators import member_required
from accounts.middleware import SESSION_KEY, CurrentOrganizationMiddleware
from accounts.models import Membership, Role

pytestmark = pytest.mark.django_db


def run_middleware(user, session=None, path="/dashboard/"):
    seen = {}

    def view(request):
        seen["organization"] = request.organization
        seen["membership"] = request.membership
        seen["zone"] = timezone.get_current_timezone_name()
        return HttpResponse("ok")

    request = RequestFactory().get(path)
    request.user = user
    request.session = session or {}
    try:
        CurrentOrganizationMiddleware(view)(request)
    finally:
        timezone.deactivate()
    return seen


def test_the_chosen_organisation_is_current(make_org):
    first = make_org("buyer")
    second = make_org("provider")
    Membership.objects.create(user=first.owner, organization=second, role=Role.VIEWER)
    assert run_middleware(first.owner)["organization"] == first  # the first joined, by default
    seen = run_middleware(first.owner, {SESSION_KEY: str(second.public_id)})
    assert seen["organization"] == second
    assert seen["membership"].role == Role.VIEWER


@pytest.mark.parametrize("chosen", ["foreign", "garbage", "", None])
def test_a_foreign_or_malformed_choice_falls_back_to_the_users_own(make_org, chosen):
    mine, foreign = make_org("buyer"), make_org("buyer")
    value = {"foreign": str(foreign.public_id), "garbage": "not-a-uuid'; --", "": "", None: None}[chosen]
    assert run_middleware(mine.owner, {SESSION_KEY: value})["organization"] == mine
    assert selectors.membership_for_user(mine.owner, value).organization == mine


def test_users_without_organisation_and_anonymous_users_have_none(make_user):
    assert run_middleware(make_user())["organization"] is None
    assert run_middleware(AnonymousUser())["organization"] is None


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("", "Asia/Shanghai"),
        ("Europe/Berlin", "Europe/Berlin"),
        ("Mars/Olympus_Mons", "Asia/Shanghai"),
        ("../../etc/passwd", "Asia/Shanghai"),
    ],
)
def test_portal_time_zone_is_the_users_or_shanghai(make_user, zone, expected):
    assert run_middleware(make_user(time_zone=zone))["zone"] == expected


def test_the_api_speaks_utc(make_user):
    assert run_middleware(make_user(time_zone="Europe/Berlin"), path="/api/v1/organization")["zone"] == "UTC"


def test_inactive_users_have_no_current_organisation(make_org):
    org = make_org("buyer")
    org.owner.is_active = False
    org.owner.save()
    assert selectors.membership_for_user(org.owner, str(org.public_id)) is None


def test_selectors_take_the_tenant(make_org, make_user):
    mine, theirs = make_org("buyer"), make_org("buyer")
    stranger = Membership.objects.create(user=make_user(), organization=theirs, role=Role.MEMBER)
    from django.http import Http404

    with pytest.raises(Http404):
        selectors.member_get(mine, stranger.public_id)
    with pytest.raises(Http404):
        selectors.member_get(mine, uuid.uuid4())
    assert selectors.member_get(theirs, stranger.public_id) == stranger
    assert [m.user for m in selectors.member_list(mine)] == [mine.owner]
    assert selectors.owner_count(theirs) == 1


# --- member_required -------------------------------------------------------------------------------


def guarded_request(user, membership):
    request = RequestFactory().get("/settings/x/?a=1")
    request.user = user
    request.membership = membership
    return request


def ok(request):
    return HttpResponse("ok")


def test_anonymous_users_are_sent_to_log_in():
    response = member_required(ok)(guarded_request(AnonymousUser(), None))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
    assert "next=/settings/x/%3Fa%3D1" in response["Location"]


def test_users_without_organisation_are_sent_to_the_dashboard(make_user):
    response = member_required(ok)(guarded_request(make_user(), None))
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_kind_and_role_are_enforced(make_org, make_user):
    org = make_org("buyer")
    viewer = Membership.objects.create(user=make_user(), organization=org, role=Role.VIEWER)
    admin = Membership.objects.create(user=make_user(), organization=org, role=Role.ADMIN)
    providers_only = member_required(kinds=["provider"])(ok)
    admins_only = member_required(min_role=Role.ADMIN)(ok)
    with pytest.raises(PermissionDenied):
        providers_only(guarded_request(admin.user, admin))
    with pytest.raises(PermissionDenied):
        admins_only(guarded_request(viewer.user, viewer))
    assert admins_only(guarded_request(admin.user, admin)).status_code == 200
    assert member_required(kinds=["buyer"])(ok)(guarded_request(viewer.user, viewer)).status_code == 200

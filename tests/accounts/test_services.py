"""accounts.services: sign-up, invitations, roles, organisation settings and company profiles."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.http import Http404

from accounts import services
from accounts.models import (
    CompanyProfile,
    Invitation,
    Membership,
    Organization,
    Role,
    Shareholder,
    User,
)
from accounts.selectors import token_hash
from accounts.services import ShareholderInput
from core.errors import ApplicationError
from core.models import AuditLog
from core.timeutils import utcnow
from tests.accounts.concurrency import run_concurrently

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-and-unusual-passphrase-42"
USCC_A = "91350100M000100Y43"
USCC_B = "91110000600037341L"


def fields(exc: pytest.ExceptionInfo[ApplicationError]) -> dict[str | None, str]:
    """{field: code} of a refused call."""
    return {e.field: e.code for e in exc.value.errors}


def signup(**overrides):
    data = {
        "email": "founder@example.com",
        "password": PASSWORD,
        "full_name": "Li Wei",
        "organization_name": "Shenzhen Precision Parts",
        "organization_kind": "buyer",
    }
    data.update(overrides)
    return services.user_signup(**data)


def membership(org, user=None) -> Membership:
    return Membership.objects.get(organization=org, user=user or org.owner)


def add_member(org, make_user, role, email=None) -> Membership:
    return Membership.objects.create(user=make_user(email), organization=org, role=role)


# --- Sign-up ---------------------------------------------------------------------------------------


def test_signup_creates_user_organisation_and_owner_membership():
    user, org = signup(email="  Founder@Example.COM ")
    assert user.email == "founder@example.com"
    assert user.check_password(PASSWORD)
    assert PASSWORD not in user.password
    assert org.name == "Shenzhen Precision Parts"
    assert org.kind == "buyer"
    assert org.status == "active"
    assert Membership.objects.get(user=user, organization=org).role == Role.OWNER


@pytest.mark.parametrize(("kind", "status"), [("buyer", "active"), ("provider", "active"), ("issuer", "pending")])
def test_issuers_start_pending_until_verified(kind, status):
    _user, org = signup(organization_kind=kind)
    assert org.status == status


@pytest.mark.parametrize("email", ["founder@example.com", "FOUNDER@example.com", " Founder@EXAMPLE.com"])
def test_duplicate_email_is_a_field_error_whatever_the_case(email):
    signup()
    with pytest.raises(ApplicationError) as exc:
        signup(email=email, organization_name="Second")
    assert fields(exc) == {"email": "email_taken"}
    assert User.objects.count() == 1
    assert Organization.objects.count() == 1


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("short1!", "password_too_short"),
        ("12345678901234", "password_entirely_numeric"),
        ("password1234", "password_too_common"),
        ("founder@example.com", "password_too_similar"),
    ],
)
def test_weak_password_is_a_field_error_and_nothing_is_created(password, code):
    with pytest.raises(ApplicationError) as exc:
        signup(password=password)
    assert {(e.field, e.code) for e in exc.value.errors} >= {("password", code)}
    assert not User.objects.exists()
    assert not Organization.objects.exists()


def test_signup_reports_every_mistake_at_once():
    signup()
    with pytest.raises(ApplicationError) as exc:
        signup(password="123", organization_name="  ", organization_kind="platform")
    assert set(fields(exc)) == {"email", "password", "organization_name", "organization_kind"}


@pytest.mark.parametrize("email", ["not-an-email", "", "two@@example.com", "a@b@example.com"])
def test_signup_refuses_an_invalid_email(email):
    with pytest.raises(ApplicationError) as exc:
        signup(email=email)
    assert "email" in fields(exc)
    assert not User.objects.exists()


def test_platform_organisations_are_not_self_service():
    with pytest.raises(ApplicationError) as exc:
        signup(organization_kind="platform")
    assert fields(exc) == {"organization_kind": "invalid_kind"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_signups_with_one_email_create_one_account():
    outcomes = run_concurrently(
        lambda: signup(email="race@example.com", organization_name="A"),
        lambda: signup(email="RACE@example.com", organization_name="B"),
    )
    assert sum(o.error is None for o in outcomes) == 1
    [failure] = [o.error for o in outcomes if o.error is not None]
    assert isinstance(failure, ApplicationError)
    assert failure.errors[0].field == "email"
    assert failure.code == "email_taken"
    assert User.objects.count() == 1
    assert Organization.objects.count() == 1  # the loser's organisation was rolled back with its user


# --- Invitations -----------------------------------------------------------------------------------


def test_invitation_token_is_sent_by_email_and_stored_only_as_a_hash(make_org, django_capture_on_commit_callbacks):
    org = make_org("buyer")
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = services.invitation_create(acting=membership(org), email="New@Example.com", role="admin")
    assert invitation.email == "new@example.com"
    assert invitation.token_hash == token_hash(token)
    assert token not in invitation.token_hash
    assert invitation.expires_at > utcnow() + timedelta(days=13)
    [message] = mail.outbox
    assert message.to == ["new@example.com"]
    assert f"/invitations/{token}/" in message.body
    assert org.name in message.body


def test_invitation_works_once(make_org, make_user):
    org = make_org("provider")
    _invitation, token = services.invitation_create(acting=membership(org), email="ops@example.com", role="member")
    user = make_user("ops@example.com")
    joined = services.invitation_accept(token=token, user=user)
    assert joined.organization == org
    assert joined.role == Role.MEMBER
    with pytest.raises(Http404):
        services.invitation_accept(token=token, user=user)
    assert Membership.objects.filter(organization=org, user=user).count() == 1


def test_invitation_for_another_address_is_refused(make_org, make_user):
    org = make_org("provider")
    _invitation, token = services.invitation_create(acting=membership(org), email="ops@example.com", role="admin")
    with pytest.raises(ApplicationError) as exc:
        services.invitation_accept(token=token, user=make_user("intruder@example.com"))
    assert exc.value.code == "wrong_account"
    assert not Membership.objects.filter(organization=org, role=Role.ADMIN).exists()
    # The rightful invitee can still use it.
    assert services.invitation_accept(token=token, user=make_user("OPS@example.com")).role == Role.ADMIN


def test_expired_and_revoked_invitations_are_404(make_org, make_user):
    org = make_org("buyer")
    acting = membership(org)
    expired, expired_token = services.invitation_create(acting=acting, email="late@example.com", role="member")
    Invitation.objects.filter(pk=expired.pk).update(expires_at=utcnow() - timedelta(seconds=1))
    revoked, revoked_token = services.invitation_create(acting=acting, email="gone@example.com", role="member")
    services.invitation_revoke(acting=acting, invitation=revoked)
    with pytest.raises(Http404):
        services.invitation_accept(token=expired_token, user=make_user("late@example.com"))
    with pytest.raises(Http404):
        services.invitation_accept(token=revoked_token, user=make_user("gone@example.com"))
    with pytest.raises(Http404):
        services.invitation_accept(token="made-up", user=make_user())
    assert Membership.objects.filter(organization=org).count() == 1


def test_an_expired_invitation_does_not_block_a_new_one(make_org, make_user):
    org = make_org("buyer")
    acting = membership(org)
    first, _token = services.invitation_create(acting=acting, email="late@example.com", role="member")
    Invitation.objects.filter(pk=first.pk).update(expires_at=utcnow() - timedelta(minutes=1))
    second, token = services.invitation_create(acting=acting, email="late@example.com", role="viewer")
    assert services.invitation_accept(token=token, user=make_user("late@example.com")).role == Role.VIEWER
    assert second.pk != first.pk


def test_an_open_invitation_is_not_duplicated(make_org):
    org = make_org("buyer")
    services.invitation_create(acting=membership(org), email="dup@example.com", role="member")
    with pytest.raises(ApplicationError) as exc:
        services.invitation_create(acting=membership(org), email="DUP@example.com", role="admin")
    assert fields(exc) == {"email": "already_invited"}


def test_members_are_not_invited_again(make_org):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.invitation_create(acting=membership(org), email=org.owner.email.upper(), role="member")
    assert fields(exc) == {"email": "already_member"}


def test_who_may_invite_whom(make_org, make_user):
    org = make_org("buyer")
    admin = add_member(org, make_user, Role.ADMIN)
    member = add_member(org, make_user, Role.MEMBER)
    with pytest.raises(ApplicationError) as exc:
        services.invitation_create(acting=member, email="a@example.com", role="viewer")
    assert exc.value.status_code == 403
    with pytest.raises(ApplicationError) as exc:
        services.invitation_create(acting=admin, email="b@example.com", role="owner")  # only owners make owners
    assert exc.value.status_code == 403
    services.invitation_create(acting=admin, email="c@example.com", role="admin")
    services.invitation_create(acting=membership(org), email="d@example.com", role="owner")
    with pytest.raises(ApplicationError) as exc:
        services.invitation_create(acting=membership(org), email="e@example.com", role="superuser")
    assert fields(exc) == {"role": "invalid_role"}
    assert set(Invitation.objects.values_list("email", flat=True)) == {"c@example.com", "d@example.com"}


def test_invitations_of_another_organisation_cannot_be_revoked(make_org):
    mine, theirs = make_org("buyer"), make_org("buyer")
    invitation, _token = services.invitation_create(acting=membership(theirs), email="x@example.com", role="member")
    services.invitation_revoke(acting=membership(mine), invitation=invitation)
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_accepts_make_one_membership(make_org, make_user):
    org = make_org("provider")
    _invitation, token = services.invitation_create(acting=membership(org), email="twice@example.com", role="member")
    user = make_user("twice@example.com")
    outcomes = run_concurrently(
        lambda: services.invitation_accept(token=token, user=user),
        lambda: services.invitation_accept(token=token, user=user),
    )
    assert sum(o.error is None for o in outcomes) == 1
    assert all(isinstance(o.error, ApplicationError | Http404) for o in outcomes if o.error)
    assert Membership.objects.filter(organization=org, user=user).count() == 1
    assert AuditLog.objects.filter(action="membership.created", organization=org).count() == 1


# --- Roles -----------------------------------------------------------------------------------------


def test_owner_changes_roles(make_org, make_user):
    org = make_org("buyer")
    member = add_member(org, make_user, Role.MEMBER)
    changed = services.membership_change_role(acting=membership(org), membership=member, role=Role.OWNER)
    assert changed.role == Role.OWNER
    member.refresh_from_db()
    assert member.role == Role.OWNER


def test_admin_cannot_grant_or_take_ownership(make_org, make_user):
    org = make_org("buyer")
    second_owner = add_member(org, make_user, Role.OWNER)
    admin = add_member(org, make_user, Role.ADMIN)
    member = add_member(org, make_user, Role.MEMBER)
    with pytest.raises(ApplicationError) as exc:
        services.membership_change_role(acting=admin, membership=member, role=Role.OWNER)
    assert exc.value.status_code == 403
    with pytest.raises(ApplicationError) as exc:
        services.membership_change_role(acting=admin, membership=admin, role=Role.OWNER)
    assert exc.value.status_code == 403
    with pytest.raises(ApplicationError) as exc:
        services.membership_change_role(acting=admin, membership=second_owner, role=Role.VIEWER)
    assert exc.value.status_code == 403
    # What admins may do: manage non-owners.
    services.membership_change_role(acting=admin, membership=member, role=Role.VIEWER)
    assert sorted(Membership.objects.filter(organization=org).values_list("role", flat=True)) == sorted(
        ["owner", "owner", "admin", "viewer"]
    )


def test_members_and_viewers_cannot_change_roles(make_org, make_user):
    org = make_org("buyer")
    member = add_member(org, make_user, Role.MEMBER)
    viewer = add_member(org, make_user, Role.VIEWER)
    for acting in (member, viewer):
        with pytest.raises(ApplicationError) as exc:
            services.membership_change_role(acting=acting, membership=viewer, role=Role.MEMBER)
        assert exc.value.status_code == 403


def test_the_last_owner_cannot_be_demoted(make_org):
    org = make_org("buyer")
    owner = membership(org)
    with pytest.raises(ApplicationError) as exc:
        services.membership_change_role(acting=owner, membership=owner, role=Role.ADMIN)
    assert fields(exc) == {"role": "last_owner"}
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_one_of_two_owners_may_step_down(make_org, make_user):
    org = make_org("buyer")
    other = add_member(org, make_user, Role.OWNER)
    services.membership_change_role(acting=membership(org), membership=membership(org), role=Role.ADMIN)
    assert list(Membership.objects.filter(organization=org, role=Role.OWNER)) == [other]


def test_unknown_role_is_refused(make_org, make_user):
    org = make_org("buyer")
    member = add_member(org, make_user, Role.MEMBER)
    with pytest.raises(ApplicationError) as exc:
        services.membership_change_role(acting=membership(org), membership=member, role="god")
    assert fields(exc) == {"role": "invalid_role"}


def test_members_of_another_organisation_are_not_found(make_org, make_user):
    mine, theirs = make_org("buyer"), make_org("buyer")
    stranger = add_member(theirs, make_user, Role.MEMBER)
    with pytest.raises(ApplicationError) as exc:
        services.membership_change_role(acting=membership(mine), membership=stranger, role=Role.ADMIN)
    assert exc.value.status_code == 404
    with pytest.raises(ApplicationError) as exc:
        services.membership_remove(acting=membership(mine), membership=stranger)
    assert exc.value.status_code == 404
    stranger.refresh_from_db()
    assert stranger.role == Role.MEMBER


def test_a_demoted_owner_loses_owner_rights_at_once(make_org, make_user):
    """The acting membership is re-read under the lock: a stale copy (an open page, a concurrent request)
    of someone demoted a moment ago does not carry their old rights."""
    org = make_org("buyer")
    demoted = add_member(org, make_user, Role.OWNER)
    member = add_member(org, make_user, Role.MEMBER)
    stale = Membership.objects.get(pk=demoted.pk)
    services.membership_change_role(acting=membership(org), membership=demoted, role=Role.MEMBER)
    with pytest.raises(ApplicationError) as exc:
        services.membership_change_role(acting=stale, membership=member, role=Role.OWNER)
    assert exc.value.status_code == 403
    with pytest.raises(ApplicationError) as exc:
        services.membership_remove(acting=stale, membership=membership(org))
    assert exc.value.status_code == 403
    assert Membership.objects.filter(organization=org, role=Role.OWNER).count() == 1


def test_a_stale_copy_of_the_target_does_not_bypass_the_owner_rule(make_org, make_user):
    """An admin holding an old copy of a member who has since become an owner still cannot demote them."""
    org = make_org("buyer")
    admin = add_member(org, make_user, Role.ADMIN)
    target = add_member(org, make_user, Role.MEMBER)
    stale_target = Membership.objects.get(pk=target.pk)
    services.membership_change_role(acting=membership(org), membership=target, role=Role.OWNER)
    with pytest.raises(ApplicationError) as exc:
        services.membership_change_role(acting=admin, membership=stale_target, role=Role.VIEWER)
    assert exc.value.status_code == 403
    with pytest.raises(ApplicationError) as exc:
        services.membership_remove(acting=admin, membership=stale_target)
    assert exc.value.status_code == 403
    target.refresh_from_db()
    assert target.role == Role.OWNER


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_an_owner(make_org, make_user):
    for _round in range(5):
        org = make_org("provider")
        first = membership(org)
        second = add_member(org, make_user, Role.OWNER)
        outcomes = run_concurrently(
            lambda first=first, second=second: services.membership_change_role(
                acting=first, membership=second, role=Role.ADMIN
            ),
            lambda first=first, second=second: services.membership_change_role(
                acting=second, membership=first, role=Role.ADMIN
            ),
        )
        assert all(o.error is None or isinstance(o.error, ApplicationError) for o in outcomes)
        assert sum(o.error is None for o in outcomes) == 1
        assert Membership.objects.filter(organization=org, role=Role.OWNER).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_owners_leaving_at_once_leave_an_owner(make_org, make_user):
    org = make_org("provider")
    first = membership(org)
    second = add_member(org, make_user, Role.OWNER)
    outcomes = run_concurrently(
        lambda: services.membership_remove(acting=first, membership=first),
        lambda: services.membership_remove(acting=second, membership=second),
    )
    assert sum(o.error is None for o in outcomes) == 1
    assert Membership.objects.filter(organization=org, role=Role.OWNER).count() == 1


# --- Leaving and removing --------------------------------------------------------------------------


def test_the_last_owner_cannot_leave(make_org):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.membership_remove(acting=membership(org), membership=membership(org))
    assert exc.value.code == "last_owner"
    assert Membership.objects.filter(organization=org).count() == 1


def test_anyone_may_leave_and_admins_remove_non_owners(make_org, make_user):
    org = make_org("buyer")
    admin = add_member(org, make_user, Role.ADMIN)
    viewer = add_member(org, make_user, Role.VIEWER)
    member = add_member(org, make_user, Role.MEMBER)
    services.membership_remove(acting=viewer, membership=viewer)
    with pytest.raises(ApplicationError) as exc:
        services.membership_remove(acting=member, membership=admin)
    assert exc.value.status_code == 403
    with pytest.raises(ApplicationError) as exc:
        services.membership_remove(acting=admin, membership=membership(org))
    assert exc.value.status_code == 403
    services.membership_remove(acting=admin, membership=member)
    assert set(Membership.objects.filter(organization=org).values_list("role", flat=True)) == {"owner", "admin"}


# --- Organisation settings -------------------------------------------------------------------------


def test_organisation_update(make_org):
    org = make_org("buyer")
    updated = services.organization_update(
        organization=org, actor=org.owner, name="  New Name ", billing_currency="USD"
    )
    assert (updated.name, updated.billing_currency) == ("New Name", "USD")
    row = AuditLog.objects.get(action="organization.updated")
    assert row.after == {"name": "New Name", "billing_currency": "USD"}


@pytest.mark.parametrize(
    ("name", "currency", "field"),
    [("", "CNY", "name"), ("Fine", "EUR", "billing_currency"), ("x" * 201, "CNY", "name")],
)
def test_organisation_update_refuses_bad_input_as_field_errors(make_org, name, currency, field):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.organization_update(organization=org, actor=org.owner, name=name, billing_currency=currency)
    assert field in fields(exc)
    org.refresh_from_db()
    assert org.billing_currency == "CNY"
    assert not AuditLog.objects.filter(action="organization.updated").exists()


def test_organisation_status_is_verified_by_staff(make_org, make_user):
    _user, org = signup(organization_kind="issuer")
    staff = make_user(is_staff=True)
    services.organization_set_status(organization=org, actor=staff, status="active")
    org.refresh_from_db()
    assert org.status == "active"
    row = AuditLog.objects.get(action="organization.status_changed")
    assert (row.before, row.after, row.actor) == ({"status": "pending"}, {"status": "active"}, staff)
    with pytest.raises(ApplicationError) as exc:
        services.organization_set_status(organization=org, actor=staff, status="deleted")
    assert fields(exc) == {"status": "invalid_status"}
    org.refresh_from_db()
    assert org.status == "active"


# --- Company profile -------------------------------------------------------------------------------


def profile_data(**overrides):
    data = {
        "legal_name": "深圳精密零件有限公司",
        "uscc": USCC_A,
        "registered_province": "44",
        "registered_city": "深圳市",
        "industry": "industry",
        "employees": 300,
        "annual_revenue_wan": Decimal("2000"),
        "total_assets_wan": None,
        "legal_representative": "李伟",
        "shareholders": [
            ShareholderInput(name="李伟", uscc="", share_pct=Decimal("60")),
            ShareholderInput(name="北京投资有限公司", uscc=USCC_B.lower(), share_pct=Decimal("40")),
        ],
    }
    data.update(overrides)
    return data


def test_company_profile_is_saved_with_its_size_class(make_org):
    org = make_org("buyer")
    profile = services.company_profile_save(acting=membership(org), **profile_data())
    assert profile.size_class == "medium"  # 工业: 300 employees and 2000万 revenue
    assert profile.uscc == USCC_A
    holders = sorted(profile.shareholders.values_list("name", "uscc", "share_pct"))
    assert holders == [("北京投资有限公司", USCC_B, Decimal("40.000")), ("李伟", "", Decimal("60.000"))]
    assert AuditLog.objects.get(action="company_profile.saved").after["size_class"] == "medium"


def test_company_profile_uscc_is_normalised(make_org):
    org = make_org("buyer")
    profile = services.company_profile_save(acting=membership(org), **profile_data(uscc=" 91110000600037341l "))
    assert profile.uscc == USCC_B


def test_saving_again_replaces_the_profile_and_its_shareholders(make_org):
    org = make_org("buyer")
    services.company_profile_save(acting=membership(org), **profile_data())
    services.company_profile_save(
        acting=membership(org),
        **profile_data(employees=299, shareholders=[ShareholderInput(name="王芳", uscc="", share_pct=Decimal(100))]),
    )
    profile = CompanyProfile.objects.get(organization=org)
    assert profile.size_class == "small"
    assert list(profile.shareholders.values_list("name", flat=True)) == ["王芳"]
    assert Shareholder.objects.count() == 1


@pytest.mark.parametrize("uscc", ["91350100M000100Y44", "91350100M000100Y4", "not a code", ""])
def test_invalid_uscc_is_refused_on_field_uscc(make_org, uscc):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.company_profile_save(acting=membership(org), **profile_data(uscc=uscc))
    assert fields(exc) == {"uscc": "invalid_uscc"}
    assert not CompanyProfile.objects.exists()
    assert not Shareholder.objects.exists()
    assert not AuditLog.objects.filter(action="company_profile.saved").exists()


def test_shareholdings_over_100_percent_are_refused_and_nothing_changes(make_org):
    org = make_org("buyer")
    services.company_profile_save(acting=membership(org), **profile_data())
    over = [
        ShareholderInput(name="甲", uscc="", share_pct=Decimal("60")),
        ShareholderInput(name="乙", uscc="", share_pct=Decimal("40.001")),
    ]
    with pytest.raises(ApplicationError) as exc:
        services.company_profile_save(
            acting=membership(org), **profile_data(legal_name="Renamed", employees=5000, shareholders=over)
        )
    assert fields(exc) == {"shareholders": "shares_over_100"}
    profile = CompanyProfile.objects.get(organization=org)
    assert (profile.legal_name, profile.employees, profile.size_class) == ("深圳精密零件有限公司", 300, "medium")
    assert sorted(profile.shareholders.values_list("name", flat=True)) == ["北京投资有限公司", "李伟"]


@pytest.mark.parametrize(
    ("holder", "field", "code"),
    [
        (
            ShareholderInput(name="甲", uscc="91350100M000100Y44", share_pct=Decimal(1)),
            "shareholders[0].uscc",
            "invalid_uscc",
        ),
        (ShareholderInput(name="甲", uscc="", share_pct=Decimal(0)), "shareholders[0].share_pct", "min_value"),
        (ShareholderInput(name="甲", uscc="", share_pct=Decimal(-5)), "shareholders[0].share_pct", "min_value"),
        # numeric(6, 3) would round it to 0.000 and the database would refuse the row (a 500)
        (
            ShareholderInput(name="甲", uscc="", share_pct=Decimal("0.0001")),
            "shareholders[0].share_pct",
            "max_decimal_places",
        ),
        (ShareholderInput(name="  ", uscc="", share_pct=Decimal(10)), "shareholders[0].name", "blank"),
        (ShareholderInput(name="甲" * 201, uscc="", share_pct=Decimal(10)), "shareholders[0].name", "max_length"),
    ],
)
def test_each_shareholder_is_checked(make_org, holder, field, code):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.company_profile_save(acting=membership(org), **profile_data(shareholders=[holder]))
    assert fields(exc) == {field: code}
    assert not CompanyProfile.objects.exists()


def test_missing_size_measures_are_a_field_error(make_org):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.company_profile_save(acting=membership(org), **profile_data(annual_revenue_wan=None))
    assert fields(exc) == {"employees": "size_measures_missing"}


def test_unknown_industry_is_a_field_error_on_industry(make_org):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.company_profile_save(acting=membership(org), **profile_data(industry="alchemy"))
    assert fields(exc) == {"industry": "invalid_choice"}
    assert not CompanyProfile.objects.exists()


def test_negative_measures_are_a_field_error(make_org):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.company_profile_save(acting=membership(org), **profile_data(annual_revenue_wan=Decimal("-1")))
    assert fields(exc) == {"annual_revenue_wan": "min_value"}
    assert not CompanyProfile.objects.exists()


def test_revenue_with_more_than_two_decimals_is_a_field_error(make_org):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.company_profile_save(acting=membership(org), **profile_data(annual_revenue_wan=Decimal("2000.001")))
    assert fields(exc) == {"annual_revenue_wan": "max_decimal_places"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"legal_name": "   "}, "legal_name"),
        ({"registered_province": "99"}, "registered_province"),
        ({"registered_city": ""}, "registered_city"),
        ({"legal_representative": ""}, "legal_representative"),
        ({"phone": "1" * 41}, "phone"),
    ],
)
def test_other_bad_fields_are_field_errors_not_crashes(make_org, overrides, field):
    org = make_org("buyer")
    with pytest.raises(ApplicationError) as exc:
        services.company_profile_save(acting=membership(org), **profile_data(**overrides))
    assert field in fields(exc)
    assert not CompanyProfile.objects.exists()


def test_several_mistakes_are_reported_together(make_org):
    org = make_org("buyer")
    over = [ShareholderInput(name="甲", uscc="", share_pct=Decimal(70))] * 2
    with pytest.raises(ApplicationError) as exc:
        services.company_profile_save(acting=membership(org), **profile_data(uscc="bad", shareholders=over))
    assert fields(exc) == {"uscc": "invalid_uscc", "shareholders": "shares_over_100"}


def test_only_admins_edit_the_company_profile(make_org, make_user):
    org = make_org("buyer")
    member = add_member(org, make_user, Role.MEMBER)
    with pytest.raises(ApplicationError) as exc:
        services.company_profile_save(acting=member, **profile_data())
    assert exc.value.status_code == 403
    assert not CompanyProfile.objects.exists()


def test_validate_uscc():
    assert services.validate_uscc(" 91350100m000100y43 ") == USCC_A
    with pytest.raises(ApplicationError) as exc:
        services.validate_uscc("91350100M000100Y42")
    assert exc.value.errors[0].field == "uscc"


@pytest.mark.django_db
def test_signup_from_an_invitation_joins_without_a_new_organisation(make_org, client):
    from accounts.models import Membership, Organization
    from accounts.services import invitation_create

    org = make_org("buyer")
    acting = Membership.objects.get(organization=org, user=org.owner)
    _invitation, token = invitation_create(acting=acting, email="New.Colleague@example.com", role="member")
    organizations_before = Organization.objects.count()
    page = client.get(f"/invitations/{token}/signup/")
    assert page.status_code == 200
    assert "new.colleague@example.com" in page.content.decode()
    response = client.post(
        f"/invitations/{token}/signup/", {"full_name": "New Colleague", "password": "a-long-enough-passphrase"}
    )
    assert response.status_code == 302
    assert Organization.objects.count() == organizations_before
    membership = Membership.objects.get(user__email="new.colleague@example.com")
    assert (membership.organization, membership.role) == (org, "member")
    # The link is used up: a second sign-up with it finds nothing.
    from django.test import Client

    assert Client().get(f"/invitations/{token}/signup/").status_code == 404

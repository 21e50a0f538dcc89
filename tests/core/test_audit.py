"""The audit log: services write it with their change; the database refuses to alter or delete it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, connection, transaction

from accounts import services
from accounts.models import Membership, OrganizationAPIKey, Role
from core.audit import audit_record
from core.errors import ApplicationError
from core.models import AuditLog

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-and-unusual-passphrase-42"


def owner_membership(org) -> Membership:
    return Membership.objects.get(organization=org, user=org.owner)


def test_signup_writes_who_created_what():
    user, org = services.user_signup(
        email="Founder@Example.com",
        password=PASSWORD,
        full_name="Li Wei",
        organization_name="Shenzhen Precision Parts",
        organization_kind="buyer",
    )
    rows = list(AuditLog.objects.filter(organization=org).order_by("id"))
    assert [r.action for r in rows] == ["organization.created", "membership.created"]
    created, membership = rows
    assert created.actor == user
    assert created.actor_label == "user:founder@example.com"
    assert created.target_type == "accounts.Organization"
    assert created.target_id == str(org.public_id)
    assert created.after == {"name": "Shenzhen Precision Parts", "kind": "buyer", "status": "active"}
    assert membership.after == {"user": "founder@example.com", "role": "owner"}
    assert created.occurred_at is not None


def test_a_refused_signup_writes_no_audit_row(make_user):
    make_user("taken@example.com")
    before = AuditLog.objects.count()
    with pytest.raises(ApplicationError):
        services.user_signup(
            email="taken@example.com",
            password=PASSWORD,
            full_name="",
            organization_name="X",
            organization_kind="buyer",
        )
    assert AuditLog.objects.count() == before


def test_role_change_records_before_and_after(make_org, make_user):
    org = make_org("provider")
    member = Membership.objects.create(user=make_user("ops@example.com"), organization=org, role=Role.MEMBER)
    services.membership_change_role(acting=owner_membership(org), membership=member, role=Role.ADMIN)
    row = AuditLog.objects.get(action="membership.role_changed")
    assert row.organization == org
    assert row.actor == org.owner
    assert row.target_id == str(member.public_id)
    assert row.before == {"user": "ops@example.com", "role": "member"}
    assert row.after == {"user": "ops@example.com", "role": "admin"}


def test_a_refused_role_change_writes_nothing(make_org):
    org = make_org("buyer")
    with pytest.raises(ApplicationError):
        services.membership_change_role(acting=owner_membership(org), membership=owner_membership(org), role="admin")
    assert not AuditLog.objects.filter(action="membership.role_changed").exists()


def test_api_key_create_and_revoke_are_audited_without_the_secret(make_org):
    org = make_org("provider")
    acting = owner_membership(org)
    api_key, raw_key = services.api_key_create(acting=acting, name="agent", scopes=["metering:write"])
    created = AuditLog.objects.get(action="api_key.created")
    assert created.organization == org
    assert created.actor == org.owner
    assert created.after == {"name": "agent", "prefix": api_key.prefix, "scopes": ["metering:write"]}
    secret = raw_key.partition(".")[2]
    assert secret not in str(created.after)
    assert secret not in created.target_id

    services.api_key_revoke(acting=acting, api_key=api_key)
    services.api_key_revoke(acting=acting, api_key=api_key)  # a second revoke changes nothing, records nothing
    revoked = AuditLog.objects.filter(action="api_key.revoked")
    assert revoked.count() == 1
    assert revoked.get().after == {"revoked": True}


def test_invitation_and_membership_removal_are_audited(make_org, make_user):
    org = make_org("buyer")
    acting = owner_membership(org)
    invitation, _token = services.invitation_create(acting=acting, email="new@example.com", role=Role.VIEWER)
    services.invitation_revoke(acting=acting, invitation=invitation)
    leaver = Membership.objects.create(user=make_user("leaver@example.com"), organization=org, role=Role.MEMBER)
    services.membership_remove(acting=acting, membership=leaver)
    actions = list(AuditLog.objects.filter(organization=org).order_by("id").values_list("action", flat=True))
    assert actions == ["invitation.created", "invitation.revoked", "membership.removed"]
    removed = AuditLog.objects.get(action="membership.removed")
    assert removed.before == {"user": "leaver@example.com", "role": "member"}
    assert removed.target_id == str(leaver.public_id)


def test_actor_labels(make_org):
    org = make_org("provider")
    api_key, _raw = OrganizationAPIKey.objects.create_key(name="agent", organization=org, scopes=[])
    by_key = audit_record(action="usage.ingested", target=org, actor=api_key, organization=org)
    assert by_key.actor is None
    assert by_key.actor_label == f"api-key:{api_key.prefix}"
    assert audit_record(action="x", target=org, actor=None).actor_label == "system"
    assert audit_record(action="x", target=org, actor=AnonymousUser()).actor_label == "system"
    assert audit_record(action="x", target=org, actor_label="system:invoice_run").actor_label == "system:invoice_run"


# --- append-only, enforced by the database ---------------------------------------------------------


@pytest.fixture
def entry(make_org):
    org = make_org("buyer")
    return audit_record(action="organization.updated", target=org, actor=org.owner, organization=org, after={"a": 1})


def refused(operation) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        operation()


def test_database_refuses_update_and_delete_in_raw_sql(entry):
    def raw(sql: str):
        def run():
            with connection.cursor() as cursor:
                cursor.execute(sql, [entry.pk])

        return run

    refused(raw("UPDATE core_auditlog SET action = 'forged' WHERE id = %s"))
    refused(raw("DELETE FROM core_auditlog WHERE id = %s"))
    refused(raw("UPDATE core_auditlog SET after = NULL WHERE id >= %s"))
    entry.refresh_from_db()
    assert entry.action == "organization.updated"
    assert entry.after == {"a": 1}


def test_database_refuses_update_and_delete_through_the_orm(entry):
    def save_changed():
        entry.action = "forged"
        entry.save()

    refused(save_changed)
    refused(lambda: AuditLog.objects.filter(pk=entry.pk).update(action="forged"))
    refused(lambda: AuditLog.objects.filter(pk=entry.pk).delete())
    refused(lambda: AuditLog.objects.all().delete())
    refused(entry.delete)
    assert AuditLog.objects.filter(pk=entry.pk, action="organization.updated").exists()


def test_inserting_stays_possible(entry):
    audit_record(action="organization.updated", target_type="x", target_id="1")
    assert AuditLog.objects.count() == 2

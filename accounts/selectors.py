"""Reads of accounts data. Every tenant-owned read takes the organisation; a foreign id is a 404."""

from __future__ import annotations

import hashlib
from uuid import UUID

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from accounts.models import (
    CompanyProfile,
    Invitation,
    Membership,
    Organization,
    OrganizationAPIKey,
    User,
)
from core.timeutils import utcnow


def membership_list_for_user(user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user, user__is_active=True).select_related("organization")


def membership_for_user(user: User, organization_public_id: UUID | str | None) -> Membership | None:
    """The user's membership in that organisation, or their first one when none is named or it is foreign."""
    memberships = membership_list_for_user(user).order_by("created_at", "id")
    wanted = _as_uuid(organization_public_id)
    if wanted is not None:
        chosen = memberships.filter(organization__public_id=wanted).first()
        if chosen is not None:
            return chosen
    return memberships.first()


def _as_uuid(value: UUID | str | None) -> UUID | None:
    """A UUID from a form or the session, or None for anything that is not one (never a crash)."""
    if value is None or isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        return None


def member_list(organization: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(organization=organization).select_related("user").order_by("user__email")


def member_get(organization: Organization, public_id: UUID) -> Membership:
    return get_object_or_404(member_list(organization), public_id=public_id)


def owner_count(organization: Organization) -> int:
    return Membership.objects.filter(organization=organization, role="owner").count()


def invitation_list_open(organization: Organization) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        organization=organization, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=utcnow()
    ).select_related("invited_by")


def invitation_get(organization: Organization, public_id: UUID) -> Invitation:
    return get_object_or_404(Invitation.objects.filter(organization=organization), public_id=public_id)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_get_by_token(token: str) -> Invitation:
    """An open, unexpired invitation by its secret token; anything else is a 404."""
    invitation = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(token_hash=token_hash(token), accepted_at__isnull=True, revoked_at__isnull=True)
        .first()
    )
    if invitation is None or invitation.expires_at <= utcnow():
        raise Http404
    return invitation


def api_key_list(organization: Organization) -> QuerySet[OrganizationAPIKey]:
    return (
        OrganizationAPIKey.objects.filter(organization=organization)
        .select_related("created_by")
        .order_by("revoked", "-created")
    )


def api_key_get(organization: Organization, public_id: UUID) -> OrganizationAPIKey:
    return get_object_or_404(api_key_list(organization), public_id=public_id)


def company_profile_get(organization: Organization) -> CompanyProfile | None:
    return CompanyProfile.objects.filter(organization=organization).prefetch_related("shareholders").first()


def organization_get_for_staff(public_id: UUID) -> Organization:
    return get_object_or_404(Organization, public_id=public_id)

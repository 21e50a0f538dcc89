"""Writes of accounts data. Each service owns its transaction and audits permission changes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from stdnum.cn import uscc as uscc_number
from stdnum.exceptions import ValidationError as StdnumValidationError

from accounts import sme
from accounts.models import (
    ApiScope,
    CompanyProfile,
    Invitation,
    Membership,
    Organization,
    OrganizationAPIKey,
    OrganizationKind,
    OrganizationStatus,
    Role,
    Shareholder,
    User,
)
from accounts.selectors import token_hash
from core.audit import audit_record
from core.errors import ApplicationError, FieldError, ValidationFailed, field_errors_from_django
from core.timeutils import utcnow

SELF_SERVICE_KINDS = {OrganizationKind.BUYER, OrganizationKind.PROVIDER, OrganizationKind.ISSUER}


def _membership_snapshot(membership: Membership) -> dict[str, Any]:
    return {"user": membership.user.email, "role": membership.role}


def _model_errors(instance: Any, *, exclude: list[str] | None = None, prefix: str = "") -> list[FieldError]:
    """What ``full_clean()`` finds wrong with an instance, as field errors (never a bare Django exception)."""
    try:
        instance.full_clean(exclude=exclude)
    except DjangoValidationError as exc:
        return field_errors_from_django(exc, prefix=prefix)
    return []


def _email_error(email: str) -> FieldError | None:
    try:
        validate_email(email)
    except DjangoValidationError:
        return FieldError("invalid_email", _("Enter a valid email address."), "email")
    return None


# --- Sign-up -----------------------------------------------------------------------------------------


def _password_errors(password: str, user: User) -> list[FieldError]:
    """Django's password validators, as errors on the ``password`` field."""
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        return [FieldError(e.code or "invalid_password", " ".join(e.messages), "password") for e in exc.error_list]
    return []


def user_signup(
    *, email: str, password: str, full_name: str, organization_name: str, organization_kind: str
) -> tuple[User, Organization]:
    """A new user with a new organisation they own. Issuers start pending until platform staff verify them."""
    errors: list[FieldError] = []
    email = User.objects.normalize_email(email.strip()).lower()
    email_error = _email_error(email)
    if email_error is not None:
        errors.append(email_error)
    elif User.objects.filter(email__iexact=email).exists():
        errors.append(FieldError("email_taken", _("An account with this email already exists."), "email"))
    if organization_kind not in SELF_SERVICE_KINDS:
        errors.append(FieldError("invalid_kind", _("Choose provider, buyer or voucher issuer."), "organization_kind"))
    if not organization_name.strip():
        errors.append(FieldError("required", _("This field is required."), "organization_name"))
    errors.extend(_password_errors(password, User(email=email, full_name=full_name)))
    if errors:
        raise ValidationFailed(errors)

    status = OrganizationStatus.PENDING if organization_kind == OrganizationKind.ISSUER else OrganizationStatus.ACTIVE
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, full_name=full_name.strip())
            organization = Organization.objects.create(
                name=organization_name.strip(), kind=organization_kind, status=status
            )
            membership = Membership.objects.create(user=user, organization=organization, role=Role.OWNER)
            audit_record(
                action="organization.created",
                target=organization,
                actor=user,
                organization=organization,
                after={"name": organization.name, "kind": organization.kind, "status": organization.status},
            )
            audit_record(
                action="membership.created",
                target=membership,
                actor=user,
                organization=organization,
                after=_membership_snapshot(membership),
            )
    except IntegrityError:
        # Two sign-ups raced for the same address; the unique index decided.
        raise ApplicationError("email_taken", _("An account with this email already exists."), field="email") from None
    return user, organization


def user_signup_invited(*, token: str, password: str, full_name: str) -> tuple[User, Membership]:
    """Sign up from an invitation link: the account gets the invited address and joins that organisation,
    without creating an organisation of its own. User and membership are created in one transaction."""
    from accounts.selectors import invitation_get_by_token

    invitation = invitation_get_by_token(token)
    email = invitation.email.lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ApplicationError(
            "email_taken", _("An account with this email already exists: log in to accept."), field="email"
        )
    password_errors = _password_errors(password, User(email=email, full_name=full_name))
    if password_errors:
        raise ValidationFailed(password_errors)
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, full_name=full_name.strip())
            membership = invitation_accept(token=token, user=user)
    except IntegrityError:
        raise ApplicationError("email_taken", _("An account with this email already exists."), field="email") from None
    return user, membership


def organization_update(*, organization: Organization, actor: User, name: str, billing_currency: str) -> Organization:
    with transaction.atomic():
        locked = Organization.objects.select_for_update().get(pk=organization.pk)
        before = {"name": locked.name, "billing_currency": locked.billing_currency}
        locked.name = name.strip()
        locked.billing_currency = billing_currency
        errors = _model_errors(locked)
        if errors:
            raise ValidationFailed(errors)
        locked.save(update_fields=["name", "billing_currency"])
        audit_record(
            action="organization.updated",
            target=locked,
            actor=actor,
            organization=locked,
            before=before,
            after={"name": locked.name, "billing_currency": locked.billing_currency},
        )
    return locked


def organization_set_status(*, organization: Organization, actor: User, status: str) -> Organization:
    """Platform staff verify (KYC), suspend or reactivate an organisation."""
    if status not in OrganizationStatus.values:
        raise ApplicationError("invalid_status", _("Unknown status."), field="status")
    with transaction.atomic():
        locked = Organization.objects.select_for_update().get(pk=organization.pk)
        before = {"status": locked.status}
        locked.status = status
        locked.save(update_fields=["status"])
        audit_record(
            action="organization.status_changed",
            target=locked,
            actor=actor,
            organization=locked,
            before=before,
            after={"status": status},
        )
    return locked


# --- Members and invitations -------------------------------------------------------------------------


def _require_role(membership: Membership, minimum: str) -> None:
    if not membership.has_role(minimum):
        raise ApplicationError(
            "permission_denied", _("Your role in this organisation does not allow this."), status_code=403
        )


def invitation_create(*, acting: Membership, email: str, role: str) -> tuple[Invitation, str]:
    """Invite someone by e-mail. Returns the invitation and its secret token (sent only by e-mail)."""
    _require_role(acting, Role.ADMIN)
    if role == Role.OWNER:
        _require_role(acting, Role.OWNER)
    if role not in Role.values:
        raise ApplicationError("invalid_role", _("Unknown role."), field="role")
    organization = acting.organization
    email = User.objects.normalize_email(email.strip()).lower()
    email_error = _email_error(email)
    if email_error is not None:
        raise ValidationFailed([email_error])
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise ApplicationError("already_member", _("This person is already a member."), field="email")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    try:
        with transaction.atomic():
            # An expired invitation is still "open" for the one-open-invitation-per-address constraint: close
            # it, or the address could never be invited again (expired invitations are not listed to revoke).
            Invitation.objects.filter(
                organization=organization,
                email__iexact=email,
                accepted_at__isnull=True,
                revoked_at__isnull=True,
                expires_at__lte=now,
            ).update(revoked_at=now)
            invitation = Invitation.objects.create(
                organization=organization,
                email=email,
                role=role,
                token_hash=token_hash(token),
                invited_by=acting.user,
                expires_at=now + timedelta(days=settings.INVITATION_VALID_DAYS),
            )
            audit_record(
                action="invitation.created",
                target=invitation,
                actor=acting.user,
                organization=organization,
                after={"email": email, "role": role},
            )
            transaction.on_commit(lambda: _send_invitation_email(invitation, token))
    except IntegrityError:
        raise ApplicationError(
            "already_invited", _("This address already has an open invitation."), field="email"
        ) from None
    return invitation, token


def _send_invitation_email(invitation: Invitation, token: str) -> None:
    base = settings.PORTAL_BASE_URL.rstrip("/")
    link = base + reverse("accounts:invitation-accept", kwargs={"token": token})
    send_mail(
        subject=f"[Suanli 算力] {invitation.invited_by.get_short_name()} invited you to {invitation.organization.name}",
        message=(
            f"{invitation.invited_by.get_full_name()} 邀请您加入 {invitation.organization.name}。\n"
            f"{invitation.invited_by.get_full_name()} invited you to join {invitation.organization.name}.\n\n"
            f"{link}\n"
        ),
        from_email=None,
        recipient_list=[invitation.email],
    )


def invitation_revoke(*, acting: Membership, invitation: Invitation) -> None:
    _require_role(acting, Role.ADMIN)
    with transaction.atomic():
        updated = Invitation.objects.filter(
            pk=invitation.pk,
            organization=acting.organization,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
        ).update(revoked_at=utcnow())
        if updated:
            audit_record(
                action="invitation.revoked",
                target=invitation,
                actor=acting.user,
                organization=acting.organization,
                before={"email": invitation.email, "role": invitation.role},
            )


def invitation_accept(*, token: str, user: User) -> Membership:
    """Join the inviting organisation. The conditional update makes a token usable once, even when raced."""
    from accounts.selectors import invitation_get_by_token

    invitation = invitation_get_by_token(token)
    if invitation.email.lower() != user.email.lower():
        raise ApplicationError(
            "wrong_account",
            _("This invitation was sent to another email address. Log in with that address."),
        )
    with transaction.atomic():
        claimed = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=utcnow()
        ).update(accepted_at=utcnow())
        if not claimed:
            raise ApplicationError("invitation_used", _("This invitation is no longer valid."))
        membership, created = Membership.objects.get_or_create(
            user=user, organization=invitation.organization, defaults={"role": invitation.role}
        )
        if created:
            audit_record(
                action="membership.created",
                target=membership,
                actor=user,
                organization=invitation.organization,
                after=_membership_snapshot(membership),
            )
    return membership


def _lock_members(acting: Membership, target: Membership) -> tuple[list[Membership], Membership, Membership]:
    """Locks every membership of the acting organisation; returns them with fresh copies of acting and target.

    Rights and the owner count are decided on these locked rows, never on the caller's copies: two owners
    demoting each other at once would otherwise both see "another owner remains", and someone demoted a moment
    ago would still act with their old role.
    """
    members = list(Membership.objects.select_for_update().filter(organization_id=acting.organization_id).order_by("pk"))
    fresh_target = next((m for m in members if m.pk == target.pk), None)
    if fresh_target is None:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    fresh_acting = next((m for m in members if m.pk == acting.pk), None)
    if fresh_acting is None:  # removed meanwhile
        raise ApplicationError(
            "permission_denied", _("Your role in this organisation does not allow this."), status_code=403
        )
    return members, fresh_acting, fresh_target


def membership_change_role(*, acting: Membership, membership: Membership, role: str) -> Membership:
    """Change a member's role. Only owners grant or take away ownership; the last owner stays an owner."""
    if role not in Role.values:
        raise ApplicationError("invalid_role", _("Unknown role."), field="role")
    with transaction.atomic():
        members, me, target = _lock_members(acting, membership)
        _require_role(me, Role.ADMIN)
        if Role.OWNER in (role, target.role):
            _require_role(me, Role.OWNER)
        owners = sum(1 for m in members if m.role == Role.OWNER)
        if target.role == Role.OWNER and role != Role.OWNER and owners <= 1:
            raise ApplicationError("last_owner", _("An organisation needs at least one owner."), field="role")
        before = _membership_snapshot(target)
        target.role = role
        target.save(update_fields=["role"])
        audit_record(
            action="membership.role_changed",
            target=target,
            actor=acting.user,
            organization=acting.organization,
            before=before,
            after=_membership_snapshot(target),
        )
    return target


def membership_remove(*, acting: Membership, membership: Membership) -> None:
    """Remove a member (admins; or anyone leaving on their own). The last owner cannot leave."""
    with transaction.atomic():
        members, me, target = _lock_members(acting, membership)
        if target.pk != me.pk:
            _require_role(me, Role.ADMIN)
            if target.role == Role.OWNER:
                _require_role(me, Role.OWNER)
        owners = sum(1 for m in members if m.role == Role.OWNER)
        if target.role == Role.OWNER and owners <= 1:
            raise ApplicationError("last_owner", _("An organisation needs at least one owner."))
        before = _membership_snapshot(target)
        target.delete()
        audit_record(
            action="membership.removed",
            target_type="accounts.Membership",
            target_id=str(membership.public_id),
            actor=acting.user,
            organization=acting.organization,
            before=before,
        )


# --- API keys ----------------------------------------------------------------------------------------


def api_key_create(*, acting: Membership, name: str, scopes: list[str]) -> tuple[OrganizationAPIKey, str]:
    """A new API key. The raw key is returned once and never stored (only its hash)."""
    _require_role(acting, Role.ADMIN)
    name = name.strip()
    errors: list[FieldError] = []
    if not name:
        errors.append(FieldError("required", _("This field is required."), "name"))
    name_max_length = OrganizationAPIKey._meta.get_field("name").max_length or 50
    if len(name) > name_max_length:
        errors.append(FieldError("max_length", _("At most %(count)d characters.") % {"count": name_max_length}, "name"))
    unknown = sorted(set(scopes) - set(ApiScope.values))
    if unknown:
        errors.append(
            FieldError("invalid_scope", _("Unknown scope: %(scopes)s") % {"scopes": ", ".join(unknown)}, "scopes")
        )
    if not scopes:
        errors.append(FieldError("required", _("Choose at least one scope."), "scopes"))
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        created, raw_key = OrganizationAPIKey.objects.create_key(
            name=name, organization=acting.organization, scopes=sorted(set(scopes)), created_by=acting.user
        )
        api_key = cast(OrganizationAPIKey, created)
        audit_record(
            action="api_key.created",
            target=api_key,
            actor=acting.user,
            organization=acting.organization,
            after={"name": name, "prefix": api_key.prefix, "scopes": api_key.scopes},
        )
    return api_key, raw_key


def api_key_revoke(*, acting: Membership, api_key: OrganizationAPIKey) -> None:
    _require_role(acting, Role.ADMIN)
    with transaction.atomic():
        updated = OrganizationAPIKey.objects.filter(
            pk=api_key.pk, organization=acting.organization, revoked=False
        ).update(revoked=True)
        if updated:
            audit_record(
                action="api_key.revoked",
                target=api_key,
                actor=acting.user,
                organization=acting.organization,
                before={"name": api_key.name, "prefix": api_key.prefix, "revoked": False},
                after={"revoked": True},
            )


def api_key_touch(*, api_key: OrganizationAPIKey) -> None:
    """Record use, at most once a minute per key, so that busy keys do not write on every request."""
    now = utcnow()
    OrganizationAPIKey.objects.filter(pk=api_key.pk).exclude(last_used_at__gt=now - timedelta(minutes=1)).update(
        last_used_at=now
    )


# --- Company profile ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareholderInput:
    name: str
    uscc: str
    share_pct: Decimal


def validate_uscc(value: str, field: str = "uscc") -> str:
    """A 统一社会信用代码 with its GB 32100-2015 check digit, normalised to upper case."""
    try:
        return str(uscc_number.validate(value.strip().upper()))
    except StdnumValidationError:
        raise ApplicationError(
            "invalid_uscc",
            _("Not a valid unified social credit code: 18 characters with a correct check digit."),
            field=field,
        ) from None


def company_profile_save(
    *,
    acting: Membership,
    legal_name: str,
    uscc: str,
    registered_province: str,
    registered_city: str,
    industry: str,
    employees: int | None,
    annual_revenue_wan: Decimal | None,
    total_assets_wan: Decimal | None,
    legal_representative: str,
    founded_on: Any = None,
    address: str = "",
    phone: str = "",
    bank_name: str = "",
    bank_account: str = "",
    shareholders: list[ShareholderInput] | None = None,
) -> CompanyProfile:
    """Create or replace the organisation's company profile; the size class follows from the 2011 standard.

    Every mistake is reported at once, per field (``shareholders[1].share_pct`` for a shareholder's), and
    nothing is saved unless everything is valid.
    """
    _require_role(acting, Role.ADMIN)
    errors: list[FieldError] = []
    try:
        uscc = validate_uscc(uscc)
    except ApplicationError as exc:
        errors.extend(exc.errors)
    measures = {"employees": employees, "annual_revenue_wan": annual_revenue_wan, "total_assets_wan": total_assets_wan}
    negative = [name for name, value in measures.items() if value is not None and value < 0]
    for name in negative:
        errors.append(FieldError("min_value", _("Cannot be negative."), name))
    size_class = ""
    if industry not in sme.INDUSTRIES:
        errors.append(FieldError("invalid_choice", _("Choose an industry from the list."), "industry"))
    elif not negative:
        try:
            size_class = sme.classify(
                industry, employees=employees, revenue_wan=annual_revenue_wan, assets_wan=total_assets_wan
            ).value
        except ValueError:
            errors.append(
                FieldError(
                    "size_measures_missing",
                    _("Your industry is sized by employees, revenue or total assets: fill in the ones it needs."),
                    "employees",
                )
            )
    holders = shareholders or []
    for index, holder in enumerate(holders):
        prefix = f"shareholders[{index}]."
        if holder.uscc:
            try:
                validate_uscc(holder.uscc)
            except ApplicationError:
                errors.append(FieldError("invalid_uscc", _("Not a valid unified social credit code."), f"{prefix}uscc"))
        candidate = Shareholder(name=holder.name.strip(), uscc="", share_pct=holder.share_pct)
        errors.extend(_model_errors(candidate, exclude=["profile", "uscc"], prefix=prefix))
    if sum((h.share_pct for h in holders), Decimal(0)) > 100:
        errors.append(FieldError("shares_over_100", _("Shareholdings add up to more than 100%."), "shareholders"))

    values = {
        "legal_name": legal_name.strip(),
        "uscc": uscc,
        "registered_province": registered_province,
        "registered_city": registered_city.strip(),
        "industry": industry,
        "employees": employees,
        "annual_revenue_wan": annual_revenue_wan,
        "total_assets_wan": total_assets_wan,
        "size_class": size_class,
        "founded_on": founded_on,
        "legal_representative": legal_representative.strip(),
        "address": address.strip(),
        "phone": phone.strip(),
        "bank_name": bank_name.strip(),
        "bank_account": bank_account.strip(),
    }
    # The model's own rules (required fields, lengths, choices) for the fields not already judged above.
    judged = {e.field for e in errors} | {"uscc", "industry", "size_class"}
    candidate_profile = CompanyProfile(organization=acting.organization, **values)
    errors.extend(_model_errors(candidate_profile, exclude=["organization", *(f for f in judged if f)]))
    if errors:
        raise ValidationFailed(errors)

    with transaction.atomic():
        profile = CompanyProfile.objects.select_for_update().filter(organization=acting.organization).first()
        before = None
        if profile is None:
            profile = CompanyProfile(organization=acting.organization, **values)
        else:
            before = {
                "uscc": profile.uscc,
                "legal_representative": profile.legal_representative,
                "size_class": profile.size_class,
            }
            for key, value in values.items():
                setattr(profile, key, value)
        profile.save()
        profile.shareholders.all().delete()
        Shareholder.objects.bulk_create(
            Shareholder(profile=profile, name=h.name.strip(), uscc=h.uscc.strip().upper(), share_pct=h.share_pct)
            for h in holders
        )
        audit_record(
            action="company_profile.saved",
            target=profile,
            target_id=str(acting.organization.public_id),
            actor=acting.user,
            organization=acting.organization,
            before=before,
            after={
                "uscc": uscc,
                "legal_representative": values["legal_representative"],
                "size_class": size_class,
                "shareholders": [h.name for h in holders],
            },
        )
    return profile

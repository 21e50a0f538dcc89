"""Writes of the metering app."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, OrganizationKind
from core.audit import audit_record
from core.errors import ApplicationError, FieldError, ValidationFailed
from core.timeutils import utcnow
from metering import signing
from metering.models import SigningKey


def signing_key_register(
    *, organization: Organization, name: str, public_key: str, actor: Any = None, actor_label: str | None = None
) -> SigningKey:
    """Register a provider's Ed25519 public key (PEM or base64 of the 32 raw bytes)."""
    errors: list[FieldError] = []
    if organization.kind != OrganizationKind.PROVIDER:
        raise ApplicationError("not_a_provider", _("Only providers report usage."), status_code=403)
    if not name.strip():
        errors.append(FieldError("required", _("This field is required."), "name"))
    raw = b""
    try:
        raw = signing.parse_public_key(public_key)
    except signing.KeyFormatError:
        errors.append(
            FieldError(
                "invalid_public_key",
                _("Paste an Ed25519 public key: PEM, or base64 of its 32 bytes (suanli-agent keygen prints it)."),
                "public_key",
            )
        )
    if errors:
        raise ValidationFailed(errors)
    fingerprint = signing.fingerprint(raw)
    try:
        with transaction.atomic():
            key = SigningKey.objects.create(
                organization=organization,
                name=name.strip(),
                public_key=raw,
                fingerprint=fingerprint,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            audit_record(
                action="signing_key.registered",
                target=key,
                actor=actor,
                actor_label=actor_label,
                organization=organization,
                after={"name": key.name, "fingerprint": fingerprint},
            )
    except IntegrityError:
        raise ApplicationError(
            "duplicate_public_key", _("This key is registered already."), field="public_key", status_code=409
        ) from None
    return key


def signing_key_revoke(
    *, organization: Organization, key: SigningKey, actor: Any = None, actor_label: str | None = None
) -> None:
    """Revoke a key: requests signed with it are refused from now on; batches it signed stay verifiable."""
    with transaction.atomic():
        updated = SigningKey.objects.filter(pk=key.pk, organization=organization, revoked_at__isnull=True).update(
            revoked_at=utcnow()
        )
        if updated:
            audit_record(
                action="signing_key.revoked",
                target=key,
                actor=actor,
                actor_label=actor_label,
                organization=organization,
                before={"fingerprint": key.fingerprint, "revoked": False},
                after={"revoked": True},
            )

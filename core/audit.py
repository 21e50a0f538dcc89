"""The audit service: one call for every change of money or permissions."""

from __future__ import annotations

from typing import Any

from django.db import models

from core.models import AuditLog


def actor_label_for(actor: Any) -> str:
    """The label of who acted: "user:<email>", "api-key:<prefix>", str(actor), or "system" for nobody."""
    if actor is None or getattr(actor, "is_anonymous", False):
        return "system"
    email = getattr(actor, "email", None)
    if email:
        return f"user:{email}"
    prefix = getattr(actor, "prefix", None)  # an API key (djangorestframework-api-key)
    if prefix:
        return f"api-key:{prefix}"
    return str(actor)


def audit_record(
    *,
    action: str,
    target: models.Model | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    actor: Any = None,
    actor_label: str | None = None,
    organization: Any = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> AuditLog:
    """Append one audit row. Call it inside the service's transaction, so that it commits with the change."""
    if target is not None:
        target_type = target_type or target._meta.label
        target_id = target_id or str(getattr(target, "public_id", None) or target.pk)
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditLog.objects.create(
        action=action,
        target_type=target_type or "",
        target_id=target_id or "",
        actor=user,
        actor_label=actor_label or actor_label_for(actor),
        organization=organization,
        before=before,
        after=after,
        ip_address=ip_address,
    )

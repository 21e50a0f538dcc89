"""Models of the metering app (DESIGN.md §4.4)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from core.ids import PublicIdModel


class SigningKey(PublicIdModel):
    """An Ed25519 public key a provider registered; its agent signs usage reports with the private half."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="signing_keys")
    name = models.CharField(_("name"), max_length=100)
    public_key = models.BinaryField(_("public key"), max_length=32)
    fingerprint = models.CharField(_("fingerprint"), max_length=60)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "fingerprint"], name="signing_key_unique_per_org"),
            models.CheckConstraint(condition=Q(fingerprint__startswith="SHA256:"), name="signing_key_fingerprint"),
        ]
        ordering = ["revoked_at", "-created_at"]
        verbose_name = _("signing key")
        verbose_name_plural = _("signing keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

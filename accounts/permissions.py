"""API authentication: ``Authorization: Api-Key <key>`` identifies the organisation (the tenant).

Views declare ``required_scopes``; the key must carry all of them. The organisation is put on the request
(``request.organization``) for the view to hand to selectors and services.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework_api_key.permissions import BaseHasAPIKey

from accounts.models import OrganizationAPIKey, OrganizationStatus
from accounts.services import api_key_touch


class HasOrganizationAPIKey(BaseHasAPIKey):
    model = OrganizationAPIKey

    def has_permission(self, request: Request, view: Any) -> bool:
        raw_key = self.get_key(request)
        if not raw_key:
            raise exceptions.NotAuthenticated(_("Send your API key: Authorization: Api-Key <key>."))
        try:
            api_key = OrganizationAPIKey.objects.select_related("organization").get_from_key(raw_key)
        except OrganizationAPIKey.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Unknown or revoked API key.")) from None
        if not api_key.is_valid(raw_key):
            raise exceptions.AuthenticationFailed(_("Unknown or revoked API key."))
        if api_key.organization.status != OrganizationStatus.ACTIVE:
            raise exceptions.PermissionDenied(_("Your organisation is not active."))
        missing = set(getattr(view, "required_scopes", ())) - set(api_key.scopes)
        if missing:
            raise exceptions.PermissionDenied(
                _("This API key lacks the scope(s): %(scopes)s") % {"scopes": ", ".join(sorted(missing))}
            )
        kinds = getattr(view, "organization_kinds", None)
        if kinds and api_key.organization.kind not in kinds:
            raise exceptions.PermissionDenied(_("This operation is not available to your kind of organisation."))
        request.organization = api_key.organization  # type: ignore[attr-defined]
        request.api_key = api_key  # type: ignore[attr-defined]
        api_key_touch(api_key=api_key)
        return True

"""API authentication: ``Authorization: Api-Key <key>`` identifies the organisation (the tenant).

``OrganizationAPIKeyAuthentication`` finds the key (401 with ``WWW-Authenticate: Api-Key`` when it is missing
or unknown); ``HasOrganizationAPIKey`` checks the organisation is active, of a kind the view serves, and that the
key carries the view's ``required_scopes``. Views read the tenant from ``request.organization``.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AnonymousUser
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework_api_key.permissions import KeyParser

from accounts.models import OrganizationAPIKey, OrganizationStatus
from accounts.services import api_key_touch

KEYWORD = "Api-Key"


class OrganizationAPIKeyAuthentication(BaseAuthentication):
    key_parser = KeyParser()

    def authenticate(self, request: Request) -> tuple[AnonymousUser, OrganizationAPIKey] | None:
        raw_key = self.key_parser.get(request)
        if not raw_key:
            return None
        try:
            api_key = cast(OrganizationAPIKey, OrganizationAPIKey.objects.get_from_key(raw_key))
        except OrganizationAPIKey.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Unknown or revoked API key.")) from None
        # get_from_key checks the hash and skips revoked keys, but not the expiry date.
        if not api_key.is_valid(raw_key) or api_key.has_expired:
            raise exceptions.AuthenticationFailed(_("Unknown or revoked API key."))
        request.organization = api_key.organization  # type: ignore[attr-defined]
        request.api_key = api_key  # type: ignore[attr-defined]
        api_key_touch(api_key=api_key)
        return AnonymousUser(), api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class HasOrganizationAPIKey(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, OrganizationAPIKey):
            raise exceptions.NotAuthenticated(_("Send your API key: Authorization: Api-Key <key>."))
        if api_key.organization.status != OrganizationStatus.ACTIVE:
            raise exceptions.PermissionDenied(_("Your organisation is not active."))
        kinds = getattr(view, "organization_kinds", None)
        if kinds and api_key.organization.kind not in kinds:
            raise exceptions.PermissionDenied(_("This operation is not available to your kind of organisation."))
        missing = set(getattr(view, "required_scopes", ())) - set(api_key.scopes)
        if missing:
            raise exceptions.PermissionDenied(
                _("This API key lacks the scope(s): %(scopes)s") % {"scopes": ", ".join(sorted(missing))}
            )
        return True

"""Accounts API: who am I (which organisation does this key belong to)."""

from typing import Any

from django.urls import path
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class OrganizationAPIKeyScheme(OpenApiAuthenticationExtension):
    """Documents ``accounts.permissions.OrganizationAPIKeyAuthentication`` as the ``ApiKey`` security scheme."""

    target_class = "accounts.permissions.OrganizationAPIKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: an organisation's API key",
        }


class OrganizationOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    billing_currency = serializers.CharField()
    api_key_scopes = serializers.ListField(child=serializers.CharField())


class OrganizationApi(APIView):
    """The organisation that owns the API key, and the key's scopes."""

    @extend_schema(responses=OrganizationOutput, operation_id="organization_get")
    def get(self, request: Request) -> Response:
        organization = request.organization  # type: ignore[attr-defined]
        payload = {
            "public_id": organization.public_id,
            "name": organization.name,
            "kind": organization.kind,
            "status": organization.status,
            "billing_currency": organization.billing_currency,
            "api_key_scopes": request.api_key.scopes,  # type: ignore[attr-defined]
        }
        return Response(OrganizationOutput(payload).data)


urlpatterns = [
    path("organization", OrganizationApi.as_view(), name="organization"),
]

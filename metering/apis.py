"""Metering API: signing keys (the usage-ingest endpoints build on them)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiScope, OrganizationKind
from core.idempotency import idempotent
from metering import selectors, services, signing
from metering.models import SigningKey


class SigningKeyOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    fingerprint = serializers.CharField()
    public_key = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)

    def get_public_key(self, key: SigningKey) -> str:
        return signing.public_key_text(bytes(key.public_key))


class SigningKeyInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    public_key = serializers.CharField(help_text="Ed25519 public key: PEM, or base64 of the 32 raw bytes")


def _actor_label(request: Request) -> str:
    return f"api-key:{request.auth.prefix}"  # type: ignore[union-attr]


class SigningKeysApi(APIView):
    """The provider's Ed25519 signing keys: list them, or register one (`suanli-agent register`)."""

    required_scopes = [ApiScope.METERING_WRITE]
    organization_kinds = [OrganizationKind.PROVIDER]

    @extend_schema(responses=SigningKeyOutput(many=True), operation_id="metering_signing_keys_list")
    def get(self, request: Request) -> Response:
        keys = selectors.signing_key_list(request.organization)  # type: ignore[attr-defined]
        return Response(SigningKeyOutput(keys, many=True).data)

    @extend_schema(
        request=SigningKeyInput, responses={201: SigningKeyOutput}, operation_id="metering_signing_keys_create"
    )
    def post(self, request: Request) -> Response:
        def handler() -> Response:
            data = SigningKeyInput(data=request.data)
            data.is_valid(raise_exception=True)
            key = services.signing_key_register(
                organization=request.organization,  # type: ignore[attr-defined]
                actor_label=_actor_label(request),
                **data.validated_data,
            )
            return Response(SigningKeyOutput(key).data, status=status.HTTP_201_CREATED)

        return idempotent(request, handler)


class SigningKeyApi(APIView):
    """One signing key; DELETE revokes it (signatures it made stay verifiable)."""

    required_scopes = [ApiScope.METERING_WRITE]
    organization_kinds = [OrganizationKind.PROVIDER]

    @extend_schema(responses=SigningKeyOutput, operation_id="metering_signing_keys_get")
    def get(self, request: Request, signing_key_id: UUID) -> Response:
        key = selectors.signing_key_get(request.organization, signing_key_id)  # type: ignore[attr-defined]
        return Response(SigningKeyOutput(key).data)

    @extend_schema(responses={204: None}, operation_id="metering_signing_keys_revoke")
    def delete(self, request: Request, signing_key_id: UUID) -> Response:
        organization = request.organization  # type: ignore[attr-defined]
        key = selectors.signing_key_get(organization, signing_key_id)
        services.signing_key_revoke(organization=organization, key=key, actor_label=_actor_label(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecordResultOutput(serializers.Serializer):
    record_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["accepted", "duplicate", "conflict", "rejected"])
    code = serializers.CharField(allow_null=True)
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)


class IngestOutput(serializers.Serializer):
    batch_id = serializers.IntegerField()
    accepted = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    conflict = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = RecordResultOutput(many=True)


class UsageRecordInput(serializers.Serializer):
    """One usage record (documentation of the wire format; the body is validated by metering.ingest)."""

    record_id = serializers.CharField(max_length=128, help_text="unique per provider; a retry reuses it")
    lease_id = serializers.UUIDField(required=False, help_text="or contract_id, exactly one")
    contract_id = serializers.UUIDField(required=False)
    window_start = serializers.DateTimeField(help_text="RFC 3339, UTC; the window is [start, end), at most 1 h")
    window_end = serializers.DateTimeField()
    accelerator_seconds = serializers.IntegerField(min_value=0, required=False)
    avg_utilization_pct = serializers.FloatField(min_value=0, max_value=100, required=False)
    energy_wh = serializers.IntegerField(min_value=0, required=False, help_text="IT energy, measured")
    tokens_in = serializers.IntegerField(min_value=0, required=False)
    tokens_out = serializers.IntegerField(min_value=0, required=False)
    requests = serializers.IntegerField(min_value=0, required=False)


class UsageBatchInput(serializers.Serializer):
    records = UsageRecordInput(many=True, help_text="1 to 10,000 records")


# Fields named "source" and "data" would shadow Serializer attributes, so the event is declared inline.
UsageCloudEventInput = inline_serializer(
    name="UsageCloudEventInput",
    fields={
        "specversion": serializers.CharField(default="1.0"),
        "id": serializers.CharField(help_text="the record_id"),
        "source": serializers.CharField(),
        "type": serializers.CharField(),
        "data": UsageRecordInput(help_text="the measures (record_id may be omitted)"),
    },
)


class RawBodyParser(BaseParser):
    """The body is read raw: it is hashed for the signature and stored verbatim."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return None


class UsageRecordsApi(APIView):
    """Report usage: a signed batch of up to 10,000 records (JSON ``{"records": [...]}`` or a CloudEvents batch).

    Each record comes back ``accepted``, ``duplicate`` (same id, same content), ``conflict`` (same id, other
    content) or ``rejected`` with a code. Accepted records are durable when this answers.
    """

    required_scopes = [ApiScope.METERING_WRITE]
    organization_kinds = [OrganizationKind.PROVIDER]
    parser_classes = [RawBodyParser]

    @extend_schema(
        request={
            "application/json": UsageBatchInput,
            "application/cloudevents-batch+json": serializers.ListSerializer(child=UsageCloudEventInput),
        },
        responses=IngestOutput,
        operation_id="metering_records_ingest",
    )
    def post(self, request: Request) -> Response:
        result = services.usage_batch_ingest(
            organization=request.organization,  # type: ignore[attr-defined]
            method=request.method or "POST",
            path=request.path,
            body=request.body,
            content_type=request.content_type or "",
            timestamp=request.headers.get(signing.TIMESTAMP_HEADER),
            signature=request.headers.get(signing.SIGNATURE_HEADER),
        )
        payload = {
            "batch_id": result.batch_id,
            **{
                status_name: result.count(status_name)
                for status_name in ("accepted", "duplicate", "conflict", "rejected")
            },
            "results": [vars(r) for r in result.results],
        }
        return Response(IngestOutput(payload).data)


urlpatterns = [
    path("metering/records", UsageRecordsApi.as_view(), name="metering-records"),
    path("metering/signing-keys", SigningKeysApi.as_view(), name="metering-signing-keys"),
    path("metering/signing-keys/<uuid:signing_key_id>", SigningKeyApi.as_view(), name="metering-signing-key"),
]

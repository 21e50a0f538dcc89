"""Metering API: signing keys (the usage-ingest endpoints build on them)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiScope, OrganizationKind
from core.idempotency import idempotent
from marketplace import selectors as market_selectors
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


class FastJSONRenderer(JSONRenderer):
    """JSON through orjson (compact, UTF-8, like DRF's settings): 10,000 per-record answers render in about a
    millisecond. What orjson cannot encode (lazy translations in error bodies) goes through DRF's renderer."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is not None:
            try:
                return orjson.dumps(data)
            except TypeError:
                pass
        return super().render(data, accepted_media_type, renderer_context)


class UsageRecordsApi(APIView):
    """Report usage: a signed batch of up to 10,000 records (JSON ``{"records": [...]}`` or a CloudEvents batch).

    Each record comes back ``accepted``, ``duplicate`` (same id, same content), ``conflict`` (same id, other
    content) or ``rejected`` with a code. Accepted records are durable when this answers.
    """

    required_scopes = [ApiScope.METERING_WRITE]
    organization_kinds = [OrganizationKind.PROVIDER]
    parser_classes = [RawBodyParser]
    renderer_classes = [FastJSONRenderer]

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
        # Plain dicts in IngestOutput's shape: serialising 10,000 results through DRF fields costs more than
        # storing them (IngestOutput documents the schema).
        payload = {
            "batch_id": result.batch_id,
            **{
                status_name: result.count(status_name)
                for status_name in ("accepted", "duplicate", "conflict", "rejected")
            },
            "results": [
                {"record_id": r.record_id, "status": r.status, "code": r.code, "field": r.field, "message": r.message}
                for r in result.results
            ],
        }
        return Response(payload)


class DisputeCreateInput(serializers.Serializer):
    lease_id = serializers.UUIDField()
    period_start = serializers.DateTimeField(help_text="RFC 3339, a whole UTC hour inside the lease")
    period_end = serializers.DateTimeField()
    reason = serializers.CharField(max_length=2000)
    observed_downtime_minutes = serializers.IntegerField(
        min_value=0, required=False, allow_null=True, help_text="your measured downtime; else the reported shortfall"
    )
    observations = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")


class DisputeOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    lease_id = serializers.UUIDField(source="lease.public_id")
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    reason = serializers.CharField()
    observed_downtime_minutes = serializers.IntegerField(allow_null=True)
    observations = serializers.CharField()
    claimed_accelerator_seconds = serializers.IntegerField()
    status = serializers.CharField()
    provider_response = serializers.CharField()
    responded_at = serializers.DateTimeField(allow_null=True)
    credited_accelerator_seconds = serializers.IntegerField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    resolution_note = serializers.CharField()
    created_at = serializers.DateTimeField()


class MarketSideApiView(APIView):
    """Buyers and providers; reads need market:read, writes market:write."""

    organization_kinds = [OrganizationKind.BUYER, OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_READ]

    def get_permissions(self) -> Any:
        self.required_scopes = [ApiScope.MARKET_READ if self.request.method == "GET" else ApiScope.MARKET_WRITE]
        return super().get_permissions()


class DisputesApi(MarketSideApiView):
    """Usage disputes on your leases (GET); a buyer opens one (POST) with its observations."""

    @extend_schema(responses=DisputeOutput(many=True), operation_id="metering_disputes_list")
    def get(self, request: Request) -> Response:
        disputes = selectors.dispute_list(request.organization)[:500]  # type: ignore[attr-defined]
        return Response(DisputeOutput(disputes, many=True).data)

    @extend_schema(request=DisputeCreateInput, responses={201: DisputeOutput}, operation_id="metering_disputes_create")
    def post(self, request: Request) -> Response:
        def handler() -> Response:
            data = DisputeCreateInput(data=request.data)
            data.is_valid(raise_exception=True)
            values = dict(data.validated_data)
            organization = request.organization  # type: ignore[attr-defined]
            lease = market_selectors.lease_get(organization, values.pop("lease_id"))
            dispute = services.dispute_open(
                organization=organization,
                lease=lease,
                data=services.DisputeInput(**values),
                actor_label=_actor_label(request),
            )
            return Response(DisputeOutput(dispute).data, status=status.HTTP_201_CREATED)

        return idempotent(request, handler)


class DisputeApi(MarketSideApiView):
    @extend_schema(responses=DisputeOutput, operation_id="metering_disputes_get")
    def get(self, request: Request, dispute_id: UUID) -> Response:
        return Response(DisputeOutput(selectors.dispute_get(request.organization, dispute_id)).data)  # type: ignore[attr-defined]


class ObservationInput(serializers.Serializer):
    lease_id = serializers.CharField(max_length=64)
    hour_start = serializers.DateTimeField(help_text="RFC 3339, the start of a whole UTC hour that has ended")
    accelerator_seconds = serializers.IntegerField(
        min_value=0, max_value=2**62, help_text="accelerator-seconds you could use in that hour"
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ObservationsInput(serializers.Serializer):
    observations = ObservationInput(  # type: ignore[call-arg]  # ListSerializer takes max_length (DRF 3.14+)
        many=True, allow_empty=False, max_length=services.OBSERVATIONS_PER_REQUEST
    )


class ObservationResultOutput(serializers.Serializer):
    lease_id = serializers.CharField()
    hour_start = serializers.DateTimeField(allow_null=True)
    status = serializers.CharField(help_text="accepted, duplicate, conflict or rejected")
    code = serializers.CharField()
    field = serializers.CharField()
    message = serializers.CharField()


class ObservationsOutput(serializers.Serializer):
    counts = serializers.DictField(child=serializers.IntegerField())
    results = ObservationResultOutput(many=True)
    disputes_opened = DisputeOutput(many=True)


class ObservationOutput(serializers.Serializer):
    lease_id = serializers.UUIDField(source="lease.public_id")
    hour_start = serializers.DateTimeField()
    accelerator_seconds = serializers.IntegerField()
    note = serializers.CharField()
    dispute_id = serializers.UUIDField(source="dispute.public_id", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class ObservationsApi(APIView):
    """A buyer's own measurements per lease-hour (idempotent by lease and hour). When the provider reported
    clearly more than you observed (see `METERING_OBSERVATION_GAP`), a dispute over those hours opens."""

    organization_kinds = [OrganizationKind.BUYER]
    required_scopes = [ApiScope.MARKET_READ]

    def get_permissions(self) -> Any:
        self.required_scopes = [ApiScope.MARKET_READ if self.request.method == "GET" else ApiScope.METERING_WRITE]
        return super().get_permissions()

    @extend_schema(responses=ObservationOutput(many=True), operation_id="metering_observations_list")
    def get(self, request: Request) -> Response:
        observations = selectors.usage_observation_list(request.organization)[:1000]  # type: ignore[attr-defined]
        return Response(ObservationOutput(observations, many=True).data)

    @extend_schema(
        request=ObservationsInput, responses={200: ObservationsOutput}, operation_id="metering_observations_submit"
    )
    def post(self, request: Request) -> Response:
        data = ObservationsInput(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = services.usage_observations_submit(
            organization=request.organization,  # type: ignore[attr-defined]
            observations=[services.ObservationInput(**item) for item in data.validated_data["observations"]],
            actor_label=_actor_label(request),
        )
        payload = {
            "counts": {name: outcome.count(name) for name in ("accepted", "duplicate", "conflict", "rejected")},
            "results": [vars(r) for r in outcome.results],
            "disputes_opened": outcome.disputes,
        }
        return Response(ObservationsOutput(payload).data)


class LeaseHourOutput(serializers.Serializer):
    hour_start = serializers.DateTimeField()
    contracted_accelerator_seconds = serializers.IntegerField()
    delivered_accelerator_seconds = serializers.IntegerField()
    utilization_bp = serializers.IntegerField(allow_null=True)
    energy_wh = serializers.IntegerField()
    energy_estimated_wh = serializers.IntegerField()
    missing = serializers.BooleanField()
    over_reported = serializers.BooleanField()


class LeaseUsageOutput(serializers.Serializer):
    lease_id = serializers.UUIDField()
    contracted_accelerator_seconds = serializers.IntegerField()
    delivered_accelerator_seconds = serializers.IntegerField()
    availability = serializers.DecimalField(max_digits=7, decimal_places=6, allow_null=True)
    sla_credit_ratio = serializers.DecimalField(max_digits=5, decimal_places=4)
    energy_wh = serializers.IntegerField()
    energy_estimated_wh = serializers.IntegerField()
    missing_hours = serializers.IntegerField()
    hours = LeaseHourOutput(many=True)


class LeaseUsageApi(MarketSideApiView):
    """A lease's usage hour by hour against the contract (the last 31 days of the lease at most)."""

    @extend_schema(responses=LeaseUsageOutput, operation_id="metering_lease_usage")
    def get(self, request: Request, lease_id: UUID) -> Response:
        view = selectors.lease_usage(request.organization, lease_id)  # type: ignore[attr-defined]
        s = view.summary
        payload = {
            "lease_id": view.lease.public_id,
            "contracted_accelerator_seconds": s.contracted_accelerator_seconds,
            "delivered_accelerator_seconds": s.delivered_accelerator_seconds,
            "availability": s.availability,
            "sla_credit_ratio": s.sla_credit_ratio,
            "energy_wh": s.energy_wh,
            "energy_estimated_wh": s.energy_estimated_wh,
            "missing_hours": s.missing_hours,
            "hours": [_hour(h) for h in view.hours],
        }
        return Response(LeaseUsageOutput(payload).data)


def _hour(hour: Any) -> dict[str, Any]:
    return {str(name): getattr(hour, str(name)) for name in LeaseHourOutput().fields}


urlpatterns = [
    path("metering/records", UsageRecordsApi.as_view(), name="metering-records"),
    path("metering/signing-keys", SigningKeysApi.as_view(), name="metering-signing-keys"),
    path("metering/signing-keys/<uuid:signing_key_id>", SigningKeyApi.as_view(), name="metering-signing-key"),
    path("metering/disputes", DisputesApi.as_view(), name="metering-disputes"),
    path("metering/observations", ObservationsApi.as_view(), name="metering-observations"),
    path("metering/disputes/<uuid:dispute_id>", DisputeApi.as_view(), name="metering-dispute"),
    path("metering/leases/<uuid:lease_id>/usage", LeaseUsageApi.as_view(), name="metering-lease-usage"),
]

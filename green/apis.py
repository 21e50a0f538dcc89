"""Green API: the provider's certificate lots (create one, list, get, withdraw)."""

from __future__ import annotations

from uuid import UUID

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiScope, OrganizationKind
from core.idempotency import idempotent
from green import selectors, services
from green.models import CertificateLot


class LotOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    site_id = serializers.UUIDField(source="site.public_id")
    registry = serializers.CharField()
    serial_first = serializers.IntegerField()
    serial_last = serializers.IntegerField()
    certificate_count = serializers.IntegerField()
    energy_wh = serializers.IntegerField()
    allocated_wh = serializers.IntegerField()
    remaining_wh = serializers.SerializerMethodField()
    production_month = serializers.DateField()
    energy_source = serializers.CharField(source="source")
    market = serializers.CharField()
    province = serializers.CharField()
    bundled_with_power = serializers.BooleanField()
    expires_on = serializers.DateField()
    evidence_text = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_remaining_wh(self, lot: CertificateLot) -> int:
        return lot.remaining_wh


class LotInput(serializers.Serializer):
    """Field checks beyond types (ranges, overlaps, expiry) are the service's, so every error comes back at once."""

    site_id = serializers.UUIDField()
    registry = serializers.CharField(max_length=8, help_text="GEC, I-REC or GO")
    serial_first = serializers.IntegerField()
    serial_last = serializers.IntegerField()
    certificate_count = serializers.IntegerField()
    energy_wh = serializers.IntegerField(required=False, help_text="optional; 1,000,000 Wh per certificate")
    production_month = serializers.DateField(help_text="the first day of the month, e.g. 2026-09-01")
    energy_source = serializers.CharField(max_length=12, help_text="wind, solar, hydro, biomass, geothermal, other")
    province = serializers.CharField(max_length=2, help_text="GB/T 2260 province code, e.g. 64")
    bundled_with_power = serializers.BooleanField(default=False)
    evidence_text = serializers.CharField(help_text="the declared-for-consumption evidence")


def _actor_label(request: Request) -> str:
    return f"api-key:{request.auth.prefix}"  # type: ignore[union-attr]


class LotsApi(APIView):
    """The provider's certificate lots: list them, or register one."""

    required_scopes = [ApiScope.GREEN_WRITE]
    organization_kinds = [OrganizationKind.PROVIDER]

    @extend_schema(responses=LotOutput(many=True), operation_id="green_lots_list")
    def get(self, request: Request) -> Response:
        lots = selectors.lot_list(request.organization)  # type: ignore[attr-defined]
        return Response(LotOutput(lots, many=True).data)

    @extend_schema(request=LotInput, responses={201: LotOutput}, operation_id="green_lots_create")
    def post(self, request: Request) -> Response:
        def handler() -> Response:
            data = LotInput(data=request.data)
            data.is_valid(raise_exception=True)
            values = dict(data.validated_data)
            values["source"] = values.pop("energy_source")
            lot = services.lot_create(
                organization=request.organization,  # type: ignore[attr-defined]
                actor_label=_actor_label(request),
                **values,
            )
            return Response(LotOutput(lot).data, status=status.HTTP_201_CREATED)

        return idempotent(request, handler)


class LotApi(APIView):
    """One certificate lot."""

    required_scopes = [ApiScope.GREEN_WRITE]
    organization_kinds = [OrganizationKind.PROVIDER]

    @extend_schema(responses=LotOutput, operation_id="green_lots_get")
    def get(self, request: Request, lot_id: UUID) -> Response:
        return Response(LotOutput(selectors.lot_get(request.organization, lot_id)).data)  # type: ignore[attr-defined]


class LotWithdrawApi(APIView):
    """Withdraw a lot nothing was allocated from."""

    required_scopes = [ApiScope.GREEN_WRITE]
    organization_kinds = [OrganizationKind.PROVIDER]

    @extend_schema(request=None, responses=LotOutput, operation_id="green_lots_withdraw")
    def post(self, request: Request, lot_id: UUID) -> Response:
        organization = request.organization  # type: ignore[attr-defined]

        def handler() -> Response:
            lot = selectors.lot_get(organization, lot_id)
            lot = services.lot_withdraw(organization=organization, lot=lot, actor_label=_actor_label(request))
            return Response(LotOutput(lot).data)

        return idempotent(request, handler)


urlpatterns = [
    path("green/lots", LotsApi.as_view(), name="green-lots"),
    path("green/lots/<uuid:lot_id>", LotApi.as_view(), name="green-lot"),
    path("green/lots/<uuid:lot_id>/withdraw", LotWithdrawApi.as_view(), name="green-lot-withdraw"),
]

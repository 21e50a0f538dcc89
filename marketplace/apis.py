"""Supply API (/api/v1/): the public accelerator catalog and pool listings, a provider's own sites and pools,
and attestation submission. Views parse, call one service or selector, and render."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiScope, OrganizationAPIKey, OrganizationKind
from accounts.regions import province_choices
from core.idempotency import idempotent
from core.pagination import StrictLimitOffsetPagination
from core.tenancy import public
from marketplace import latency, selectors, selectors_tokens, services, units
from marketplace.models import (
    AcceleratorModel,
    Attestation,
    Bid,
    EndpointStatus,
    Lease,
    LeaseStatus,
    Offer,
    OrderStatus,
    Pool,
    PriceUnit,
    ServedModel,
    Site,
    TokenBid,
    TokenContract,
    TokenEndpoint,
    Workload,
)

# --- Output ---------------------------------------------------------------------------------------------


class FigureOutput(serializers.Serializer):
    value = serializers.CharField(help_text="Decimal, per accelerator-hour (or per pool-hour in *_total)")
    unit = serializers.ChoiceField(choices=[u.value for u in units.Unit])
    basis = serializers.ChoiceField(choices=[b.value for b in units.Basis])
    formula_version = serializers.CharField()


class NormalisedOutput(serializers.Serializer):
    scu = FigureOutput(allow_null=True)
    bwu = FigureOutput(allow_null=True)
    h100e = FigureOutput(allow_null=True, help_text="H100 SXM5 equivalents: for familiarity only")


def normalised_dict(normalised: units.Normalised) -> dict[str, Any]:
    return {
        "scu": normalised.scu.as_dict() if normalised.scu else None,
        "bwu": normalised.bwu.as_dict() if normalised.bwu else None,
        "h100e": normalised.h100e.as_dict() if normalised.h100e else None,
    }


class AcceleratorModelOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    model = serializers.CharField(source="name")
    dense_fp16_bf16_tflops = serializers.DecimalField(
        source="dense_tflops", max_digits=10, decimal_places=3, allow_null=True
    )
    standard_units = serializers.SerializerMethodField()

    class Meta:
        model = AcceleratorModel
        fields = [
            "id",
            "vendor",
            "model",
            "form_factor",
            "domestic",
            "software_stack",
            "fp64_tflops",
            "fp32_tflops",
            "tf32_tflops",
            "bf16_tflops",
            "fp16_tflops",
            "fp8_tflops",
            "int8_tops",
            "dense_fp16_bf16_tflops",
            "memory_gb",
            "memory_bw_tbps",
            "tdp_w",
            "interconnect",
            "source_url",
            "standard_units",
        ]

    @extend_schema(responses=NormalisedOutput)
    def get_standard_units(self, obj: AcceleratorModel) -> dict[str, Any]:
        return normalised_dict(obj.normalised())


class SiteOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    hub = serializers.CharField(source="hub.code", allow_null=True, default=None)
    cluster = serializers.CharField(source="cluster.name_zh", allow_null=True, default=None)

    class Meta:
        model = Site
        fields = [
            "id",
            "name",
            "province",
            "city",
            "hub",
            "cluster",
            "grid_region",
            "pue",
            "pue_period_start",
            "pue_period_end",
            "green_share_pct",
            "latency_tier",
            "dengbao_level",
            "status",
            "created_at",
        ]


class ShareOutput(serializers.Serializer):
    organization = serializers.UUIDField(source="organization.public_id")
    name = serializers.CharField(source="organization.name")
    share_pct = serializers.DecimalField(max_digits=5, decimal_places=2)


class PoolListingOutput(serializers.ModelSerializer):
    """What everyone may see of a listed pool."""

    id = serializers.UUIDField(source="public_id")
    provider = serializers.CharField(source="organization.name")
    accelerator_model = serializers.UUIDField(source="accelerator_model.public_id")
    accelerator_model_name = serializers.CharField(source="accelerator_model.__str__")
    domestic = serializers.BooleanField(source="accelerator_model.domestic")
    province = serializers.CharField(source="site.province")
    hub = serializers.CharField(source="site.hub.code", allow_null=True, default=None)
    grid_region = serializers.CharField(source="site.grid_region")
    pue = serializers.DecimalField(source="site.pue", max_digits=4, decimal_places=2)
    green_share_pct = serializers.DecimalField(source="site.green_share_pct", max_digits=5, decimal_places=2)
    latency_tier = serializers.CharField(source="site.latency_tier")
    standard_units = serializers.SerializerMethodField(help_text="per accelerator-hour")
    standard_units_total = serializers.SerializerMethodField(help_text="for the whole pool per hour")

    class Meta:
        model = Pool
        fields = [
            "id",
            "name",
            "provider",
            "accelerator_model",
            "accelerator_model_name",
            "domestic",
            "accelerator_count",
            "interconnect",
            "software_stack",
            "verified",
            "province",
            "hub",
            "grid_region",
            "pue",
            "green_share_pct",
            "latency_tier",
            "standard_units",
            "standard_units_total",
        ]

    @extend_schema(responses=NormalisedOutput)
    def get_standard_units(self, obj: Pool) -> dict[str, Any]:
        return normalised_dict(obj.normalised())

    @extend_schema(responses=NormalisedOutput)
    def get_standard_units_total(self, obj: Pool) -> dict[str, Any]:
        return normalised_dict(obj.normalised().for_count(obj.accelerator_count))


class PoolOutput(PoolListingOutput):
    """A provider's own pool: the listing fields and everything else."""

    site = serializers.UUIDField(source="site.public_id")
    current_attestation = serializers.UUIDField(source="current_attestation.public_id", allow_null=True, default=None)
    shares = ShareOutput(many=True)

    class Meta(PoolListingOutput.Meta):
        fields = [
            *PoolListingOutput.Meta.fields,
            "site",
            "status",
            "current_attestation",
            "retest_requested_at",
            "shares",
            "created_at",
            "updated_at",
        ]


class AttestationOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    pool = serializers.UUIDField(source="pool.public_id")
    standard_units = serializers.SerializerMethodField(help_text="per accelerator-hour, from these figures")

    class Meta:
        model = Attestation
        fields = [
            "id",
            "pool",
            "status",
            "measured_tflops",
            "measured_bw_tbps",
            "tokens_per_s",
            "reference_model",
            "reference_latency_ms",
            "declared_tflops",
            "declared_bw_tbps",
            "tflops_ratio",
            "bw_ratio",
            "formula_version",
            "tool",
            "raw_output",
            "retest",
            "source",
            "submitted_by_label",
            "created_at",
            "standard_units",
        ]

    @extend_schema(responses=NormalisedOutput)
    def get_standard_units(self, obj: Attestation) -> dict[str, Any]:
        return normalised_dict(
            units.normalise(
                datasheet_tflops=None,
                datasheet_tbps=None,
                attested_tflops=obj.measured_tflops,
                attested_tbps=obj.measured_bw_tbps,
            )
        )


# --- Input ----------------------------------------------------------------------------------------------


class AttestationInputSerializer(serializers.Serializer):
    measured_tflops = serializers.DecimalField(
        max_digits=10, decimal_places=3, help_text="dense FP16/BF16 TFLOPS per accelerator (GEMM)"
    )
    measured_bw_tbps = serializers.DecimalField(max_digits=8, decimal_places=4, help_text="memory bandwidth, TB/s")
    raw_output = serializers.CharField(trim_whitespace=False, max_length=services.MAX_RAW_OUTPUT)
    tokens_per_s = serializers.DecimalField(max_digits=12, decimal_places=2, required=False, allow_null=True)
    reference_model = serializers.CharField(required=False, allow_blank=True, max_length=120, default="")
    reference_latency_ms = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    tool = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    request_review = serializers.BooleanField(
        required=False, default=False, help_text="send figures above 1.5 x the datasheet to staff review"
    )


# --- Views ----------------------------------------------------------------------------------------------


class CatalogPagination(StrictLimitOffsetPagination):
    default_limit = 100
    max_limit = 500


class PublicApiView(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []


class AcceleratorListApi(PublicApiView):
    """The accelerator catalog: datasheet peaks (dense, no sparsity; null = unknown) and standard units."""

    @extend_schema(
        responses=AcceleratorModelOutput(many=True),
        parameters=[
            OpenApiParameter("vendor", str, description="exact vendor name, e.g. Huawei"),
            OpenApiParameter("domestic", bool, description="国产 only (true) or foreign only (false)"),
        ],
        operation_id="catalog_accelerators_list",
        auth=[],
    )
    def get(self, request: Request) -> Response:
        raw_domestic = request.query_params.get("domestic")
        domestic: bool | None = None
        if raw_domestic is not None:
            try:  # true/false/1/0/yes/no; anything else is refused, not read as false
                domestic = serializers.BooleanField().run_validation(raw_domestic)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"domestic": exc.detail}) from None
        models = selectors.accelerator_model_list(vendor=request.query_params.get("vendor") or None, domestic=domestic)
        return Response(AcceleratorModelOutput(models, many=True).data)


class AcceleratorDetailApi(PublicApiView):
    @extend_schema(responses=AcceleratorModelOutput, operation_id="catalog_accelerators_retrieve", auth=[])
    def get(self, request: Request, model_id: UUID) -> Response:
        return Response(AcceleratorModelOutput(selectors.accelerator_model_get(model_id)).data)


class PoolListingListApi(PublicApiView):
    """Listed pools of every provider, verified first; only their public listing fields."""

    pagination_class = CatalogPagination

    @extend_schema(responses=PoolListingOutput(many=True), operation_id="listings_pools_list", auth=[])
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.pool_listing_list(), request, view=self)
        return paginator.get_paginated_response(PoolListingOutput(page, many=True).data)


class PoolListingDetailApi(PublicApiView):
    @extend_schema(responses=PoolListingOutput, operation_id="listings_pools_retrieve", auth=[])
    def get(self, request: Request, pool_id: UUID) -> Response:
        return Response(PoolListingOutput(selectors.pool_listing_get(pool_id)).data)


class ProviderApiView(APIView):
    organization_kinds = [OrganizationKind.PROVIDER]


class SiteListApi(ProviderApiView):
    """Your organisation's sites (data centres)."""

    @extend_schema(responses=SiteOutput(many=True), operation_id="sites_list")
    def get(self, request: Request) -> Response:
        return Response(SiteOutput(selectors.site_list(request.organization), many=True).data)  # type: ignore[attr-defined]


class SiteDetailApi(ProviderApiView):
    @extend_schema(responses=SiteOutput, operation_id="sites_retrieve")
    def get(self, request: Request, site_id: UUID) -> Response:
        return Response(SiteOutput(selectors.site_get(request.organization, site_id)).data)  # type: ignore[attr-defined]


class PoolListApi(ProviderApiView):
    """Your organisation's pools, with revenue shares and standard units."""

    @extend_schema(responses=PoolOutput(many=True), operation_id="pools_list")
    def get(self, request: Request) -> Response:
        return Response(PoolOutput(selectors.pool_list(request.organization), many=True).data)  # type: ignore[attr-defined]


class PoolDetailApi(ProviderApiView):
    @extend_schema(responses=PoolOutput, operation_id="pools_retrieve")
    def get(self, request: Request, pool_id: UUID) -> Response:
        return Response(PoolOutput(selectors.pool_get(request.organization, pool_id)).data)  # type: ignore[attr-defined]


class PoolAttestationsApi(ProviderApiView):
    """A pool's attestation history (GET) and a new attestation (POST, scope supply:write).

    Figures above 1.5 x the datasheet peak are refused (400, code ``above_datasheet``) unless
    ``request_review`` is true; then they are stored as ``pending_review`` and do not rate the pool until
    platform staff accept them. Send an ``Idempotency-Key`` header to retry safely."""

    def get_permissions(self) -> Any:
        self.required_scopes = [ApiScope.SUPPLY_WRITE] if self.request.method == "POST" else []
        return super().get_permissions()

    @extend_schema(responses=AttestationOutput(many=True), operation_id="pools_attestations_list")
    def get(self, request: Request, pool_id: UUID) -> Response:
        organization = request.organization  # type: ignore[attr-defined]
        pool = selectors.pool_get(organization, pool_id)
        return Response(AttestationOutput(selectors.attestation_list(organization, pool=pool), many=True).data)

    @extend_schema(
        request=AttestationInputSerializer,
        responses={201: AttestationOutput},
        operation_id="pools_attestations_create",
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    def post(self, request: Request, pool_id: UUID) -> Response:
        organization = request.organization  # type: ignore[attr-defined]
        pool = selectors.pool_get(organization, pool_id)

        def handler() -> Response:
            serializer = AttestationInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            attestation = services.attestation_submit(
                organization=organization,
                pool=pool,
                data=services.AttestationInput(**serializer.validated_data),
                api_key=request.auth if isinstance(request.auth, OrganizationAPIKey) else None,
            )
            return Response(AttestationOutput(attestation).data, status=status.HTTP_201_CREATED)

        return idempotent(request, handler)


class AttestationDetailApi(ProviderApiView):
    @extend_schema(responses=AttestationOutput, operation_id="attestations_retrieve")
    def get(self, request: Request, attestation_id: UUID) -> Response:
        attestation = selectors.attestation_get(request.organization, attestation_id)  # type: ignore[attr-defined]
        return Response(AttestationOutput(attestation).data)


# --- Market: offers, bids, leases (DESIGN.md §4.3) ------------------------------------------------------


class OfferOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    pool = serializers.UUIDField(source="pool.public_id")

    class Meta:
        model = Offer
        fields = ["id", "pool", "accelerators", "start", "end", "ask", "currency", "min_lease_hours", "status"]


class BidOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    accelerator_models: Any = serializers.SlugRelatedField(slug_field="public_id", many=True, read_only=True)
    hubs: Any = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)

    class Meta:
        model = Bid
        fields = [
            "id",
            "accelerators",
            "hours",
            "earliest_start",
            "latest_end",
            "limit_price",
            "price_unit",
            "currency",
            "workload",
            "accelerator_models",
            "min_tflops",
            "min_memory_gb",
            "hubs",
            "provinces",
            "min_green_share_pct",
            "max_pue",
            "domestic_only",
            "verified_only",
            "split_allowed",
            "status",
            "filled_accelerators",
        ]


class LeaseEventOutput(serializers.Serializer):
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    note = serializers.CharField()
    created_at = serializers.DateTimeField()


class LeaseOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    bid = serializers.UUIDField(source="bid.public_id")
    offer = serializers.UUIDField(source="offer.public_id")
    pool = serializers.UUIDField(source="pool.public_id")
    buyer = serializers.CharField(source="buyer.name")
    provider = serializers.CharField(source="provider.name")

    class Meta:
        model = Lease
        fields = [
            "id",
            "bid",
            "offer",
            "pool",
            "buyer",
            "provider",
            "accelerators",
            "start",
            "end",
            "price",
            "currency",
            "status",
            "confirm_by",
        ]


class LeaseDetailOutput(LeaseOutput):
    events = LeaseEventOutput(many=True, read_only=True)

    class Meta(LeaseOutput.Meta):
        fields = [*LeaseOutput.Meta.fields, "events"]


PRICE_FIELD: dict[str, Any] = {"max_digits": 20, "decimal_places": 6}
MAX_INT = 2**31 - 1  # PostgreSQL integer: larger counts are refused (400), not a database error (500)


def status_filter(request: Request, choices: Any) -> str | None:
    """The ``?status=`` filter, one of ``choices``; an unknown value is refused (400), not sent to the database."""
    raw = request.query_params.get("status")
    if not raw:
        return None
    try:
        return serializers.ChoiceField(choices=choices).run_validation(raw)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"status": exc.detail}) from None


class OfferInputSerializer(serializers.Serializer):
    pool = serializers.UUIDField()
    accelerators = serializers.IntegerField(max_value=MAX_INT)
    start = serializers.DateTimeField(help_text="a whole UTC hour")
    end = serializers.DateTimeField(help_text="a whole UTC hour, after start (the window is [start, end))")
    ask = serializers.DecimalField(**PRICE_FIELD, help_text="per accelerator-hour")
    currency = serializers.ChoiceField(choices=["CNY", "USD"], default="CNY")
    min_lease_hours = serializers.IntegerField(default=1, max_value=services.MAX_ORDER_HOURS)


class BidInputSerializer(serializers.Serializer):
    accelerators = serializers.IntegerField(max_value=MAX_INT)
    hours = serializers.IntegerField(max_value=services.MAX_ORDER_HOURS)
    earliest_start = serializers.DateTimeField(help_text="a whole UTC hour")
    latest_end = serializers.DateTimeField(help_text="a whole UTC hour")
    limit_price = serializers.DecimalField(**PRICE_FIELD)
    price_unit = serializers.ChoiceField(choices=PriceUnit.choices, default=PriceUnit.ACCELERATOR_HOUR)
    currency = serializers.ChoiceField(choices=["CNY", "USD"], default="CNY")
    workload = serializers.ChoiceField(choices=Workload.choices, default=Workload.TRAINING)
    accelerator_models = serializers.ListField(child=serializers.CharField(max_length=64), default=list, max_length=200)
    min_tflops = serializers.IntegerField(default=0, min_value=0, max_value=MAX_INT)
    min_memory_gb = serializers.IntegerField(default=0, min_value=0, max_value=MAX_INT)
    hubs = serializers.ListField(child=serializers.CharField(max_length=10), default=list, max_length=20)
    provinces = serializers.ListField(child=serializers.CharField(max_length=2), default=list, max_length=40)
    min_green_share_pct = serializers.IntegerField(default=0, min_value=0, max_value=100)
    max_pue = serializers.DecimalField(max_digits=4, decimal_places=2, required=False, allow_null=True, default=None)
    domestic_only = serializers.BooleanField(default=False)
    verified_only = serializers.BooleanField(default=False)
    split_allowed = serializers.BooleanField(default=False)
    latency_tier = serializers.ChoiceField(
        choices=[tier.value for tier in latency.Tier],
        default=latency.Tier.ANY,
        help_text="inference only: region = the buyer's grid region (~10 ms), near = and the neighbouring regions "
        "(~20 ms), any = anywhere; training bids may run in any hub whatever the tier",
    )
    buyer_province = serializers.ChoiceField(
        choices=[code for code, _label in province_choices()],
        default="",
        allow_blank=True,
        help_text="the buyer's province (GB/T 2260 two-digit code) the latency tier is measured from; "
        "default: the province of the company registration",
    )


class LeaseResponseInputSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


IDEMPOTENCY_HEADER = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)
STATUS_FILTER = OpenApiParameter(
    "status", str, description="only orders in this status: open, filled, cancelled, expired"
)
LEASE_STATUS_FILTER = OpenApiParameter(
    "status", str, description="only leases in this status: pending, active, completed, cancelled, disputed"
)


class MarketApiView(APIView):
    """Reads need market:read, writes market:write."""

    def get_permissions(self) -> Any:
        self.required_scopes = [ApiScope.MARKET_READ if self.request.method == "GET" else ApiScope.MARKET_WRITE]
        return super().get_permissions()


class OfferListApi(MarketApiView):
    """Your offers (GET) and a new offer (POST), matched at once against resting bids."""

    organization_kinds = [OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(responses=OfferOutput(many=True), parameters=[STATUS_FILTER], operation_id="market_offers_list")
    def get(self, request: Request) -> Response:
        offers = selectors.offer_list(request.organization, status=status_filter(request, OrderStatus.choices))  # type: ignore[attr-defined]
        return Response(OfferOutput(offers[:500], many=True).data)

    @extend_schema(
        request=OfferInputSerializer,
        responses={201: OfferOutput},
        parameters=[IDEMPOTENCY_HEADER],
        operation_id="market_offers_create",
    )
    def post(self, request: Request) -> Response:
        def handler() -> Response:
            serializer = OfferInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = dict(serializer.validated_data)
            offer = services.offer_create(
                organization=request.organization,  # type: ignore[attr-defined]
                actor=request.auth,
                data=services.OfferInput(pool_id=data.pop("pool"), **data),
            )
            return Response(OfferOutput(offer).data, status=status.HTTP_201_CREATED)

        return idempotent(request, handler)


class OfferDetailApi(MarketApiView):
    organization_kinds = [OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(responses=OfferOutput, operation_id="market_offers_retrieve")
    def get(self, request: Request, offer_id: UUID) -> Response:
        return Response(OfferOutput(selectors.offer_get(request.organization, offer_id)).data)  # type: ignore[attr-defined]


class OfferCancelApi(MarketApiView):
    """Withdraw an open offer; leases already made stand."""

    organization_kinds = [OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_WRITE]

    @extend_schema(
        request=None, responses=OfferOutput, parameters=[IDEMPOTENCY_HEADER], operation_id="market_offers_cancel"
    )
    def post(self, request: Request, offer_id: UUID) -> Response:
        organization = request.organization  # type: ignore[attr-defined]
        offer = selectors.offer_get(organization, offer_id)

        def handler() -> Response:
            return Response(
                OfferOutput(services.offer_cancel(organization=organization, actor=request.auth, offer=offer)).data
            )

        return idempotent(request, handler)


class BidListApi(MarketApiView):
    """Your bids (GET) and a new bid (POST), matched at once against resting offers; the rest rests."""

    organization_kinds = [OrganizationKind.BUYER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(responses=BidOutput(many=True), parameters=[STATUS_FILTER], operation_id="market_bids_list")
    def get(self, request: Request) -> Response:
        bids = selectors.bid_list(request.organization, status=status_filter(request, OrderStatus.choices))  # type: ignore[attr-defined]
        return Response(BidOutput(bids[:500], many=True).data)

    @extend_schema(
        request=BidInputSerializer,
        responses={201: BidOutput},
        parameters=[IDEMPOTENCY_HEADER],
        operation_id="market_bids_create",
    )
    def post(self, request: Request) -> Response:
        def handler() -> Response:
            serializer = BidInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = dict(serializer.validated_data)
            for name in ("accelerator_models", "hubs", "provinces"):
                data[name] = tuple(data[name])
            bid = services.bid_create(
                organization=request.organization,  # type: ignore[attr-defined]
                actor=request.auth,
                data=services.BidInput(**data),
            )
            return Response(BidOutput(bid).data, status=status.HTTP_201_CREATED)

        return idempotent(request, handler)


class BidDetailApi(MarketApiView):
    organization_kinds = [OrganizationKind.BUYER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(responses=BidOutput, operation_id="market_bids_retrieve")
    def get(self, request: Request, bid_id: UUID) -> Response:
        return Response(BidOutput(selectors.bid_get(request.organization, bid_id)).data)  # type: ignore[attr-defined]


class BidCancelApi(MarketApiView):
    """Withdraw the unfilled part of an open bid; leases already made stand."""

    organization_kinds = [OrganizationKind.BUYER]
    required_scopes = [ApiScope.MARKET_WRITE]

    @extend_schema(
        request=None, responses=BidOutput, parameters=[IDEMPOTENCY_HEADER], operation_id="market_bids_cancel"
    )
    def post(self, request: Request, bid_id: UUID) -> Response:
        organization = request.organization  # type: ignore[attr-defined]
        bid = selectors.bid_get(organization, bid_id)

        def handler() -> Response:
            return Response(BidOutput(services.bid_cancel(organization=organization, actor=request.auth, bid=bid)).data)

        return idempotent(request, handler)


class LeaseListApi(MarketApiView):
    """Leases you bought (buyers) or sold (providers)."""

    organization_kinds = [OrganizationKind.BUYER, OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(
        responses=LeaseOutput(many=True), parameters=[LEASE_STATUS_FILTER], operation_id="market_leases_list"
    )
    def get(self, request: Request) -> Response:
        leases = selectors.lease_list(request.organization, status=status_filter(request, LeaseStatus.choices))  # type: ignore[attr-defined]
        return Response(LeaseOutput(leases[:500], many=True).data)


class LeaseDetailApi(MarketApiView):
    organization_kinds = [OrganizationKind.BUYER, OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(responses=LeaseDetailOutput, operation_id="market_leases_retrieve")
    def get(self, request: Request, lease_id: UUID) -> Response:
        return Response(LeaseDetailOutput(selectors.lease_get(request.organization, lease_id)).data)  # type: ignore[attr-defined]


class LeaseRespondApi(MarketApiView):
    """The provider confirms (the lease becomes active) or rejects (the capacity returns) a pending lease."""

    organization_kinds = [OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_WRITE]
    confirm = True

    @extend_schema(
        request=LeaseResponseInputSerializer,
        responses=LeaseDetailOutput,
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request: Request, lease_id: UUID) -> Response:
        organization = request.organization  # type: ignore[attr-defined]
        lease = selectors.lease_get_as_provider(organization, lease_id)

        def handler() -> Response:
            serializer = LeaseResponseInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            services.lease_respond(
                organization=organization,
                actor=request.auth,
                lease=lease,
                confirm=self.confirm,
                note=serializer.validated_data["note"],
            )
            return Response(LeaseDetailOutput(selectors.lease_get(organization, lease_id)).data)

        return idempotent(request, handler)


class LeaseConfirmApi(LeaseRespondApi):
    confirm = True


class LeaseRejectApi(LeaseRespondApi):
    confirm = False


# --- Tokens: served models, endpoints, token bids, token contracts ---------------------------------------


class ServedModelOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")

    class Meta:
        model = ServedModel
        fields = [
            "id",
            "name",
            "publisher",
            "parameters_b",
            "active_parameters_b",
            "context_tokens",
            "license",
            "source_url",
        ]


class TokenEndpointOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    pool = serializers.UUIDField(source="pool.public_id")
    served_model = serializers.CharField(source="served_model.name")
    capacity_monthly_tokens = serializers.IntegerField(help_text="throughput_tokens_per_s x 2,592,000 (a 30-day month)")

    class Meta:
        model = TokenEndpoint
        fields = [
            "id",
            "pool",
            "served_model",
            "price_input",
            "price_output",
            "currency",
            "throughput_tokens_per_s",
            "capacity_monthly_tokens",
            "committed_monthly_tokens",
            "status",
            "created_at",
        ]


class TokenBidOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    served_model = serializers.CharField(source="served_model.name")
    hubs: Any = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)

    class Meta:
        model = TokenBid
        fields = [
            "id",
            "served_model",
            "limit_input",
            "limit_output",
            "currency",
            "monthly_tokens",
            "input_weight",
            "output_weight",
            "start_month",
            "months",
            "domestic_only",
            "hubs",
            "status",
            "expires_at",
            "created_at",
        ]


class TokenContractOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    bid = serializers.UUIDField(source="bid.public_id")
    endpoint = serializers.UUIDField(source="endpoint.public_id")
    served_model = serializers.CharField(source="served_model.name")
    buyer = serializers.CharField(source="buyer.name")
    provider = serializers.CharField(source="provider.name")

    class Meta:
        model = TokenContract
        fields = [
            "id",
            "bid",
            "endpoint",
            "served_model",
            "buyer",
            "provider",
            "price_input",
            "price_output",
            "currency",
            "monthly_tokens",
            "start",
            "end",
            "status",
            "confirm_by",
        ]


class TokenContractDetailOutput(TokenContractOutput):
    events = LeaseEventOutput(many=True, read_only=True)

    class Meta(TokenContractOutput.Meta):
        fields = [*TokenContractOutput.Meta.fields, "events"]


MAX_BIGINT = 2**63 - 1


class TokenEndpointInputSerializer(serializers.Serializer):
    pool = serializers.UUIDField(help_text="one of your listed pools")
    served_model = serializers.CharField(max_length=120, help_text="a served model's id or exact name")
    price_input = serializers.DecimalField(**PRICE_FIELD, help_text="CNY per million input tokens")
    price_output = serializers.DecimalField(**PRICE_FIELD, help_text="CNY per million output tokens")
    throughput_tokens_per_s = serializers.IntegerField(max_value=MAX_BIGINT, min_value=-MAX_BIGINT)
    currency = serializers.ChoiceField(choices=["CNY", "USD"], default="CNY", help_text="token prices are in CNY")


class TokenBidInputSerializer(serializers.Serializer):
    served_model = serializers.CharField(max_length=120, help_text="a served model's id or exact name")
    limit_input = serializers.DecimalField(**PRICE_FIELD, help_text="CNY per million input tokens")
    limit_output = serializers.DecimalField(**PRICE_FIELD, help_text="CNY per million output tokens")
    monthly_tokens = serializers.IntegerField(max_value=MAX_BIGINT, min_value=-MAX_BIGINT)
    start_month = serializers.DateField(help_text="the first day of the first month, e.g. 2027-01-01")
    months = serializers.IntegerField(max_value=MAX_INT, min_value=-MAX_INT)
    input_weight = serializers.IntegerField(
        default=3, min_value=-MAX_INT, max_value=MAX_INT, help_text="expected input tokens per output_weight outputs"
    )
    output_weight = serializers.IntegerField(default=1, min_value=-MAX_INT, max_value=MAX_INT)
    domestic_only = serializers.BooleanField(default=False)
    hubs = serializers.ListField(child=serializers.CharField(max_length=10), default=list, max_length=20)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    currency = serializers.ChoiceField(choices=["CNY", "USD"], default="CNY", help_text="token prices are in CNY")


ENDPOINT_STATUS_FILTER = OpenApiParameter(
    "status", str, description="only endpoints in this status: open, paused, closed"
)


class ServedModelListApi(PublicApiView):
    """The models endpoints serve, from the publishers' model cards (public)."""

    @extend_schema(responses=ServedModelOutput(many=True), operation_id="catalog_served_models_list", auth=[])
    def get(self, request: Request) -> Response:
        return Response(ServedModelOutput(selectors_tokens.served_model_list(), many=True).data)


class TokenEndpointListApi(MarketApiView):
    """Your token endpoints (GET) and a new one (POST), matched at once against resting token bids."""

    organization_kinds = [OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(
        responses=TokenEndpointOutput(many=True),
        parameters=[ENDPOINT_STATUS_FILTER],
        operation_id="market_token_endpoints_list",
    )
    def get(self, request: Request) -> Response:
        endpoints = selectors_tokens.token_endpoint_list(
            request.organization,  # type: ignore[attr-defined]
            status=status_filter(request, EndpointStatus.choices),
        )
        return Response(TokenEndpointOutput(endpoints[:500], many=True).data)

    @extend_schema(
        request=TokenEndpointInputSerializer,
        responses={201: TokenEndpointOutput},
        parameters=[IDEMPOTENCY_HEADER],
        operation_id="market_token_endpoints_create",
    )
    def post(self, request: Request) -> Response:
        def handler() -> Response:
            serializer = TokenEndpointInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = dict(serializer.validated_data)
            endpoint = services.token_endpoint_create(
                organization=request.organization,  # type: ignore[attr-defined]
                actor=request.auth,
                data=services.TokenEndpointInput(pool_id=data.pop("pool"), **data),
            )
            return Response(TokenEndpointOutput(endpoint).data, status=status.HTTP_201_CREATED)

        return idempotent(request, handler)


class TokenEndpointDetailApi(MarketApiView):
    organization_kinds = [OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(responses=TokenEndpointOutput, operation_id="market_token_endpoints_retrieve")
    def get(self, request: Request, endpoint_id: UUID) -> Response:
        endpoint = selectors_tokens.token_endpoint_get(request.organization, endpoint_id)  # type: ignore[attr-defined]
        return Response(TokenEndpointOutput(endpoint).data)


class TokenEndpointActionApi(MarketApiView):
    """Pause (no new matches), resume (matches resting bids at once) or close an endpoint; contracts stand."""

    organization_kinds = [OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_WRITE]
    action = "pause"

    @extend_schema(request=None, responses=TokenEndpointOutput, parameters=[IDEMPOTENCY_HEADER])
    def post(self, request: Request, endpoint_id: UUID) -> Response:
        organization = request.organization  # type: ignore[attr-defined]
        endpoint = selectors_tokens.token_endpoint_get(organization, endpoint_id)
        service = {
            "pause": services.token_endpoint_pause,
            "resume": services.token_endpoint_resume,
            "close": services.token_endpoint_close,
        }[self.action]

        def handler() -> Response:
            return Response(
                TokenEndpointOutput(service(organization=organization, actor=request.auth, endpoint=endpoint)).data
            )

        return idempotent(request, handler)


class TokenEndpointPauseApi(TokenEndpointActionApi):
    action = "pause"


class TokenEndpointResumeApi(TokenEndpointActionApi):
    action = "resume"


class TokenEndpointCloseApi(TokenEndpointActionApi):
    action = "close"


class TokenBidListApi(MarketApiView):
    """Your token bids (GET) and a new one (POST), matched at once against open endpoints; else it rests."""

    organization_kinds = [OrganizationKind.BUYER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(
        responses=TokenBidOutput(many=True), parameters=[STATUS_FILTER], operation_id="market_token_bids_list"
    )
    def get(self, request: Request) -> Response:
        bids = selectors_tokens.token_bid_list(
            request.organization,  # type: ignore[attr-defined]
            status=status_filter(request, OrderStatus.choices),
        )
        return Response(TokenBidOutput(bids[:500], many=True).data)

    @extend_schema(
        request=TokenBidInputSerializer,
        responses={201: TokenBidOutput},
        parameters=[IDEMPOTENCY_HEADER],
        operation_id="market_token_bids_create",
    )
    def post(self, request: Request) -> Response:
        def handler() -> Response:
            serializer = TokenBidInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = dict(serializer.validated_data)
            data["hubs"] = tuple(data["hubs"])
            bid = services.token_bid_create(
                organization=request.organization,  # type: ignore[attr-defined]
                actor=request.auth,
                data=services.TokenBidInput(**data),
            )
            return Response(TokenBidOutput(bid).data, status=status.HTTP_201_CREATED)

        return idempotent(request, handler)


class TokenBidDetailApi(MarketApiView):
    organization_kinds = [OrganizationKind.BUYER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(responses=TokenBidOutput, operation_id="market_token_bids_retrieve")
    def get(self, request: Request, token_bid_id: UUID) -> Response:
        return Response(TokenBidOutput(selectors_tokens.token_bid_get(request.organization, token_bid_id)).data)  # type: ignore[attr-defined]


class TokenBidCancelApi(MarketApiView):
    """Withdraw an open token bid."""

    organization_kinds = [OrganizationKind.BUYER]
    required_scopes = [ApiScope.MARKET_WRITE]

    @extend_schema(
        request=None, responses=TokenBidOutput, parameters=[IDEMPOTENCY_HEADER], operation_id="market_token_bids_cancel"
    )
    def post(self, request: Request, token_bid_id: UUID) -> Response:
        organization = request.organization  # type: ignore[attr-defined]
        bid = selectors_tokens.token_bid_get(organization, token_bid_id)

        def handler() -> Response:
            return Response(
                TokenBidOutput(services.token_bid_cancel(organization=organization, actor=request.auth, bid=bid)).data
            )

        return idempotent(request, handler)


class TokenContractListApi(MarketApiView):
    """Token contracts you bought (buyers) or sold (providers)."""

    organization_kinds = [OrganizationKind.BUYER, OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(
        responses=TokenContractOutput(many=True),
        parameters=[LEASE_STATUS_FILTER],
        operation_id="market_token_contracts_list",
    )
    def get(self, request: Request) -> Response:
        contracts = selectors_tokens.token_contract_list(
            request.organization,  # type: ignore[attr-defined]
            status=status_filter(request, LeaseStatus.choices),
        )
        return Response(TokenContractOutput(contracts[:500], many=True).data)


class TokenContractDetailApi(MarketApiView):
    organization_kinds = [OrganizationKind.BUYER, OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(responses=TokenContractDetailOutput, operation_id="market_token_contracts_retrieve")
    def get(self, request: Request, contract_id: UUID) -> Response:
        contract = selectors_tokens.token_contract_get(request.organization, contract_id)  # type: ignore[attr-defined]
        return Response(TokenContractDetailOutput(contract).data)


class TokenContractRespondApi(MarketApiView):
    """The provider confirms (active) or rejects (the volume returns, the bid rests again) a pending contract."""

    organization_kinds = [OrganizationKind.PROVIDER]
    required_scopes = [ApiScope.MARKET_WRITE]
    confirm = True

    @extend_schema(
        request=LeaseResponseInputSerializer, responses=TokenContractDetailOutput, parameters=[IDEMPOTENCY_HEADER]
    )
    def post(self, request: Request, contract_id: UUID) -> Response:
        organization = request.organization  # type: ignore[attr-defined]
        contract = selectors_tokens.token_contract_get_as_provider(organization, contract_id)

        def handler() -> Response:
            serializer = LeaseResponseInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            respond = services.token_contract_confirm if self.confirm else services.token_contract_reject
            respond(
                organization=organization,
                actor=request.auth,
                contract=contract,
                note=serializer.validated_data["note"],
            )
            return Response(
                TokenContractDetailOutput(selectors_tokens.token_contract_get(organization, contract_id)).data
            )

        return idempotent(request, handler)


class TokenContractConfirmApi(TokenContractRespondApi):
    confirm = True


class TokenContractRejectApi(TokenContractRespondApi):
    confirm = False


urlpatterns = [
    path("catalog/accelerators", public(AcceleratorListApi.as_view()), name="accelerator-list"),
    path("catalog/accelerators/<uuid:model_id>", public(AcceleratorDetailApi.as_view()), name="accelerator-detail"),
    path("listings/pools", public(PoolListingListApi.as_view()), name="pool-listing-list"),
    path("listings/pools/<uuid:pool_id>", public(PoolListingDetailApi.as_view()), name="pool-listing-detail"),
    path("sites", SiteListApi.as_view(), name="site-list"),
    path("sites/<uuid:site_id>", SiteDetailApi.as_view(), name="site-detail"),
    path("pools", PoolListApi.as_view(), name="pool-list"),
    path("pools/<uuid:pool_id>", PoolDetailApi.as_view(), name="pool-detail"),
    path("pools/<uuid:pool_id>/attestations", PoolAttestationsApi.as_view(), name="pool-attestations"),
    path("attestations/<uuid:attestation_id>", AttestationDetailApi.as_view(), name="attestation-detail"),
    path("market/offers", OfferListApi.as_view(), name="offer-list"),
    path("market/offers/<uuid:offer_id>", OfferDetailApi.as_view(), name="offer-detail"),
    path("market/offers/<uuid:offer_id>/cancel", OfferCancelApi.as_view(), name="offer-cancel"),
    path("market/bids", BidListApi.as_view(), name="bid-list"),
    path("market/bids/<uuid:bid_id>", BidDetailApi.as_view(), name="bid-detail"),
    path("market/bids/<uuid:bid_id>/cancel", BidCancelApi.as_view(), name="bid-cancel"),
    path("market/leases", LeaseListApi.as_view(), name="lease-list"),
    path("market/leases/<uuid:lease_id>", LeaseDetailApi.as_view(), name="lease-detail"),
    path("market/leases/<uuid:lease_id>/confirm", LeaseConfirmApi.as_view(), name="lease-confirm"),
    path("market/leases/<uuid:lease_id>/reject", LeaseRejectApi.as_view(), name="lease-reject"),
    path("catalog/served-models", public(ServedModelListApi.as_view()), name="served-model-list"),
    path("market/token-endpoints", TokenEndpointListApi.as_view(), name="token-endpoint-list"),
    path("market/token-endpoints/<uuid:endpoint_id>", TokenEndpointDetailApi.as_view(), name="token-endpoint-detail"),
    path(
        "market/token-endpoints/<uuid:endpoint_id>/pause", TokenEndpointPauseApi.as_view(), name="token-endpoint-pause"
    ),
    path(
        "market/token-endpoints/<uuid:endpoint_id>/resume",
        TokenEndpointResumeApi.as_view(),
        name="token-endpoint-resume",
    ),
    path(
        "market/token-endpoints/<uuid:endpoint_id>/close", TokenEndpointCloseApi.as_view(), name="token-endpoint-close"
    ),
    path("market/token-bids", TokenBidListApi.as_view(), name="token-bid-list"),
    path("market/token-bids/<uuid:token_bid_id>", TokenBidDetailApi.as_view(), name="token-bid-detail"),
    path("market/token-bids/<uuid:token_bid_id>/cancel", TokenBidCancelApi.as_view(), name="token-bid-cancel"),
    path("market/token-contracts", TokenContractListApi.as_view(), name="token-contract-list"),
    path("market/token-contracts/<uuid:contract_id>", TokenContractDetailApi.as_view(), name="token-contract-detail"),
    path(
        "market/token-contracts/<uuid:contract_id>/confirm",
        TokenContractConfirmApi.as_view(),
        name="token-contract-confirm",
    ),
    path(
        "market/token-contracts/<uuid:contract_id>/reject",
        TokenContractRejectApi.as_view(),
        name="token-contract-reject",
    ),
]

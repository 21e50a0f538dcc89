"""Staff tools: the catalog (staff add models), sites, pools (re-test requests), attestations (reviews)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from core.admin import ReadOnlyAdmin
from core.errors import ApplicationError
from marketplace import services
from marketplace.models import (
    AcceleratorModel,
    Attestation,
    AttestationStatus,
    Bid,
    Cluster,
    Hub,
    Lease,
    LeaseAllocation,
    LeaseEvent,
    Offer,
    Pool,
    PoolShare,
    ServedModel,
    Site,
    TokenBid,
    TokenContract,
    TokenContractEvent,
    TokenEndpoint,
)


@admin.register(AcceleratorModel)
class AcceleratorModelAdmin(admin.ModelAdmin):
    list_display = [
        "vendor",
        "name",
        "domestic",
        "software_stack",
        "bf16_tflops",
        "fp16_tflops",
        "memory_gb",
        "memory_bw_tbps",
    ]
    list_filter = ["domestic", "vendor", "software_stack"]
    search_fields = ["vendor", "name"]
    readonly_fields = ["public_id", "created_at"]


class ClusterInline(admin.TabularInline):
    model = Cluster
    extra = 0
    fields = ["name_zh", "start_zone_zh", "provinces", "grid_region"]


@admin.register(Hub)
class HubAdmin(admin.ModelAdmin):
    list_display = ["code", "name_zh", "name_en", "side", "grid_region"]
    inlines = [ClusterInline]


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "province", "cluster", "pue", "green_share_pct", "latency_tier", "status"]
    list_filter = ["status", "province", "hub", "latency_tier"]
    search_fields = ["name", "organization__name", "city"]
    readonly_fields = ["public_id", "created_at", "updated_at"]
    raw_id_fields = ["organization"]


class PoolShareInline(admin.TabularInline):
    model = PoolShare
    extra = 0
    raw_id_fields = ["organization"]


@admin.register(Pool)
class PoolAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "organization",
        "site",
        "accelerator_model",
        "accelerator_count",
        "status",
        "verified",
        "retest_requested_at",
    ]
    list_filter = ["status", "verified", "accelerator_model__vendor", "accelerator_model__domestic"]
    search_fields = ["name", "organization__name", "site__name"]
    readonly_fields = [
        "public_id",
        "current_attestation",
        "verified",
        "retest_requested_at",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["organization", "site"]
    inlines = [PoolShareInline]
    actions = ["request_retest"]

    @admin.action(description=_("Request a re-test (random re-attestation)"))
    def request_retest(self, request: HttpRequest, queryset: QuerySet[Pool]) -> None:
        for pool in queryset:
            services.pool_request_retest(pool=pool, actor=request.user)  # type: ignore[arg-type]
        self.message_user(request, _("Re-test requested for %(n)d pools.") % {"n": queryset.count()})


@admin.register(Attestation)
class AttestationAdmin(admin.ModelAdmin):
    list_display = [
        "pool",
        "organization",
        "measured_tflops",
        "tflops_ratio",
        "measured_bw_tbps",
        "bw_ratio",
        "status",
        "source",
        "created_at",
    ]
    list_filter = ["status", "source", "retest"]
    search_fields = ["pool__name", "organization__name"]
    readonly_fields = [f.name for f in Attestation._meta.fields]
    actions = ["accept", "reject"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def _review(self, request: HttpRequest, queryset: QuerySet[Attestation], accept: bool) -> None:
        done = 0
        for attestation in queryset.filter(status=AttestationStatus.PENDING_REVIEW):
            try:
                services.attestation_review(attestation=attestation, actor=request.user, accept=accept)  # type: ignore[arg-type]
                done += 1
            except ApplicationError as exc:
                self.message_user(request, str(exc.errors[0].message), messages.ERROR)
        self.message_user(request, _("%(n)d attestations reviewed.") % {"n": done})

    @admin.action(description=_("Accept flagged attestations (rates the pool)"))
    def accept(self, request: HttpRequest, queryset: QuerySet[Attestation]) -> None:
        self._review(request, queryset, True)

    @admin.action(description=_("Reject flagged attestations"))
    def reject(self, request: HttpRequest, queryset: QuerySet[Attestation]) -> None:
        self._review(request, queryset, False)


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name_zh", "hub"]
    search_fields = ["name_zh"]


@admin.register(PoolShare)
class PoolShareAdmin(ReadOnlyAdmin):
    """Revenue shares are money: changed only through the pool form (services validate the 100% rule)."""

    list_display = ["pool", "organization", "share_pct"]
    search_fields = ["pool__name", "organization__name"]


# --- Market (read-only: orders and leases change only through the market services) ----------------------


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "pool", "accelerators", "start", "end", "ask", "currency", "status"]
    list_filter = ["status", "currency"]


@admin.register(Bid)
class BidAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "organization", "accelerators", "hours", "limit_price", "price_unit", "status"]
    list_filter = ["status", "price_unit", "workload"]


class LeaseEventInline(admin.TabularInline):
    model = LeaseEvent
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "actor_label", "note", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "pool", "buyer", "provider", "accelerators", "start", "end", "price", "status"]
    list_filter = ["status"]
    inlines = [LeaseEventInline]


@admin.register(LeaseEvent)
class LeaseEventAdmin(ReadOnlyAdmin):
    list_display = ["lease", "from_status", "to_status", "actor_label", "created_at"]


@admin.register(LeaseAllocation)
class LeaseAllocationAdmin(ReadOnlyAdmin):
    list_display = ["lease", "pool", "accelerator_index", "period"]


# --- Tokens (read-only except the served-model catalog) -------------------------------------------------


@admin.register(ServedModel)
class ServedModelAdmin(admin.ModelAdmin):
    list_display = ["name", "publisher", "parameters_b", "active_parameters_b", "context_tokens", "license"]
    search_fields = ["name", "publisher"]
    readonly_fields = ["public_id", "created_at"]


@admin.register(TokenEndpoint)
class TokenEndpointAdmin(ReadOnlyAdmin):
    list_display = [
        "public_id",
        "organization",
        "served_model",
        "pool",
        "price_input",
        "price_output",
        "throughput_tokens_per_s",
        "committed_monthly_tokens",
        "status",
    ]
    list_filter = ["status", "served_model"]


@admin.register(TokenBid)
class TokenBidAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "organization", "served_model", "limit_input", "monthly_tokens", "status"]
    list_filter = ["status", "served_model"]


class TokenContractEventInline(admin.TabularInline):
    model = TokenContractEvent
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "actor_label", "note", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(TokenContract)
class TokenContractAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "served_model", "buyer", "provider", "monthly_tokens", "start", "end", "status"]
    list_filter = ["status", "served_model"]
    inlines = [TokenContractEventInline]


@admin.register(TokenContractEvent)
class TokenContractEventAdmin(ReadOnlyAdmin):
    list_display = ["contract", "from_status", "to_status", "actor_label", "created_at"]

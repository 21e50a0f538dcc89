from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from core.admin import ReadOnlyAdmin
from core.errors import ApplicationError
from green import services
from green.models import (
    Allocation,
    AllocationPeriod,
    CertificateLot,
    ConsumptionAccount,
    EmissionFactor,
    GenerationHour,
    Statement,
)


@admin.register(EmissionFactor)
class EmissionFactorAdmin(admin.ModelAdmin):
    """Staff add a new year's factors here when the authorities publish them (keep the source)."""

    list_display = ["scope", "region_code", "region_name", "year", "kind", "kgco2_per_kwh", "source"]
    list_filter = ["scope", "kind", "year"]
    search_fields = ["region_code", "region_name", "source"]


@admin.register(CertificateLot)
class CertificateLotAdmin(ReadOnlyAdmin):
    list_display = [
        "registry",
        "serial_first",
        "serial_last",
        "organization",
        "site",
        "energy_wh",
        "allocated_wh",
        "production_month",
        "expires_on",
        "status",
    ]
    list_filter = ["registry", "status", "source"]
    search_fields = ["organization__name", "site__name"]


@admin.register(ConsumptionAccount)
class ConsumptionAccountAdmin(ReadOnlyAdmin):
    list_display = ["consumption_key", "site", "hour_start", "facility_wh", "allocated_wh"]
    search_fields = ["consumption_key"]


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdmin):
    list_display = ["id", "lot", "consumption_key", "hour_start", "energy_wh", "run_key", "reversal_of"]
    search_fields = ["consumption_key", "run_key"]


@admin.register(AllocationPeriod)
class AllocationPeriodAdmin(ReadOnlyAdmin):
    list_display = [
        "month",
        "status",
        "runs",
        "lease_hours",
        "estimated_hours",
        "facility_wh",
        "allocated_wh",
        "completed_at",
    ]
    actions = ["run_again"]

    @admin.action(description=_("Run the allocation of these months again (by a worker)"))
    def run_again(self, request: HttpRequest, queryset: QuerySet[AllocationPeriod]) -> None:
        for period in queryset:
            try:
                services.allocation_month_request(month=period.month, actor=request.user)
            except ApplicationError as exc:
                self.message_user(request, str(exc.errors[0].message), messages.ERROR)
        self.message_user(request, _("Allocation requested."))


@admin.register(GenerationHour)
class GenerationHourAdmin(ReadOnlyAdmin):
    list_display = ["site", "hour_start", "energy_wh", "updated_at"]
    search_fields = ["site__name"]


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdmin):
    list_display = ["organization", "period_start", "period_end", "lease_public_id", "status", "issued_at"]
    list_filter = ["status"]
    search_fields = ["organization__name", "verification_code"]
    actions = ["revoke"]

    @admin.action(description=_("Revoke the selected statements"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[Statement]) -> None:
        for statement in queryset:
            services.statement_revoke(statement=statement, actor=request.user, reason="staff admin")
        self.message_user(request, _("Statements revoked."))

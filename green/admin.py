from django.contrib import admin

from core.admin import ReadOnlyAdmin
from green.models import Allocation, CertificateLot, ConsumptionAccount, EmissionFactor


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

from django.contrib import admin

from core.admin import ReadOnlyAdmin
from vouchers.models import Application, Grant, Program, Redemption


@admin.register(Program)
class ProgramAdmin(ReadOnlyAdmin):
    list_display = ["name", "issuer", "voucher_type", "status", "budget_minor", "committed_minor", "redeemed_minor"]
    list_filter = ["status", "voucher_type", "settlement_mode"]
    search_fields = ["name", "issuer__name", "document_number"]


@admin.register(Application)
class ApplicationAdmin(ReadOnlyAdmin):
    list_display = ["buyer", "program", "requested_minor", "status", "submitted_at"]
    list_filter = ["status"]
    search_fields = ["buyer__name", "program__name", "contract_reference"]


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    list_display = ["buyer", "program", "amount_minor", "redeemed_minor", "status", "expires_at"]
    list_filter = ["status"]
    search_fields = ["buyer__name", "program__name"]


@admin.register(Redemption)
class RedemptionAdmin(ReadOnlyAdmin):
    list_display = ["invoice_reference", "buyer", "program", "amount_minor", "released_minor", "settlement_status"]
    list_filter = ["settlement_status", "settlement_mode"]
    search_fields = ["invoice_reference", "buyer__name", "fiscal_reference"]

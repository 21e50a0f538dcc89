from django.contrib import admin

from core.admin import ReadOnlyAdmin
from vouchers.models import (
    Application,
    Attachment,
    FirmYearUsage,
    Grant,
    LineRefusal,
    Program,
    Redemption,
    RedemptionLine,
    RedemptionRelease,
)


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


@admin.register(RedemptionLine)
class RedemptionLineAdmin(ReadOnlyAdmin):
    list_display = ["redemption", "line_index", "provider", "amount_minor", "subsidy_minor", "chip_domestic"]
    search_fields = ["redemption__invoice_reference", "provider__name"]


@admin.register(RedemptionRelease)
class RedemptionReleaseAdmin(ReadOnlyAdmin):
    list_display = ["redemption", "reference", "amount_minor", "released_at"]
    search_fields = ["redemption__invoice_reference", "reference"]


@admin.register(LineRefusal)
class LineRefusalAdmin(ReadOnlyAdmin):
    list_display = ["invoice_reference", "line_index", "code", "buyer", "provider", "program", "refused_at"]
    list_filter = ["code"]
    search_fields = ["invoice_reference", "buyer__name", "provider__name"]


@admin.register(FirmYearUsage)
class FirmYearUsageAdmin(ReadOnlyAdmin):
    list_display = ["program", "buyer", "year", "used_minor", "cap_minor"]
    list_filter = ["year"]
    search_fields = ["buyer__name", "program__name"]


@admin.register(Attachment)
class AttachmentAdmin(ReadOnlyAdmin):
    list_display = ["application", "original_name", "content_type", "size_bytes", "uploaded_at"]
    search_fields = ["original_name", "application__buyer__name"]

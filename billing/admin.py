from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing.models import (
    BillingProfile,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceSeries,
    JournalEntry,
    LedgerAccount,
    LedgerCheck,
    Payment,
    Payout,
    Posting,
    ReconciliationRun,
    Refund,
    StripeEvent,
    WebhookRejection,
)
from core.admin import ReadOnlyAdmin


@admin.register(BillingProfile)
class BillingProfileAdmin(admin.ModelAdmin):
    """Staff set a provider's platform fee here (empty: the default, BILLING_DEFAULT_FEE_RATE)."""

    list_display = ["organization", "platform_fee_rate", "invoice_at_lease_end", "stripe_account_id"]
    search_fields = ["organization__name"]
    readonly_fields = ["stripe_account_id"]


class PostingInline(admin.TabularInline):
    model = Posting
    extra = 0
    can_delete = False
    readonly_fields = ["account", "currency", "amount_minor"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "memo", "idempotency_key"]
    list_filter = ["kind"]
    search_fields = ["idempotency_key", "memo"]
    inlines = [PostingInline]


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ["kind", "organization", "currency", "balance_minor", "guard_non_negative"]
    list_filter = ["kind", "currency"]
    search_fields = ["organization__name"]


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = ["entry", "account", "currency", "amount_minor"]


@admin.register(LedgerCheck)
class LedgerCheckAdmin(ReadOnlyAdmin):
    list_display = ["ran_at", "accounts_checked", "entries_checked"]


@admin.register(InvoiceSeries)
class InvoiceSeriesAdmin(ReadOnlyAdmin):
    list_display = ["code", "next_number"]


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = ["position", "kind", "description", "quantity", "unit_price", "amount_minor"]
    readonly_fields = ["position", "kind", "description", "quantity", "unit_price", "amount_minor"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["number_display", "buyer", "period_start", "status", "total_minor", "amount_due_minor"]
    list_filter = ["status", "currency"]
    search_fields = ["number_display", "buyer__name"]
    inlines = [InvoiceLineInline]


@admin.register(InvoiceLine)
class InvoiceLineAdmin(ReadOnlyAdmin):
    list_display = ["invoice", "position", "kind", "amount_minor"]
    list_filter = ["kind"]


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    list_display = ["number_display", "invoice", "total_minor", "created_at"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["invoice", "attempt", "status", "amount_minor", "stripe_payment_intent_id", "created_at"]
    list_filter = ["status"]
    search_fields = ["stripe_payment_intent_id", "invoice__number_display"]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["stripe_refund_id", "payment", "amount_minor", "created_at"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "received_at", "processed_at"]
    list_filter = ["type"]
    search_fields = ["event_id", "object_id"]


@admin.register(WebhookRejection)
class WebhookRejectionAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "reason", "remote_addr"]


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = ["owner", "invoice", "amount_minor", "fee_minor", "status", "stripe_transfer_id"]
    list_filter = ["status"]


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = ["ran_at", "window_start", "window_end"]

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _

from accounts.forms import apply_application_error
from core.admin import ReadOnlyAdmin
from core.errors import ApplicationError
from metering import selectors, services
from metering.forms import DisputeResolveForm
from metering.models import (
    Dispute,
    LeaseHourReconciliation,
    ReconciliationCursor,
    SignedBatch,
    SigningKey,
    UsageDirtyHour,
    UsageHour,
    UsageObservation,
)


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "organization", "fingerprint", "created_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "fingerprint", "organization__name"]


@admin.register(SignedBatch)
class SignedBatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "organization", "signing_key", "received_at", "records_total", "records_accepted"]
    search_fields = ["organization__name", "body_sha256"]
    exclude = ["body"]  # kept verbatim for verification; too large to show


@admin.register(UsageHour)
class UsageHourAdmin(ReadOnlyAdmin):
    list_display = ["subject_id", "hour_start", "provider", "record_count", "accelerator_seconds", "energy_wh"]
    list_filter = ["subject_kind"]
    search_fields = ["subject_id"]


@admin.register(LeaseHourReconciliation)
class LeaseHourReconciliationAdmin(ReadOnlyAdmin):
    list_display = [
        "lease_id",
        "hour_start",
        "contracted_accelerator_seconds",
        "delivered_accelerator_seconds",
        "missing",
        "over_reported",
        "energy_estimated_wh",
    ]
    list_filter = ["missing", "over_reported"]
    search_fields = ["lease_id"]


@admin.register(UsageDirtyHour)
class UsageDirtyHourAdmin(ReadOnlyAdmin):
    list_display = ["subject_id", "hour_start"]


@admin.register(ReconciliationCursor)
class ReconciliationCursorAdmin(ReadOnlyAdmin):
    list_display = ["name", "reconciled_until"]


@admin.register(UsageObservation)
class UsageObservationAdmin(ReadOnlyAdmin):
    list_display = ["lease", "buyer", "hour_start", "accelerator_seconds", "dispute", "created_at"]
    search_fields = ["lease__public_id", "buyer__name"]
    list_select_related = ["lease", "buyer", "dispute"]


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    """Staff resolve disputes here: select open disputes and pick the side (the buyer's claim is credited)."""

    list_display = [
        "public_id",
        "lease",
        "buyer",
        "provider",
        "period_start",
        "period_end",
        "claimed_accelerator_seconds",
        "status",
        "credited_accelerator_seconds",
        "opened_automatically",
        "created_at",
        "resolve_link",
    ]
    list_filter = ["status", "opened_automatically"]
    search_fields = ["public_id", "buyer__name", "provider__name"]
    actions = ["resolve_for_buyer", "resolve_for_provider"]

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_staff)

    def get_urls(self) -> list[URLPattern]:
        resolve = path(
            "<int:dispute_pk>/resolve/",
            self.admin_site.admin_view(self.resolve_view),
            name="metering_dispute_resolve",
        )
        return [resolve, *super().get_urls()]

    @admin.display(description=_("Resolve"))
    def resolve_link(self, dispute: Dispute) -> str:
        if not dispute.is_open:
            return "–"
        url = reverse("admin:metering_dispute_resolve", args=[dispute.pk])
        return format_html('<a href="{}">{}</a>', url, _("Decide…"))

    def resolve_view(self, request: HttpRequest, dispute_pk: int) -> HttpResponse:
        """Decide one dispute after reading both sides: the side, the credit (default the claim) and a note."""
        if not self.has_resolve_permission(request):
            raise PermissionDenied
        dispute = get_object_or_404(Dispute.objects.select_related("lease__pool", "buyer", "provider"), pk=dispute_pk)
        form = DisputeResolveForm(request.POST or None, initial={"decision": "buyer"})
        if request.method == "POST" and dispute.is_open and form.is_valid():
            try:
                services.dispute_resolve(
                    dispute=dispute,
                    actor=request.user,
                    buyer_favour=form.cleaned_data["decision"] == "buyer",
                    credited_accelerator_seconds=form.credited_accelerator_seconds(),
                    note=form.cleaned_data["note"],
                )
            except ApplicationError as exc:
                apply_application_error(form, exc)
            else:
                self.message_user(request, _("Dispute resolved."))
                return redirect("admin:metering_dispute_changelist")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Decide the dispute"),
            "dispute": dispute,
            "form": form,
            "observation_hours": selectors.dispute_observation_hours(dispute),
        }
        return TemplateResponse(request, "admin/metering/dispute/resolve.html", context)

    def _resolve(self, request: HttpRequest, queryset: QuerySet[Dispute], buyer_favour: bool) -> None:
        done = 0
        for dispute in queryset:
            try:
                services.dispute_resolve(dispute=dispute, actor=request.user, buyer_favour=buyer_favour, note="admin")
            except ApplicationError as exc:
                self.message_user(request, f"{dispute.public_id}: {exc}", level=messages.WARNING)
            else:
                done += 1
        self.message_user(request, _("%(count)d dispute(s) resolved.") % {"count": done})

    @admin.action(description=_("Resolve for the buyer (credit the claim)"), permissions=["resolve"])
    def resolve_for_buyer(self, request: HttpRequest, queryset: QuerySet[Dispute]) -> None:
        self._resolve(request, queryset, buyer_favour=True)

    @admin.action(description=_("Resolve for the provider (no credit)"), permissions=["resolve"])
    def resolve_for_provider(self, request: HttpRequest, queryset: QuerySet[Dispute]) -> None:
        self._resolve(request, queryset, buyer_favour=False)

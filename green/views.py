"""Portal views of the green app: the provider's certificate lots."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import member_required
from accounts.forms import apply_application_error
from accounts.models import OrganizationKind, Role
from core.errors import ApplicationError
from green import selectors, services
from green.forms import LotCsvForm, LotForm

PROVIDERS = [OrganizationKind.PROVIDER]


@require_http_methods(["GET", "POST"])
@member_required(kinds=PROVIDERS)
def lots(request: HttpRequest) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    organization = membership.organization
    can_manage = membership.has_role(Role.ADMIN)
    action = request.POST.get("action") if request.method == "POST" else None
    form = LotForm(
        request.POST if action == "create" else None,
        request.FILES if action == "create" else None,
        organization=organization,
    )
    csv_form = LotCsvForm(request.POST if action == "upload" else None, request.FILES if action == "upload" else None)
    csv_errors: list[str] = []
    if request.method == "POST":
        if not can_manage:
            return HttpResponse(status=403)
        if action == "create" and form.is_valid():
            data = form.cleaned_data
            try:
                lot = services.lot_create(
                    organization=organization,
                    actor=request.user,
                    site_id=data["site"].public_id,
                    registry=data["registry"],
                    serial_first=data["serial_first"],
                    serial_last=data["serial_last"],
                    certificate_count=data["certificate_count"],
                    production_month=data["production_month"],
                    source=data["source"],
                    province=data["province"],
                    bundled_with_power=data["bundled_with_power"],
                    evidence_text=data["evidence_text"],
                    evidence_file=data["evidence_file"],
                )
            except ApplicationError as exc:
                apply_application_error(form, exc)
            else:
                messages.success(request, _("Certificate lot %(lot)s registered.") % {"lot": lot})
                return redirect("green:lots")
        elif action == "upload" and csv_form.is_valid():
            try:
                created = services.lots_upload_csv(
                    organization=organization, content=csv_form.cleaned_data["file"].read(), actor=request.user
                )
            except ApplicationError as exc:
                csv_errors = [f"{e.field}: {e.message}" if e.field else str(e.message) for e in exc.errors]
            else:
                messages.success(request, _("%(n)s certificate lots registered.") % {"n": len(created)})
                return redirect("green:lots")
    context = {
        "form": form,
        "csv_form": csv_form,
        "csv_errors": csv_errors,
        "lots": selectors.lot_list(organization),
        "can_manage": can_manage,
    }
    return render(request, "green/lots.html", context)


@require_POST
@member_required(kinds=PROVIDERS, min_role=Role.ADMIN)
def lot_withdraw(request: HttpRequest, lot_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    lot = selectors.lot_get(organization, lot_id)
    try:
        services.lot_withdraw(organization=organization, lot=lot, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        messages.success(request, _("Certificate lot withdrawn."))
    return redirect("green:lots")

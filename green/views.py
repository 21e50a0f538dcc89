"""Portal views of the green app: the provider's certificate lots and generation profiles, the buyer's green
overview and statements (HTML and PDF), the public statement verification and the hubs' green shares."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import member_required
from accounts.forms import apply_application_error
from accounts.models import OrganizationKind, Role
from core.errors import ApplicationError
from core.timeutils import utcnow
from green import pdf, selectors, services
from green.forms import GenerationProfileForm, LotCsvForm, LotForm, StatementRequestForm
from green.models import StatementStatus

PROVIDERS = [OrganizationKind.PROVIDER]
BUYERS = [OrganizationKind.BUYER]


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
    profile_form = GenerationProfileForm(
        request.POST if action == "profile" else None,
        request.FILES if action == "profile" else None,
        organization=organization,
    )
    csv_errors: list[str] = []
    profile_errors: list[str] = []
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
        elif action == "profile" and profile_form.is_valid():
            try:
                hours = services.generation_profile_upload(
                    organization=organization,
                    site_id=profile_form.cleaned_data["site"].public_id,
                    content=profile_form.cleaned_data["file"].read(),
                    actor=request.user,
                )
            except ApplicationError as exc:
                profile_errors = [f"{e.field}: {e.message}" if e.field else str(e.message) for e in exc.errors]
            else:
                messages.success(request, _("%(n)s hours of generation saved.") % {"n": hours})
                return redirect("green:lots")
    today = utcnow().date()
    context = {
        "form": form,
        "csv_form": csv_form,
        "csv_errors": csv_errors,
        "profile_form": profile_form,
        "profile_errors": profile_errors,
        "profiles": selectors.generation_summary(organization),
        "lots": selectors.lot_list(organization),
        "expiring": selectors.lots_expiring(organization, today=today),
        "warn_before": today + timedelta(days=90),
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


def _chart(series: list[dict]) -> dict[str, Any]:
    return {
        "months": [f"{e['month']:%Y-%m}" for e in series],
        "share": [float(e["share_pct"]) if e["share_pct"] is not None else None for e in series],
        "location": [round(float(e["location_kg"]) / 1000, 3) for e in series],
        "market": [round(float(e["market_kg"]) / 1000, 3) for e in series],
        "labels": {
            "share": _("Green share (%)"),
            "location": _("CO2, location-based (t)"),
            "market": _("CO2, market-based (t)"),
        },
    }


@require_http_methods(["GET", "POST"])
@member_required(kinds=BUYERS)
def buyer_overview(request: HttpRequest) -> HttpResponse:
    """The buyer's green share and CO2 by month, their statements, and a form to issue one."""
    organization = request.organization  # type: ignore[attr-defined]
    leases = selectors.buyer_lease_choices(organization)
    form = StatementRequestForm(request.POST if request.method == "POST" else None, leases=leases)
    if request.method == "POST" and form.is_valid():
        month = form.cleaned_data["month"].replace(day=1)
        start, end = services.month_bounds(month)
        try:
            statement = services.statement_issue(
                organization=organization,
                period_start=start.date(),
                period_end=end.date(),
                lease_public_id=form.cleaned_data["lease"] or None,
                actor=request.user,
            )
        except ApplicationError as exc:
            apply_application_error(form, exc)
        else:
            return redirect("green:statement", statement_id=statement.public_id)
    series = selectors.buyer_monthly(organization)
    context = {
        "series": series,
        "chart": _chart(series),
        "latest": series[-1] if series else None,
        "statements": selectors.statement_list(organization)[:50],
        "form": form,
    }
    return render(request, "green/buyer_overview.html", context)


def _verify_url(request: HttpRequest, code: str) -> str:
    return request.build_absolute_uri(reverse("green:verify", kwargs={"code": code}))


@member_required(kinds=BUYERS)
def statement_detail(request: HttpRequest, statement_id: UUID) -> HttpResponse:
    statement = selectors.statement_get(request.organization, statement_id)  # type: ignore[attr-defined]
    context = {
        "statement": statement,
        "c": statement.content,
        "verify_url": _verify_url(request, statement.verification_code),
    }
    return render(request, "green/statement_detail.html", context)


@require_GET
@member_required(kinds=BUYERS)
def statement_pdf(request: HttpRequest, statement_id: UUID) -> HttpResponse:
    statement = selectors.statement_get(request.organization, statement_id)  # type: ignore[attr-defined]
    body = pdf.statement_pdf(statement, verify_url=_verify_url(request, statement.verification_code))
    response = HttpResponse(body, content_type="application/pdf")
    name = f"green-statement-{statement.period_start:%Y-%m}-{statement.verification_code[:5]}.pdf"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def statement_verify(request: HttpRequest, code: str) -> HttpResponse:
    """Public: anyone with the code (printed and in the PDF's QR code) sees the statement and whether it is valid."""
    statement = selectors.statement_by_code(code)
    context = {"statement": statement, "c": statement.content, "valid": statement.status == StatementStatus.VALID}
    return render(request, "green/statement_verify.html", context)


def hub_shares(request: HttpRequest) -> HttpResponse:
    """Public: each national hub's green share over the last 12 months (this month so far included) against the
    80% target."""
    now = utcnow()
    this_month = now.date().replace(day=1)
    start, _ = services.month_bounds(services.add_months(this_month, -11))
    context = {
        "hubs": selectors.hub_shares(start=start, end=now),
        "target": selectors.GREEN_TARGET_PCT,
        "start": start,
        "end": now,
    }
    return render(request, "green/hub_shares.html", context)

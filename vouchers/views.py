"""Portal views of the vouchers app: the issuer console and the buyer's voucher pages."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import member_required
from accounts.forms import apply_application_error
from accounts.models import OrganizationKind, Role
from core.errors import ApplicationError
from core.money import format_money, from_minor, to_minor
from core.timeutils import utcnow
from vouchers import exports, rules, selectors, services
from vouchers.forms import (
    ApplicationForm,
    ApproveForm,
    MarkPaidForm,
    ProgramFromTemplateForm,
    RejectForm,
    RequestInfoForm,
    RespondForm,
    RevokeForm,
    day_end_exclusive,
    day_start,
    yuan_to_minor,
)
from vouchers.models import ApplicationStatus, GrantStatus, SettlementStatus
from vouchers.program_templates import PROGRAM_TEMPLATES

ISSUERS = [OrganizationKind.ISSUER]
BUYERS = [OrganizationKind.BUYER]


def _org(request: HttpRequest) -> Any:
    return request.membership.organization  # type: ignore[attr-defined]


def _can_act(request: HttpRequest) -> bool:
    return bool(request.membership.has_role(Role.MEMBER))  # type: ignore[attr-defined]


# --- Issuer console ---------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@member_required(kinds=ISSUERS)
def issuer_programs(request: HttpRequest) -> HttpResponse:
    issuer = _org(request)
    can_manage = request.membership.has_role(Role.ADMIN)  # type: ignore[attr-defined]
    form = ProgramFromTemplateForm(request.POST or None, initial={"fiscal_year": utcnow().year})
    if request.method == "POST":
        if not can_manage:
            return HttpResponse(status=403)
        if form.is_valid():
            data = form.cleaned_data
            try:
                program = services.program_create_from_template(
                    issuer=issuer,
                    template_key=data["template"],
                    name=data["name"] or None,
                    document_number=data["document_number"],
                    fiscal_year=data["fiscal_year"],
                    budget_minor=yuan_to_minor(data["budget"]),
                    valid_from=day_start(data["valid_from"]),
                    valid_until=day_end_exclusive(data["valid_until"]),
                    allowed_providers=list(data["allowed_providers"]),
                    actor=request.user,
                    contact_name=data["contact_name"],
                    contact_phone=data["contact_phone"],
                    contact_email=data["contact_email"],
                    **({"ratio_model": form.ratio_model()} if data.get("ratio_model_pct") is not None else {}),
                )
            except ApplicationError as exc:
                _apply_errors(form, exc, {"budget_minor": "budget", "template": "template"})
            else:
                messages.success(request, _("Programme “%(name)s” created.") % {"name": program.name})
                return redirect("vouchers:issuer-program", program_id=program.public_id)
    context = {
        "programs": selectors.program_list_for_issuer(issuer),
        "form": form,
        "can_manage": can_manage,
        "templates": PROGRAM_TEMPLATES,
        "show_form": request.method == "POST" or request.GET.get("new") == "1",
    }
    return render(request, "vouchers/issuer_programs.html", context)


def _apply_errors(form: Any, exc: ApplicationError, rename: dict[str, str] | None = None) -> None:
    for item in exc.errors:
        field = (rename or {}).get(item.field or "", item.field)
        field = field.split(".")[0].split("[")[0] if field else None
        form.add_error(field if field in form.fields else None, str(item.message))


@require_GET
@member_required(kinds=ISSUERS)
def issuer_program(request: HttpRequest, program_id: UUID) -> HttpResponse:
    issuer = _org(request)
    program = selectors.program_get_for_issuer(issuer, program_id)
    burn = selectors.program_burn_down(program)
    hubs = selectors.redemption_breakdown_by_hub(program)
    for row in hubs:
        row["label"] = _hub_label(row)
    chart = {
        "days": burn["days"],
        "left": [str(from_minor(v, program.currency)) for v in burn["left_minor"]],
        "uncommitted": [str(from_minor(v, program.currency)) for v in burn["uncommitted_minor"]],
        "labels": {"left": _("Budget not yet redeemed"), "uncommitted": _("Budget not yet granted")},
    }
    context = {
        "program": program,
        "stats": selectors.program_stats(program),
        "breakdown": selectors.redemption_breakdown(program),
        "hubs": hubs,
        "hub_chart": {
            "names": [_hub_label(row) for row in hubs],
            "amounts": [str(from_minor(row["amount"], program.currency)) for row in hubs],
        },
        "chart": chart,
        "redemptions": selectors.redemption_list_for_issuer(issuer, program=program)[:20],
        "pending": selectors.application_list_for_issuer(issuer, status="open").filter(program=program)[:20],
        "allowed": program.allowed_providers.all() if program.restrict_providers else None,
    }
    return render(request, "vouchers/issuer_program.html", context)


def _hub_label(row: dict[str, Any]) -> str:
    if row["code"] == selectors.UNKNOWN_HUB:
        return _("Unknown hub")
    return str(row["name_en"] if get_language() == "en" and row["name_en"] else row["name_zh"] or row["code"])


@require_GET
@member_required(kinds=ISSUERS)
def issuer_flags(request: HttpRequest) -> HttpResponse:
    issuer = _org(request)
    programs = selectors.program_list_for_issuer(issuer)
    program = None
    raw = request.GET.get("program", "")
    if raw:
        try:
            program_id = UUID(raw)
        except ValueError as exc:
            raise Http404 from exc
        program = selectors.program_get_for_issuer(issuer, program_id)
    flags = selectors.flagged_cases(issuer, program=program)
    refusals = [(case, [selectors.refusal_label(code) for code in case.codes]) for case in flags["refusal"]]
    context = {
        "programs": programs,
        "program": program,
        "refusals": refusals,
        "expiring": flags["expiring_unused"],
        "capped": flags["annual_cap"],
        "no_evidence": flags["no_evidence"],
        "total": sum(len(v) for v in flags.values()),
        "expiry_days": selectors.EXPIRY_WARNING_DAYS,
    }
    return render(request, "vouchers/issuer_flags.html", context)


@require_GET
@member_required(kinds=ISSUERS)
def issuer_program_export(request: HttpRequest, program_id: UUID, fmt: str) -> HttpResponse:
    program = selectors.program_get_for_issuer(_org(request), program_id)
    header, rows = exports.redemption_rows(program)
    stamp = utcnow().strftime("%Y%m%d")
    filename = f"redemptions-{program.public_id.hex[:8]}-{stamp}.{fmt}"
    if fmt == "csv":
        buffer = io.StringIO()
        buffer.write("\ufeff")  # Excel opens UTF-8 CSV with Chinese text correctly only with a BOM
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(rows)
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    elif fmt == "xlsx":
        response = HttpResponse(
            exports.to_xlsx(header, rows, title=program.name),
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    else:
        raise Http404
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
@member_required(kinds=ISSUERS)
def issuer_applications(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "open")
    if status not in ("open", "all", *ApplicationStatus.values):
        status = "open"
    applications = selectors.application_list_for_issuer(_org(request), status=None if status == "all" else status)
    statuses = [("open", _("Waiting for review")), ("all", _("All")), *ApplicationStatus.choices]
    return render(
        request,
        "vouchers/issuer_applications.html",
        {"applications": applications, "status": status, "statuses": statuses},
    )


@require_http_methods(["GET", "POST"])
@member_required(kinds=ISSUERS)
def issuer_review(request: HttpRequest, review_id: UUID) -> HttpResponse:
    issuer = _org(request)
    application = selectors.application_get_for_issuer(issuer, review_id)
    program = application.program
    last_day = (program.valid_until - timedelta(microseconds=1)).astimezone(rules.FISCAL_ZONE).date()
    default_expiry = min(last_day, utcnow().astimezone(rules.FISCAL_ZONE).date() + timedelta(days=365))
    approve = ApproveForm(
        initial={"amount": from_minor(application.requested_minor, program.currency), "expires_on": default_expiry},
        prefix="approve",
    )
    ask = RequestInfoForm(prefix="ask")
    reject = RejectForm(prefix="reject")
    if request.method == "POST":
        if not _can_act(request):
            return HttpResponse(status=403)
        action = request.POST.get("action")
        try:
            if action == "approve":
                approve = ApproveForm(request.POST, prefix="approve")
                if approve.is_valid():
                    try:
                        grant = services.application_approve(
                            issuer=issuer,
                            application=application,
                            amount_minor=to_minor(approve.cleaned_data["amount"], program.currency),
                            expires_at=day_end_exclusive(approve.cleaned_data["expires_on"]),
                            actor=request.user,
                        )
                    except ApplicationError as exc:
                        _apply_errors(approve, exc, {"expires_at": "expires_on"})
                    else:
                        messages.success(
                            request,
                            _("Approved: grant of %(amount)s created.")
                            % {"amount": format_money(grant.amount_minor, grant.currency)},
                        )
                        return redirect("vouchers:issuer-applications")
            elif action == "ask":
                ask = RequestInfoForm(request.POST, prefix="ask")
                if ask.is_valid():
                    services.application_request_info(
                        issuer=issuer, application=application, message=ask.cleaned_data["message"], actor=request.user
                    )
                    messages.success(request, _("The applicant has been asked for more information."))
                    return redirect("vouchers:issuer-applications")
            elif action == "reject":
                reject = RejectForm(request.POST, prefix="reject")
                if reject.is_valid():
                    services.application_reject(
                        issuer=issuer, application=application, reason=reject.cleaned_data["reason"], actor=request.user
                    )
                    messages.success(request, _("Application rejected."))
                    return redirect("vouchers:issuer-applications")
            else:
                messages.error(request, _("Choose approve, ask for more or reject."))
        except ApplicationError as exc:
            messages.error(request, str(exc.errors[0].message))
            application.refresh_from_db()
    context = {
        "application": application,
        "program": program,
        "checks": selectors.application_review_checks(application),
        "approve": approve,
        "ask": ask,
        "reject": reject,
        "attachments": application.attachments.all(),
        "providers": application.planned_providers.all(),
        "profile": getattr(application.buyer, "company_profile", None),
        "can_act": _can_act(request) and application.is_open,
        "grant": getattr(application, "grant", None) if application.status == ApplicationStatus.APPROVED else None,
    }
    return render(request, "vouchers/issuer_review.html", context)


@require_GET
@member_required(kinds=ISSUERS)
def issuer_grants(request: HttpRequest) -> HttpResponse:
    grants = selectors.grant_list_for_issuer(_org(request))
    status = request.GET.get("status", "")
    if status in GrantStatus.values:
        grants = grants.filter(status=status)
    return render(
        request,
        "vouchers/issuer_grants.html",
        {"grants": grants, "status": status, "statuses": GrantStatus.choices, "can_act": _can_act(request)},
    )


@require_POST
@member_required(kinds=ISSUERS, min_role=Role.MEMBER)
def issuer_grant_revoke(request: HttpRequest, grant_id: UUID) -> HttpResponse:
    issuer = _org(request)
    grant = selectors.grant_get_for_issuer(issuer, grant_id)
    form = RevokeForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Give the reason for revoking."))
        return redirect("vouchers:issuer-grants")
    try:
        services.grant_revoke(issuer=issuer, grant=grant, reason=form.cleaned_data["reason"], actor=request.user)
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        messages.success(request, _("Grant revoked; its unused amount is back in the budget."))
    return redirect("vouchers:issuer-grants")


@require_GET
@member_required(kinds=ISSUERS)
def issuer_redemptions(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "pending")
    if status not in SettlementStatus.values:
        status = ""
    redemptions = selectors.redemption_list_for_issuer(_org(request), settlement_status=status or None)
    rows = [(r, selectors.payee_name(r)) for r in redemptions[:200]]
    return render(
        request,
        "vouchers/issuer_redemptions.html",
        {
            "rows": rows,
            "status": status,
            "statuses": SettlementStatus.choices,
            "can_act": _can_act(request),
            "paid_form": MarkPaidForm(),
        },
    )


@require_GET
@member_required(kinds=ISSUERS)
def issuer_redemption_evidence(request: HttpRequest, redemption_id: UUID) -> HttpResponse:
    """The metered usage behind a redemption: per line, the leases and contracts, their usage over the invoice's
    period, and the signed usage batches with their verification links."""
    redemption = selectors.redemption_get_for_issuer(_org(request), redemption_id)
    context = {"r": redemption, "lines": selectors.redemption_evidence(redemption)}
    return render(request, "vouchers/issuer_redemption_evidence.html", context)


@require_POST
@member_required(kinds=ISSUERS, min_role=Role.MEMBER)
def issuer_redemption_settle(request: HttpRequest, redemption_id: UUID) -> HttpResponse:
    issuer = _org(request)
    redemption = selectors.redemption_get_for_issuer(issuer, redemption_id)
    form = MarkPaidForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Enter the fiscal payment reference."))
        return redirect("vouchers:issuer-redemptions")
    try:
        services.redemption_mark_paid(
            issuer=issuer,
            redemption=redemption,
            fiscal_reference=form.cleaned_data["fiscal_reference"],
            actor=request.user,
        )
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        messages.success(request, _("Marked paid."))
    return redirect("vouchers:issuer-redemptions")


# --- Buyer pages ------------------------------------------------------------------------------------------


@require_GET
@member_required(kinds=BUYERS)
def buyer_quote(request: HttpRequest) -> HttpResponse:
    """The bid form's "this bid would cost ¥X after your voucher" (an HTMX fragment; reserves nothing)."""
    try:
        amount_minor = int(request.GET.get("amount_minor", ""))
        provider = UUID(request.GET.get("provider", ""))
    except ValueError:
        return HttpResponse("")
    quote = selectors.bid_voucher_quote(
        buyer=_org(request), amount_minor=amount_minor, provider_public_id=provider,
        chip_domestic=request.GET.get("domestic") == "1",
    )  # fmt: skip
    return render(request, "vouchers/_bid_quote.html", {"quote": quote})


@require_GET
@member_required(kinds=BUYERS)
def buyer_vouchers(request: HttpRequest) -> HttpResponse:
    buyer = _org(request)
    context = {
        "programs": selectors.program_list_for_buyer(buyer),
        "applications": selectors.application_list_for_buyer(buyer),
        "grants": selectors.grant_list_for_buyer(buyer),
        "redemptions": selectors.redemption_list_for_buyer(buyer)[:20],
        "can_act": _can_act(request),
    }
    return render(request, "vouchers/buyer_vouchers.html", context)


@require_http_methods(["GET", "POST"])
@member_required(kinds=BUYERS)
def buyer_apply(request: HttpRequest) -> HttpResponse:
    buyer = _org(request)
    try:
        program = selectors.program_get_open(request.GET.get("program", ""))
    except Exception:  # a missing or malformed id
        raise Http404 from None
    eligibility = next((p for p in selectors.program_list_for_buyer(buyer) if p.program.pk == program.pk), None)
    form = ApplicationForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if not _can_act(request):
            return HttpResponse(status=403)
        if form.is_valid():
            data = form.cleaned_data
            try:
                application = services.application_submit(
                    buyer=buyer,
                    program=program,
                    requested_minor=to_minor(data["requested_amount"], program.currency),
                    purpose=data["purpose"],
                    contract_reference=data["contract_reference"],
                    planned_usage=data["planned_usage"],
                    providers=list(data["providers"]),
                    files=data["attachments"],
                    actor=request.user,
                )
            except ApplicationError as exc:
                apply_application_error(form, exc)
            else:
                messages.success(request, _("Application submitted. The bureau will review it."))
                return redirect("vouchers:buyer-application", application_id=application.public_id)
    return render(request, "vouchers/buyer_apply.html", {"program": program, "form": form, "eligibility": eligibility})


@require_http_methods(["GET", "POST"])
@member_required(kinds=BUYERS)
def buyer_application(request: HttpRequest, application_id: UUID) -> HttpResponse:
    buyer = _org(request)
    application = selectors.application_get_for_buyer(buyer, application_id)
    form = RespondForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if not _can_act(request):
            return HttpResponse(status=403)
        try:
            if request.POST.get("action") == "withdraw":
                services.application_withdraw(buyer=buyer, application=application, actor=request.user)
                messages.success(request, _("Application withdrawn."))
                return redirect("vouchers:buyer-vouchers")
            if form.is_valid():
                services.application_respond(
                    buyer=buyer,
                    application=application,
                    response=form.cleaned_data["response"],
                    files=form.cleaned_data["attachments"],
                    actor=request.user,
                )
                messages.success(request, _("Answer sent to the reviewer."))
                return redirect("vouchers:buyer-application", application_id=application.public_id)
        except ApplicationError as exc:
            apply_application_error(form, exc)
    context = {
        "application": application,
        "program": application.program,
        "form": form,
        "attachments": application.attachments.all(),
        "providers": application.planned_providers.all(),
        "grant": getattr(application, "grant", None) if application.status == ApplicationStatus.APPROVED else None,
        "can_act": _can_act(request),
    }
    return render(request, "vouchers/buyer_application.html", context)


@require_GET
@member_required(kinds=[OrganizationKind.BUYER, OrganizationKind.ISSUER])
def attachment_download(request: HttpRequest, attachment_id: UUID) -> FileResponse:
    attachment = selectors.attachment_get(_org(request), attachment_id)
    try:
        handle = attachment.file.open("rb")
    except FileNotFoundError:
        raise Http404 from None
    return FileResponse(
        handle, as_attachment=True, filename=attachment.original_name, content_type=attachment.content_type
    )

"""Portal views of billing: the buyer's invoices and payments, the provider's earnings, the staff ledger and
reconciliation, and Stripe's webhook."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import member_required
from accounts.models import OrganizationKind, Role
from billing import pdf, selectors, services
from billing.models import InvoiceStatus
from core.errors import ApplicationError
from core.money import from_minor
from core.tenancy import public
from core.timeutils import utcnow

BUYERS = [OrganizationKind.BUYER]
PROVIDERS = [OrganizationKind.PROVIDER]
PLATFORM = [OrganizationKind.PLATFORM]
PAGE_SIZE = 25


def _org(request: HttpRequest) -> Any:
    return request.membership.organization  # type: ignore[attr-defined]


# --- Buyer -------------------------------------------------------------------------------------------------


@require_GET
@member_required(kinds=BUYERS)
def invoice_list(request: HttpRequest) -> HttpResponse:
    buyer = _org(request)
    status = request.GET.get("status", "")
    if status not in InvoiceStatus.values:
        status = ""
    sort = request.GET.get("sort", "-period")
    page = Paginator(selectors.invoice_list(buyer, status=status or None, sort=sort), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    by_month = selectors.spend_by_month(buyer)
    chart = {
        "months": by_month["months"],
        "total": [str(from_minor(v or 0, "CNY")) for v in by_month["total_minor"]],
        "subsidy": [str(from_minor(v or 0, "CNY")) for v in by_month["subsidy_minor"]],
        "providers": [
            {"name": row["provider"], "value": str(from_minor(row["amount_minor"], "CNY"))}
            for row in selectors.spend_by_provider(buyer)
        ],
    }
    context = {
        "page": page,
        "status": status,
        "sort": sort,
        "statuses": [(s, label) for s, label in InvoiceStatus.choices if s != InvoiceStatus.VOID],
        "chart": chart,
        "profile": selectors.billing_profile(buyer),
    }
    template = "billing/_invoice_rows.html" if request.htmx else "billing/invoice_list.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@require_POST
@member_required(kinds=BUYERS, min_role=Role.ADMIN)
def preferences(request: HttpRequest) -> HttpResponse:
    try:
        services.billing_preferences_update(
            organization=_org(request),
            invoice_at_lease_end=request.POST.get("invoice_at_lease_end") == "on",
            invoice_language=request.POST.get("invoice_language", "zh-hans"),
            actor=request.user,
        )
        messages.success(request, _("Invoicing preferences saved."))
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    return redirect("billing:invoice-list")


@require_GET
@member_required(kinds=BUYERS)
def invoice_detail(request: HttpRequest, invoice_id: UUID) -> HttpResponse:
    invoice = selectors.invoice_get(_org(request), invoice_id)
    return render(
        request,
        "billing/invoice_detail.html",
        {
            "invoice": invoice,
            "lines": invoice.lines.order_by("position").select_related("provider"),
            "payments": invoice.payments.order_by("-created_at"),
            "credit_notes": invoice.credit_notes.all(),
        },
    )


@require_GET
@member_required(kinds=BUYERS)
def invoice_pdf(request: HttpRequest, invoice_id: UUID) -> HttpResponse:
    invoice = selectors.invoice_get(_org(request), invoice_id)
    language = request.GET.get("lang") or selectors.billing_profile(_org(request)).invoice_language
    if language not in ("zh-hans", "en"):
        language = "zh-hans"
    document = pdf.invoice_pdf(invoice, language=language)
    response = HttpResponse(document, content_type="application/pdf")
    name = invoice.number_display or f"draft-{invoice.period_start:%Y-%m}"
    response["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _allow_stripe_js(response: HttpResponse) -> HttpResponse:
    """The pay page is the one portal page that runs a third party's script: add Stripe.js's origins to the
    Content-Security-Policy (settings.CONTENT_SECURITY_POLICY) for this response only. Read per request, since
    development and tests point STRIPE_JS_URL and STRIPE_API_BASE at the local Stripe (devtools/stripe_server.py),
    whose fake Stripe.js calls its API from the page; the real Stripe.js also runs its card fields in frames."""
    script = _origin(settings.STRIPE_JS_URL)
    api = _origin(settings.STRIPE_API_BASE) if settings.STRIPE_API_BASE else "https://api.stripe.com"
    frames = [script]
    if script == "https://js.stripe.com":  # Stripe's published CSP list for Elements and 3-D Secure
        frames += ["https://*.js.stripe.com", "https://hooks.stripe.com"]
    response._csp_update = {"script-src": [script], "connect-src": [api], "frame-src": frames}  # type: ignore[attr-defined]
    return response


@require_http_methods(["GET", "POST"])
@member_required(kinds=BUYERS, min_role=Role.MEMBER)
def invoice_pay(request: HttpRequest, invoice_id: UUID) -> HttpResponse:
    """GET shows the invoice's amount and a Pay button; POST starts (or resumes) the one open payment attempt
    and renders the card form with its client secret."""
    invoice = selectors.invoice_get(_org(request), invoice_id)
    payment = None
    error = None
    if request.method == "POST":
        try:
            payment = services.payment_start(invoice=invoice, actor=request.user)
        except ApplicationError as exc:
            error = exc.errors[0].message
    response = render(
        request,
        "billing/invoice_pay.html",
        {
            "invoice": invoice,
            "payment": payment,
            "error": error,
            "stripe_js_url": settings.STRIPE_JS_URL,
            "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        },
    )
    return _allow_stripe_js(response)


@require_GET
@member_required(kinds=BUYERS)
def invoice_paid(request: HttpRequest, invoice_id: UUID) -> HttpResponse:
    """Stripe.js returns here; the intent is re-read from Stripe (never trusted from the browser)."""
    invoice = selectors.invoice_get(_org(request), invoice_id)
    intent_id = request.GET.get("payment_intent", "")
    payment = invoice.payments.filter(stripe_payment_intent_id=intent_id).first() if intent_id else None
    if payment is not None:
        try:
            payment = services.payment_sync(payment_intent_id=intent_id)
        except ApplicationError as exc:
            messages.error(request, str(exc.errors[0].message))
            return redirect("billing:invoice-detail", invoice_id=invoice.public_id)
    if payment is not None and payment.status == "succeeded":
        messages.success(request, _("Payment received. Thank you!"))
    elif payment is not None and payment.status == "failed":
        messages.error(request, _("The payment did not go through. You can try again."))
    else:
        messages.info(request, _("Your payment is being processed; this page will show it once Stripe confirms."))
    return redirect("billing:invoice-detail", invoice_id=invoice.public_id)


# --- Provider ------------------------------------------------------------------------------------------------


@require_GET
@member_required(kinds=PROVIDERS)
def earnings(request: HttpRequest) -> HttpResponse:
    owner = _org(request)
    page = Paginator(selectors.payout_list(owner), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "billing/earnings.html",
        {
            "balances": selectors.provider_balances(owner),
            "page": page,
            "fees": selectors.fee_statement(owner),
            "breakdown": selectors.revenue_share_breakdown(owner),
        },
    )


# --- Staff -----------------------------------------------------------------------------------------------------


@require_GET
@member_required(kinds=PLATFORM)
def ledger(request: HttpRequest) -> HttpResponse:
    account = None
    postings = None
    if request.GET.get("account"):
        account = selectors.ledger_account_get(request.GET["account"])  # type: ignore[arg-type]
        postings = Paginator(selectors.account_postings(account), 50).get_page(request.GET.get("page"))
    entries = None if account else Paginator(selectors.entry_list(), 30).get_page(request.GET.get("page"))
    return render(
        request,
        "billing/ledger.html",
        {
            "accounts": selectors.ledger_accounts(),
            "account": account,
            "postings": postings,
            "entries": entries,
            "check": selectors.ledger_check_latest(),
        },
    )


@require_http_methods(["GET", "POST"])
@member_required(kinds=PLATFORM)
def reconciliation(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            services.billing_checks_run()
            messages.success(request, _("Reconciliation finished."))
        except ApplicationError as exc:
            messages.error(request, str(exc.errors[0].message))
        return redirect("billing:reconciliation")
    return render(
        request,
        "billing/reconciliation.html",
        {"run": selectors.reconciliation_latest(), "check": selectors.ledger_check_latest(), "now": utcnow()},
    )


# --- Stripe -------------------------------------------------------------------------------------------------------


@public
@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    try:
        event = services.stripe_webhook_receive(
            payload=request.body,
            signature_header=request.headers.get("Stripe-Signature", ""),
            remote_addr=request.META.get("REMOTE_ADDR"),
        )
    except services.WebhookRefused as exc:
        return HttpResponse(json.dumps({"error": exc.code}), status=400, content_type="application/json")
    return HttpResponse(json.dumps({"received": event.event_id if event else None}), content_type="application/json")

"""Portal views of the metering app."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import member_required
from accounts.forms import apply_application_error
from accounts.models import OrganizationKind, Role
from core.errors import ApplicationError
from core.timeutils import utcnow
from marketplace import selectors as market_selectors
from marketplace import selectors_tokens as market_token_selectors
from metering import selectors, services
from metering.forms import DisputeForm, DisputeResponseForm, SigningKeyForm

PROVIDERS = [OrganizationKind.PROVIDER]


@require_http_methods(["GET", "POST"])
@member_required(kinds=PROVIDERS)
def signing_keys(request: HttpRequest) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    can_manage = membership.has_role(Role.ADMIN)
    form = SigningKeyForm(request.POST or None)
    if request.method == "POST":
        if not can_manage:
            return HttpResponse(status=403)
        if form.is_valid():
            try:
                key = services.signing_key_register(
                    organization=membership.organization, actor=request.user, **form.cleaned_data
                )
            except ApplicationError as exc:
                apply_application_error(form, exc)
            else:
                messages.success(
                    request, _("Signing key %(fingerprint)s registered.") % {"fingerprint": key.fingerprint}
                )
                return redirect("metering:signing-keys")
    context = {"form": form, "keys": selectors.signing_key_list(membership.organization), "can_manage": can_manage}
    return render(request, "metering/signing_keys.html", context)


@require_POST
@member_required(kinds=PROVIDERS, min_role=Role.ADMIN)
def signing_key_revoke(request: HttpRequest, signing_key_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    key = selectors.signing_key_get(organization, signing_key_id)
    services.signing_key_revoke(organization=organization, key=key, actor=request.user)
    messages.success(request, _("Signing key revoked."))
    return redirect("metering:signing-keys")


@require_GET
@member_required(kinds=PROVIDERS)
def ingest_health(request: HttpRequest) -> HttpResponse:
    """The provider's usage reporting: records by outcome over 24 h, rejections by code, the latest batches."""
    organization = request.organization  # type: ignore[attr-defined]
    context = {
        "health": selectors.ingest_health(organization, since=utcnow() - timedelta(hours=24)),
        "batches": selectors.batch_list(organization),
    }
    return render(request, "metering/ingest_health.html", context)


@require_GET
def batch_verify(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    """Public: anyone with the link re-verifies a kept batch against the provider's public key."""
    return render(request, "metering/batch_verify.html", {"v": selectors.batch_verification(batch_id)})


# --- Usage and disputes (buyers and providers) ------------------------------------------------------------

MARKET_SIDES = [OrganizationKind.BUYER, OrganizationKind.PROVIDER]


def _chart_data(view: selectors.LeaseUsageView) -> dict[str, Any]:
    return {
        "hours": [localtime(h.hour_start).strftime("%m-%d %H:00") for h in view.hours],
        "contracted": [round(h.contracted_accelerator_seconds / 3600, 2) for h in view.hours],
        "delivered": [round(h.delivered_accelerator_seconds / 3600, 2) if h.elapsed else None for h in view.hours],
        "utilization": [None if h.utilization_bp is None else h.utilization_bp / 100 for h in view.hours],
        "energy": [round(h.energy_wh / 1000, 3) if h.elapsed else None for h in view.hours],
        "estimated": [round(h.energy_estimated_wh / 1000, 3) for h in view.hours],
    }


@require_GET
@member_required(kinds=MARKET_SIDES)
def contract_usage(request: HttpRequest, contract_id: UUID) -> HttpResponse:
    """A token contract's tokens per day (or hour) and this month's use against its monthly volume."""
    by = _granularity(request)
    view = selectors.contract_usage(request.organization, contract_id, by=by)  # type: ignore[attr-defined]
    context = {
        "v": view,
        "by": by,
        "series": _series_chart(view.series, by),
        "has_usage": any(b.tokens_in or b.tokens_out for b in view.series),
    }
    return render(request, "metering/contract_usage.html", context)


def _granularity(request: HttpRequest) -> str:
    """``?by=day`` (the default) or ``?by=hour``."""
    by = request.GET.get("by", "day")
    return by if by in selectors.USAGE_SERIES_SPANS else "day"


def _series_chart(series: list[selectors.UsageBucket], by: str) -> dict[str, Any]:
    label = "%m-%d" if by == "day" else "%m-%d %H:00"
    return {
        "buckets": [b.start.strftime(label) for b in series],
        "accelerator_hours": [round(b.accelerator_seconds / 3600, 2) for b in series],
        "utilization": [None if b.utilization_bp is None else b.utilization_bp / 100 for b in series],
        "energy": [round(b.energy_wh / 1000, 3) for b in series],
        "tokens_in": [round(b.tokens_in / 1_000_000, 3) for b in series],
        "tokens_out": [round(b.tokens_out / 1_000_000, 3) for b in series],
        "requests": [b.requests for b in series],
    }


@require_http_methods(["GET", "POST"])
@member_required(kinds=MARKET_SIDES)
def lease_usage(request: HttpRequest, lease_id: UUID) -> HttpResponse:
    """A lease's usage hour by hour against the contract, its SLA standing and disputes; the buyer may open one."""
    membership = request.membership  # type: ignore[attr-defined]
    organization = membership.organization
    view = selectors.lease_usage(organization, lease_id)
    is_buyer = view.lease.buyer_id == organization.pk
    can_dispute = is_buyer and membership.has_role(Role.MEMBER)
    form = DisputeForm(request.POST or None)
    if request.method == "POST":
        if not can_dispute:
            return HttpResponse(status=403)
        if form.is_valid():
            data = form.cleaned_data
            try:
                dispute = services.dispute_open(
                    organization=organization,
                    lease=view.lease,
                    actor=request.user,
                    data=services.DisputeInput(
                        period_start=data["period_start"],
                        period_end=data["period_end"],
                        reason=data["reason"],
                        observed_downtime_minutes=data["observed_downtime_minutes"],
                        observations=data["observations"],
                    ),
                )
            except ApplicationError as exc:
                apply_application_error(form, exc)
            else:
                messages.success(request, _("Dispute opened; the provider and platform staff have been told."))
                return redirect("metering:dispute-detail", dispute_id=dispute.public_id)
    context = {
        "v": view,
        "s": view.summary,
        "is_buyer": is_buyer,
        "can_dispute": can_dispute and not any(d.is_open for d in view.disputes),
        "form": form,
        "chart": _chart_data(view),
        "attention": view.attention(),
    }
    return render(request, "metering/lease_usage.html", context)


@require_GET
@member_required(kinds=MARKET_SIDES)
def usage_overview(request: HttpRequest) -> HttpResponse:
    """The organisation's leases with a link to each one's usage, and its disputes."""
    organization = request.organization  # type: ignore[attr-defined]
    by = _granularity(request)
    series = selectors.organization_usage_series(organization, by=by)
    context = {
        "by": by,
        "series": _series_chart(series, by),
        "has_usage": any(b.accelerator_seconds or b.tokens_in or b.tokens_out for b in series),
        "has_tokens": any(b.tokens_in or b.tokens_out for b in series),
        "leases": market_selectors.lease_list(organization).exclude(status="cancelled")[:200],
        "contracts": market_token_selectors.token_contract_list(organization).exclude(status="cancelled")[:200],
        "disputes": selectors.dispute_list(organization)[:100],
        "is_provider": organization.kind == OrganizationKind.PROVIDER,
    }
    return render(request, "metering/usage_overview.html", context)


@require_http_methods(["GET", "POST"])
@member_required(kinds=MARKET_SIDES)
def dispute_detail(request: HttpRequest, dispute_id: UUID) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    organization = membership.organization
    dispute = selectors.dispute_get(organization, dispute_id)
    is_provider = dispute.provider_id == organization.pk
    can_respond = is_provider and dispute.is_open and membership.has_role(Role.MEMBER)
    form = DisputeResponseForm(request.POST or None, initial={"provider_response": dispute.provider_response})
    if request.method == "POST":
        if not can_respond:
            return HttpResponse(status=403)
        if form.is_valid():
            try:
                services.dispute_respond(
                    organization=organization,
                    dispute=dispute,
                    response=form.cleaned_data["provider_response"],
                    actor=request.user,
                )
            except ApplicationError as exc:
                apply_application_error(form, exc)
            else:
                messages.success(request, _("Response sent."))
                return redirect("metering:dispute-detail", dispute_id=dispute.public_id)
    context = {
        "d": dispute,
        "is_provider": is_provider,
        "can_respond": can_respond,
        "form": form,
        "observation_hours": selectors.dispute_observation_hours(dispute) if dispute.opened_automatically else [],
    }
    return render(request, "metering/dispute_detail.html", context)

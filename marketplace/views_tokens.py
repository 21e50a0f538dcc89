"""Portal views of the token market: a provider's endpoints, a buyer's token bids, both sides' token contracts.

Views parse input, call one service or selector, and render.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import member_required
from accounts.forms import apply_application_error
from accounts.models import OrganizationKind, Role
from core.errors import ApplicationError
from marketplace import selectors_tokens, services
from marketplace.forms_tokens import TokenBidForm, TokenEndpointForm

PROVIDER = [OrganizationKind.PROVIDER]
BUYER = [OrganizationKind.BUYER]
BOTH = [OrganizationKind.PROVIDER, OrganizationKind.BUYER]


def _can_write(request: HttpRequest) -> bool:
    return request.membership.has_role(Role.MEMBER)  # type: ignore[attr-defined]


# --- Provider: endpoints -------------------------------------------------------------------------------


@require_GET
@member_required(kinds=PROVIDER)
def token_endpoint_list(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    context = {
        "endpoints": selectors_tokens.token_endpoint_list(organization)[:200],
        "can_edit": _can_write(request),
        "summary": selectors_tokens.token_market_summary(organization),
    }
    return render(request, "marketplace/tokens/endpoint_list.html", context)


@require_http_methods(["GET", "POST"])
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def token_endpoint_create(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    form = TokenEndpointForm(request.POST or None, organization=organization)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint = services.token_endpoint_create(
                organization=organization, actor=request.user, data=form.to_input()
            )
        except ApplicationError as exc:
            apply_application_error(form, exc)
        else:
            sold = endpoint.contracts.count()
            if sold:
                messages.success(
                    request,
                    _("Endpoint open: it matched %(n)d resting bid(s) at once; confirm the contracts.") % {"n": sold},
                )
            else:
                messages.success(request, _("Endpoint open: buyers' token bids for this model now match it."))
            return redirect("marketplace:token-endpoint-list")
    return render(request, "marketplace/tokens/endpoint_form.html", {"form": form})


@require_POST
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def token_endpoint_status(request: HttpRequest, endpoint_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    endpoint = selectors_tokens.token_endpoint_get(organization, endpoint_id)
    action = request.POST.get("action")
    service = {
        "pause": services.token_endpoint_pause,
        "resume": services.token_endpoint_resume,
        "close": services.token_endpoint_close,
    }.get(action or "")
    if service is None:
        messages.error(request, _("Unknown action."))
        return redirect("marketplace:token-endpoint-list")
    try:
        service(organization=organization, actor=request.user, endpoint=endpoint)
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        messages.success(
            request,
            {
                "pause": _("Endpoint paused: it takes no new bids; contracts stand."),
                "resume": _("Endpoint open again."),
                "close": _("Endpoint closed; contracts stand."),
            }[action or ""],
        )
    return redirect("marketplace:token-endpoint-list")


# --- Buyer: token bids ---------------------------------------------------------------------------------


@require_GET
@member_required(kinds=BUYER)
def token_bid_list(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    context = {
        "bids": selectors_tokens.token_bid_list(organization)[:200],
        "can_edit": _can_write(request),
    }
    return render(request, "marketplace/tokens/bid_list.html", context)


@require_http_methods(["GET", "POST"])
@member_required(kinds=BUYER, min_role=Role.MEMBER)
def token_bid_create(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    form = TokenBidForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            bid = services.token_bid_create(organization=organization, actor=request.user, data=form.to_input())
        except ApplicationError as exc:
            apply_application_error(form, exc)
        else:
            if bid.status == "filled":
                messages.success(request, _("Matched: the provider confirms the contract within 24 hours."))
                return redirect("marketplace:token-contract-list")
            messages.success(request, _("No endpoint matches yet: your bid rests until it expires."))
            return redirect("marketplace:token-bid-list")
    return render(request, "marketplace/tokens/bid_form.html", {"form": form})


def _decimal(value: str | None) -> Decimal | None:
    try:
        number = Decimal((value or "").strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _int(value: str | None, default: int) -> int:
    try:
        return int((value or "").strip())
    except ValueError:
        return default


@require_POST
@member_required(kinds=BUYER)
def token_bid_preview(request: HttpRequest) -> HttpResponse:
    """The bid form's live panel (htmx): the open endpoints of the model ranked for the bid's mix."""
    try:
        model_id: UUID | None = UUID(request.POST.get("served_model") or "")
    except ValueError:
        model_id = None
    model = selectors_tokens.served_model_list().filter(public_id=model_id).first() if model_id else None
    if model is None:
        return render(request, "marketplace/tokens/_bid_preview.html", {"model": None})
    millions = _decimal(request.POST.get("monthly_tokens")) or Decimal(0)
    quotes = selectors_tokens.token_quotes(
        served_model=model,
        limit_input=_decimal(request.POST.get("limit_input")),
        limit_output=_decimal(request.POST.get("limit_output")),
        monthly_tokens=int(max(millions, Decimal(0)) * 1_000_000) if millions < 10**9 else 10**15,
        input_weight=_int(request.POST.get("input_weight"), 3),
        output_weight=_int(request.POST.get("output_weight"), 1),
        domestic_only=request.POST.get("domestic_only") == "on",
        hubs=frozenset(request.POST.getlist("hubs")),
    )
    context = {"model": model, "quotes": quotes, "chosen": next((q for q in quotes if q.chosen), None)}
    return render(request, "marketplace/tokens/_bid_preview.html", context)


@require_POST
@member_required(kinds=BUYER, min_role=Role.MEMBER)
def token_bid_cancel(request: HttpRequest, token_bid_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    bid = selectors_tokens.token_bid_get(organization, token_bid_id)
    try:
        services.token_bid_cancel(organization=organization, actor=request.user, bid=bid)
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        messages.success(request, _("Token bid withdrawn."))
    return redirect("marketplace:token-bid-list")


# --- Both: token contracts -----------------------------------------------------------------------------


@require_GET
@member_required(kinds=BOTH)
def token_contract_list(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    context = {
        "contracts": selectors_tokens.token_contract_list(organization).prefetch_related("events")[:200],
        "is_provider": organization.kind == OrganizationKind.PROVIDER,
        "can_respond": _can_write(request),
    }
    return render(request, "marketplace/tokens/contract_list.html", context)


@require_POST
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def token_contract_respond(request: HttpRequest, contract_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    contract = selectors_tokens.token_contract_get_as_provider(organization, contract_id)
    confirm = request.POST.get("decision") == "confirm"
    respond = services.token_contract_confirm if confirm else services.token_contract_reject
    try:
        respond(organization=organization, actor=request.user, contract=contract)
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        messages.success(
            request,
            _("Contract confirmed.") if confirm else _("Contract rejected; the volume is available again."),
        )
    return redirect("marketplace:token-contract-list")

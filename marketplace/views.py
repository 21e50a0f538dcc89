"""Portal views of the supply side: the public catalog; a provider's sites, pools and attestations.

Views parse input, call one service or selector, and render. Forms are validated as the user types: the
``*_validate`` views answer an htmx POST of the whole form with one feedback box per field (out-of-band swaps).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import member_required
from accounts.forms import apply_application_error
from accounts.models import OrganizationKind, Role
from core.errors import ApplicationError, FieldError
from core.money import to_minor
from core.tenancy import public
from core.timeutils import floor_hour, utcnow
from marketplace import latency, selectors, services, units
from marketplace.forms import AttestationForm, BidForm, MarketFilterForm, PoolForm, SiteForm
from marketplace.models import PoolStatus, PriceUnit, SiteStatus, Workload

PROVIDER = [OrganizationKind.PROVIDER]


# --- Public catalog -----------------------------------------------------------------------------------


def _num(value: Decimal | None) -> float | None:
    """For the chart only (ECharts takes JSON numbers); every figure on the page itself is a Decimal."""
    return None if value is None else float(value)


def _chart_data(rows: list[selectors.ComparisonRow]) -> dict[str, Any]:
    return {
        "labels": [f"{r.model.vendor} {r.model.name.split(' (')[0]}" for r in rows],
        "scu": [_num(r.normalised.scu.value if r.normalised.scu else None) for r in rows],
        "bwu": [_num(r.normalised.bwu.value if r.normalised.bwu else None) for r in rows],
        "memory": [_num(r.model.memory_gb) for r in rows],
    }


@public
@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    chosen = request.GET.getlist("m")
    picked = selectors.accelerator_model_pick(chosen) if chosen else []
    models = picked or selectors.accelerator_model_default_comparison()
    rows = selectors.accelerator_comparison(models)
    chosen_ids = {m.public_id for m in models}
    context = {
        "rows": rows,
        "chart": _chart_data(rows),
        "catalog": selectors.accelerator_comparison(selectors.accelerator_model_list()),
        "chosen_ids": chosen_ids,
        "formula_version": units.FORMULA_VERSION,
        "h100_tflops": units.H100_REFERENCE_TFLOPS,
    }
    return render(request, "marketplace/catalog.html", context)


@public
@require_GET
def catalog_model(request: HttpRequest, model_id: UUID) -> HttpResponse:
    model = selectors.accelerator_model_get(model_id)
    context = {"model": model, "normalised": model.normalised(), "formula_version": units.FORMULA_VERSION}
    return render(request, "marketplace/catalog_model.html", context)


# --- Live validation ----------------------------------------------------------------------------------


def _feedback(request: HttpRequest, form: Any, service_errors: list[FieldError]) -> HttpResponse:
    """One feedback box per field: an error, ``valid`` for a filled field without error, nothing otherwise."""
    return render(request, "marketplace/_live_feedback.html", {"boxes": _feedback_boxes(request, form, service_errors)})


def _feedback_boxes(request: HttpRequest, form: Any, service_errors: list[FieldError]) -> list[dict[str, Any]]:
    errors: dict[str, list[str]] = {}
    for name, field_errors in form.errors.items():
        errors.setdefault(name, []).extend(str(e) for e in field_errors)
    for error in service_errors:
        name = (error.field or "").split(".")[0]
        if name in form.fields and name not in errors:
            errors.setdefault(name, []).append(str(error.message))
    boxes = []
    for name in form.fields:
        value = request.POST.get(name, "")
        if not value.strip():
            boxes.append({"name": name, "state": "", "errors": []})  # not typed yet: no verdict
        elif name in errors:
            boxes.append({"name": name, "state": "invalid", "errors": errors[name]})
        else:
            boxes.append({"name": name, "state": "valid", "errors": []})
    return boxes


@require_POST
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def site_validate(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    form = SiteForm(request.POST)
    form.is_valid()
    service_errors = services.site_validate(organization=organization, data=_partial_site_input(form.cleaned_data))
    return _feedback(request, form, service_errors)


def _partial_site_input(data: dict[str, Any]) -> services.SiteInput:
    return services.SiteInput(
        name=data.get("name") or "",
        province=data.get("province") or "",
        city=data.get("city") or "",
        cluster_id=data.get("cluster") or None,
        grid_region=data.get("grid_region") or "",
        pue=data.get("pue"),
        pue_period_start=data.get("pue_period_start"),
        pue_period_end=data.get("pue_period_end"),
        green_share_pct=data.get("green_share_pct"),
        latency_tier=data.get("latency_tier") or "",
        dengbao_level=data.get("dengbao_level"),
    )


@require_POST
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def pool_validate(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    form = PoolForm(request.POST, organization=organization)
    form.is_valid()
    data = form.cleaned_data
    partial = services.PoolInput(
        site_id=data.get("site") or None,
        accelerator_model_id=data.get("accelerator_model") or None,
        name=data.get("name") or "",
        accelerator_count=data.get("accelerator_count"),
        interconnect=data.get("interconnect") or "",
        software_stack=data.get("software_stack") or "",
        shares=data.get("shares") or [],
    )
    return _feedback(request, form, services.pool_validate(organization=organization, data=partial))


# --- Sites --------------------------------------------------------------------------------------------


@require_GET
@member_required(kinds=PROVIDER)
def site_list(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    context = {
        "sites": selectors.site_list(organization),
        "summary": selectors.supply_summary(organization),
        "can_edit": request.membership.has_role(Role.MEMBER),  # type: ignore[attr-defined]
    }
    return render(request, "marketplace/site_list.html", context)


def _site_initial(site: Any) -> dict[str, Any]:
    return {
        "name": site.name,
        "province": site.province,
        "city": site.city,
        "cluster": str(site.cluster.public_id) if site.cluster else "",
        "grid_region": site.grid_region,
        "pue": site.pue,
        "pue_period_start": site.pue_period_start,
        "pue_period_end": site.pue_period_end,
        "green_share_pct": site.green_share_pct,
        "latency_tier": site.latency_tier,
        "dengbao_level": site.dengbao_level or "",
    }


@require_http_methods(["GET", "POST"])
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def site_create(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    form = SiteForm(request.POST or None, initial={"green_share_pct": 0})
    if request.method == "POST" and form.is_valid():
        try:
            site = services.site_create(organization=organization, actor=request.user, data=form.to_input())  # type: ignore[arg-type]
        except ApplicationError as exc:
            apply_application_error(form, exc)
        else:
            messages.success(
                request, _("Site %(name)s registered. Now add its accelerator pools.") % {"name": site.name}
            )
            return redirect("marketplace:site-detail", site_id=site.public_id)
    return render(request, "marketplace/site_form.html", {"form": form, "site": None})


@require_GET
@member_required(kinds=PROVIDER)
def site_detail(request: HttpRequest, site_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    site = selectors.site_get(organization, site_id)
    context = {
        "site": site,
        "pools": selectors.pool_list(organization, site=site),
        "can_edit": request.membership.has_role(Role.MEMBER),  # type: ignore[attr-defined]
    }
    return render(request, "marketplace/site_detail.html", context)


@require_http_methods(["GET", "POST"])
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def site_edit(request: HttpRequest, site_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    site = selectors.site_get(organization, site_id)
    form = SiteForm(request.POST or None, initial=_site_initial(site))
    if request.method == "POST" and form.is_valid():
        try:
            services.site_update(organization=organization, actor=request.user, site=site, data=form.to_input())  # type: ignore[arg-type]
        except ApplicationError as exc:
            apply_application_error(form, exc)
        else:
            messages.success(request, _("Saved."))
            return redirect("marketplace:site-detail", site_id=site.public_id)
    return render(request, "marketplace/site_form.html", {"form": form, "site": site})


@require_POST
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def site_status(request: HttpRequest, site_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    site = selectors.site_get(organization, site_id)
    wanted = request.POST.get("status", "")
    try:
        services.site_set_status(organization=organization, actor=request.user, site=site, status=wanted)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        if wanted == SiteStatus.SUSPENDED:
            messages.success(request, _("Site suspended; its listed pools are suspended too."))
        else:
            messages.success(request, _("Site active again."))
    return redirect("marketplace:site-detail", site_id=site.public_id)


# --- Pools --------------------------------------------------------------------------------------------


@require_GET
@member_required(kinds=PROVIDER)
def pool_list(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    pools = selectors.pool_list(organization)
    context = {
        "pools": pools,
        "has_sites": selectors.site_list(organization).exists(),
        "can_edit": request.membership.has_role(Role.MEMBER),  # type: ignore[attr-defined]
    }
    return render(request, "marketplace/pool_list.html", context)


def _pool_initial(pool: Any) -> dict[str, Any]:
    return {
        "site": str(pool.site.public_id),
        "accelerator_model": str(pool.accelerator_model.public_id),
        "name": pool.name,
        "accelerator_count": pool.accelerator_count,
        "interconnect": pool.interconnect,
        "software_stack": pool.software_stack,
        "shares": "\n".join(
            f"{s.organization.public_id}, {format(s.share_pct.normalize(), 'f')}" for s in pool.shares.all()
        ),
    }


@require_http_methods(["GET", "POST"])
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def pool_create(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    initial: dict[str, Any] = {"shares": f"{organization.public_id}, 100"}
    site_param = request.GET.get("site", "")
    if site_param:
        initial["site"] = site_param
    form = PoolForm(request.POST or None, organization=organization, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            pool = services.pool_create(organization=organization, actor=request.user, data=form.to_input())  # type: ignore[arg-type]
        except ApplicationError as exc:
            apply_application_error(form, exc)
        else:
            messages.success(
                request,
                _("Pool %(name)s created as a draft. Attest its performance to rank as verified.")
                % {"name": pool.name},
            )
            return redirect("marketplace:pool-detail", pool_id=pool.public_id)
    context = {"form": form, "pool": None, "own_id": organization.public_id}
    return render(request, "marketplace/pool_form.html", context)


@require_GET
@member_required(kinds=PROVIDER)
def pool_detail(request: HttpRequest, pool_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    pool = selectors.pool_get(organization, pool_id)
    normalised = pool.normalised()
    context = {
        "pool": pool,
        "normalised": normalised,
        "total": normalised.for_count(pool.accelerator_count),
        "attestations": selectors.attestation_list(organization, pool=pool),
        "datasheet": pool.accelerator_model.normalised(),
        "can_edit": request.membership.has_role(Role.MEMBER),  # type: ignore[attr-defined]
        "formula_version": units.FORMULA_VERSION,
    }
    return render(request, "marketplace/pool_detail.html", context)


@require_http_methods(["GET", "POST"])
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def pool_edit(request: HttpRequest, pool_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    pool = selectors.pool_get(organization, pool_id)
    form = PoolForm(request.POST or None, organization=organization, initial=_pool_initial(pool))
    if request.method == "POST" and form.is_valid():
        try:
            services.pool_update(organization=organization, actor=request.user, pool=pool, data=form.to_input())  # type: ignore[arg-type]
        except ApplicationError as exc:
            apply_application_error(form, exc)
        else:
            messages.success(request, _("Saved."))
            return redirect("marketplace:pool-detail", pool_id=pool.public_id)
    context = {"form": form, "pool": pool, "own_id": organization.public_id}
    return render(request, "marketplace/pool_form.html", context)


@require_POST
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def pool_status(request: HttpRequest, pool_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    pool = selectors.pool_get(organization, pool_id)
    wanted = request.POST.get("status", "")
    try:
        services.pool_set_status(organization=organization, actor=request.user, pool=pool, status=wanted)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        labels: dict[str, str] = {
            PoolStatus.LISTED: _("Pool listed: buyers can see it."),
            PoolStatus.SUSPENDED: _("Pool suspended: buyers no longer see it."),
            PoolStatus.DRAFT: _("Pool back to draft."),
        }
        messages.success(request, labels.get(wanted, _("Saved.")))
    return redirect("marketplace:pool-detail", pool_id=pool.public_id)


@require_http_methods(["GET", "POST"])
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def pool_attest(request: HttpRequest, pool_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    pool = selectors.pool_get(organization, pool_id)
    form = AttestationForm(request.POST or None, initial={"tool": "suanli-probe"})
    needs_review_choice = False
    if request.method == "POST" and form.is_valid():
        try:
            attestation = services.attestation_submit(
                organization=organization,
                pool=pool,
                data=form.to_input(),
                user=request.user,  # type: ignore[arg-type]
            )
        except ApplicationError as exc:
            apply_application_error(form, exc)
            needs_review_choice = any(e.code == "above_datasheet" for e in exc.errors)
        else:
            if attestation.status == "accepted":
                messages.success(
                    request, _("Attestation accepted: the pool is verified and rated on the measured figures.")
                )
            else:
                messages.warning(
                    request, _("Attestation sent to platform staff for review; the pool keeps its rating until then.")
                )
            return redirect("marketplace:pool-detail", pool_id=pool.public_id)
    context = {
        "form": form,
        "pool": pool,
        "datasheet_tflops": pool.accelerator_model.dense_tflops,
        "datasheet_tbps": pool.accelerator_model.memory_bw_tbps,
        "needs_review_choice": needs_review_choice or bool(form["request_review"].value()),
    }
    return render(request, "marketplace/pool_attest.html", context)


@require_GET
@member_required(kinds=PROVIDER)
def attestation_detail(request: HttpRequest, attestation_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    attestation = selectors.attestation_get(organization, attestation_id)
    normalised = units.normalise(
        datasheet_tflops=None,
        datasheet_tbps=None,
        attested_tflops=attestation.measured_tflops,
        attested_tbps=attestation.measured_bw_tbps,
    )
    return render(
        request, "marketplace/attestation_detail.html", {"attestation": attestation, "normalised": normalised}
    )


# --- Market: my leases (both sides) ---------------------------------------------------------------------


@require_GET
@member_required(kinds=[OrganizationKind.PROVIDER, OrganizationKind.BUYER])
def lease_list(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    context = {
        "leases": selectors.lease_list(organization)[:200],
        "is_provider": organization.kind == OrganizationKind.PROVIDER,
        "can_respond": request.membership.has_role(Role.MEMBER),  # type: ignore[attr-defined]
    }
    return render(request, "marketplace/lease_list.html", context)


@require_POST
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def lease_respond(request: HttpRequest, lease_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    lease = selectors.lease_get_as_provider(organization, lease_id)
    confirm = request.POST.get("decision") == "confirm"
    try:
        services.lease_respond(organization=organization, actor=request.user, lease=lease, confirm=confirm)
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        messages.success(
            request, _("Lease confirmed.") if confirm else _("Lease rejected; the capacity is for sale again.")
        )
    return redirect("marketplace:lease-list")


# --- Market ---------------------------------------------------------------------------------------------

MARKET_KINDS = [OrganizationKind.BUYER, OrganizationKind.PROVIDER]
BUYER = [OrganizationKind.BUYER]
MARKET_PAGE_SIZE = 25
PREVIEW_TOP = 5
# The bid form's fields with a live feedback box (bid_form.html).
BID_FEEDBACK_FIELDS = {
    "accelerators",
    "hours",
    "limit_price",
    "price_unit",
    "earliest_start",
    "latest_end",
    "latency_tier",
    "buyer_province",
    "min_green_share_pct",
    "max_pue",
    "min_tflops",
    "min_memory_gb",
}
UNIT_LABELS = {
    PriceUnit.ACCELERATOR_HOUR: gettext_lazy("¥/accelerator-hour"),
    PriceUnit.SCU_HOUR: gettext_lazy("¥/SCU-hour"),
    PriceUnit.BWU_HOUR: gettext_lazy("¥/BWU-hour"),
}


def _query_without(request: HttpRequest, *names: str) -> str:
    params = request.GET.copy()
    for name in names:
        params.pop(name, None)
    return params.urlencode()


@require_GET
@member_required(kinds=MARKET_KINDS)
def market(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    data = request.GET.copy()
    if "near" not in data:
        data["near"] = selectors.organization_province(organization)
    form = MarketFilterForm(data, choices=selectors.market_filter_choices())
    filters = form.filters()
    page = selectors.offer_market_page(filters=filters, page=request.GET.get("page"), per_page=MARKET_PAGE_SIZE)
    context = {
        "form": form,
        "filters": filters,
        "page": page,
        "unit_label": UNIT_LABELS.get(filters.unit, ""),  # type: ignore[call-overload]
        "query": _query_without(request, "page"),
        "sort_query": _query_without(request, "page", "sort"),
        "min_lease_label": _("min."),
        "is_buyer": organization.kind == OrganizationKind.BUYER,
        "formula_version": units.FORMULA_VERSION,
    }
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "marketplace/_market_results.html", context)
    return render(request, "marketplace/market.html", context)


def _bid_initial(organization: Any) -> dict[str, Any]:
    start = timezone.localtime(floor_hour(utcnow()) + timedelta(hours=2))
    return {
        "accelerators": 8,
        "hours": 24,
        "earliest_start": start.strftime("%Y-%m-%dT%H:00"),
        "latest_end": (start + timedelta(days=7)).strftime("%Y-%m-%dT%H:00"),
        "price_unit": PriceUnit.ACCELERATOR_HOUR,
        "workload": Workload.TRAINING,
        "buyer_province": selectors.organization_province(organization),
    }


@require_http_methods(["GET", "POST"])
@member_required(kinds=BUYER, min_role=Role.MEMBER)
def bid_create(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    initial = _bid_initial(organization)
    model_param = request.GET.get("model")
    if model_param:
        initial["accelerator_models"] = [model_param]
    form = BidForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            bid = services.bid_create(organization=organization, actor=request.user, data=form.to_input())
        except ApplicationError as exc:
            apply_application_error(form, exc)
        else:
            if bid.filled_accelerators:
                messages.success(
                    request,
                    _("Bid placed: %(filled)s of %(n)s accelerators matched at once; see your leases.")
                    % {"filled": bid.filled_accelerators, "n": bid.accelerators},
                )
            else:
                messages.success(request, _("Bid placed. It rests on the market until it matches or expires."))
            return redirect("marketplace:bid-list")
    return render(request, "marketplace/bid_form.html", {"form": form, "top": PREVIEW_TOP})


def _price_conversions(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The limit price in every unit, for the chosen models (or the usual comparison)."""
    limit, unit = data.get("limit_price"), data.get("price_unit")
    if not limit or limit <= 0 or unit not in PriceUnit.values:
        return []
    models = selectors.accelerator_model_pick(data.get("accelerator_models") or [])[:4]
    models = models or selectors.accelerator_model_default_comparison()
    rows = []
    for model in models:
        prices = {
            target: selectors.convert_unit_price(limit, from_unit=unit, to_unit=target, model=model)
            for target in PriceUnit.values
        }
        rows.append({"model": model, "prices": [(prices[t], t == unit) for t in PriceUnit.values]})
    return rows


def _preview_filters(data: dict[str, Any], organization: Any) -> selectors.MarketFilters:
    tier = data.get("latency_tier") or latency.Tier.ANY
    return selectors.MarketFilters(
        accelerator_models=tuple(data.get("accelerator_models") or ()),
        hubs=tuple(data.get("hubs") or ()),
        domestic_only=bool(data.get("domestic_only")),
        verified_only=bool(data.get("verified_only")),
        min_green_share_pct=Decimal(data.get("min_green_share_pct") or 0),
        max_pue=data.get("max_pue"),
        min_tflops=data.get("min_tflops") or 0,
        min_memory_gb=data.get("min_memory_gb") or 0,
        workload=data.get("workload") or Workload.TRAINING,
        buyer_province=data.get("buyer_province") or selectors.organization_province(organization),
        latency_tier=tier,
        window_start=data.get("earliest_start"),
        window_end=data.get("latest_end"),
        unit=data.get("price_unit") or PriceUnit.ACCELERATOR_HOUR,
        max_unit_price=data.get("limit_price"),
        min_accelerators=0 if data.get("split_allowed") else data.get("accelerators") or 0,
        hours=data.get("hours") or 0,
    )


@require_POST
@member_required(kinds=BUYER, min_role=Role.MEMBER)
def bid_preview(request: HttpRequest) -> HttpResponse:
    """As the buyer types: the limit in the other units, the offers that would match now, field errors."""
    organization = request.organization  # type: ignore[attr-defined]
    form = BidForm(request.POST)
    form.is_valid()
    data = {k: v for k, v in form.cleaned_data.items() if k not in form.errors}
    filters = _preview_filters(data, organization)
    offers = selectors.offer_market_list(filters=filters)
    top = list(offers[:PREVIEW_TOP])
    context = {
        "estimate": _cost_estimate(data, top[0]) if top else None,
        "boxes": [box for box in _feedback_boxes(request, form, []) if box["name"] in BID_FEEDBACK_FIELDS],
        "conversions": _price_conversions(data),
        "unit_labels": [UNIT_LABELS[u] for u in PriceUnit.values],  # type: ignore[index]
        "has_price": data.get("limit_price") is not None,
        "count": offers.count(),
        "offers": top,
        "unit_label": UNIT_LABELS.get(filters.unit, ""),  # type: ignore[call-overload]
    }
    return render(request, "marketplace/_bid_preview.html", context)


def _cost_estimate(data: dict[str, Any], offer: Any) -> dict[str, Any] | None:
    """What the bid would cost at the best matching offer's ask (before VAT), for the voucher quote beside it."""
    accelerators, hours = data.get("accelerators"), data.get("hours")
    if not accelerators or not hours:
        return None
    return {
        "amount_minor": to_minor(Decimal(accelerators * hours) * offer.ask, offer.currency),
        "provider": offer.pool.organization.public_id,
        "domestic": int(offer.pool.accelerator_model.domestic),
    }


@require_GET
@member_required(kinds=BUYER)
def bid_list(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    context = {
        "bids": selectors.bid_list_for_page(organization)[:200],
        "can_cancel": request.membership.has_role(Role.MEMBER),  # type: ignore[attr-defined]
    }
    return render(request, "marketplace/bid_list.html", context)


@require_POST
@member_required(kinds=BUYER, min_role=Role.MEMBER)
def bid_cancel(request: HttpRequest, bid_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    bid = selectors.bid_get(organization, bid_id)
    try:
        services.bid_cancel(organization=organization, actor=request.user, bid=bid)
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        messages.success(request, _("Bid cancelled; leases already made stand."))
    return redirect("marketplace:bid-list")


@require_GET
@member_required(kinds=PROVIDER)
def offer_list(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    context = {
        "offers": selectors.offer_list_with_fill(organization)[:200],
        "can_cancel": request.membership.has_role(Role.MEMBER),  # type: ignore[attr-defined]
    }
    return render(request, "marketplace/offer_list.html", context)


@require_POST
@member_required(kinds=PROVIDER, min_role=Role.MEMBER)
def offer_cancel(request: HttpRequest, offer_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    offer = selectors.offer_get(organization, offer_id)
    try:
        services.offer_cancel(organization=organization, actor=request.user, offer=offer)
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
    else:
        messages.success(request, _("Offer withdrawn; leases already made stand."))
    return redirect("marketplace:offer-list")


@require_GET
@member_required(kinds=MARKET_KINDS)
def market_depth(request: HttpRequest) -> HttpResponse:
    choices = selectors.market_filter_choices()
    models = choices["models"]
    wanted = request.GET.get("model", "")
    model = next((m for m in models if str(m.public_id) == wanted), None) or selectors.market_busiest_model()
    unit = request.GET.get("unit", "")
    unit = unit if unit in PriceUnit.values else PriceUnit.ACCELERATOR_HOUR
    depth = selectors.market_depth(accelerator_model=model, unit=unit) if model else {"asks": [], "bids": []}
    chart = {  # both sides by ascending price, for the x axis
        side: [[_num(level.price), level.cumulative] for level in sorted(levels, key=lambda level: level.price)]
        for side, levels in depth.items()
    }
    context = {
        "models": models,
        "model": model,
        "unit": unit,
        "units": PriceUnit.choices,
        "unit_label": UNIT_LABELS[unit],  # type: ignore[index]
        "depth": depth,
        "chart": chart,
    }
    return render(request, "marketplace/market_depth.html", context)

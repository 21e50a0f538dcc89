"""Reads of the supply side. Tenant data always takes the organisation; foreign ids are 404."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import (
    Count,
    DateTimeField,
    DecimalField,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    Window,
)
from django.db.models.functions import Coalesce, Greatest, NullIf
from django.http import Http404

from accounts.models import Organization
from accounts.regions import province_choices
from core.timeutils import floor_hour, utcnow
from marketplace import latency, units
from marketplace.models import (
    AcceleratorModel,
    Attestation,
    Bid,
    Cluster,
    Hub,
    Lease,
    LeaseStatus,
    Offer,
    OrderStatus,
    Pool,
    PoolShare,
    PoolStatus,
    PriceUnit,
    Site,
    SiteStatus,
    Workload,
)

# The catalog page compares these by default (DESIGN.md §4.1: H100 vs H20 vs Ascend 910B).
DEFAULT_COMPARISON = [("NVIDIA", "H100 SXM5"), ("NVIDIA", "H20"), ("Huawei", "Ascend 910B")]


def _get(queryset: QuerySet, public_id: UUID | str) -> object:
    try:
        return queryset.get(public_id=public_id)
    except (queryset.model.DoesNotExist, ValueError, ValidationError):
        raise Http404 from None


# --- Catalog (public) ---------------------------------------------------------------------------------


def accelerator_model_list(*, vendor: str | None = None, domestic: bool | None = None) -> QuerySet[AcceleratorModel]:
    qs = AcceleratorModel.objects.annotate(pool_count=Count("pools", filter=Q(pools__status=PoolStatus.LISTED)))
    if vendor:
        qs = qs.filter(vendor=vendor)
    if domestic is not None:
        qs = qs.filter(domestic=domestic)
    return qs.order_by("domestic", "vendor", "name")


def accelerator_model_get(public_id: UUID | str) -> AcceleratorModel:
    return _get(AcceleratorModel.objects.all(), public_id)  # type: ignore[return-value]


def accelerator_model_default_comparison() -> list[AcceleratorModel]:
    found = []
    for vendor, prefix in DEFAULT_COMPARISON:
        model = AcceleratorModel.objects.filter(vendor=vendor, name__startswith=prefix).order_by("name").first()
        if model is not None:
            found.append(model)
    return found


def accelerator_model_pick(public_ids: Iterable[str]) -> list[AcceleratorModel]:
    """The models named (in the given order), unknown or malformed ids skipped."""
    wanted: list[UUID] = []
    for raw in public_ids:
        try:
            wanted.append(UUID(str(raw)))
        except ValueError:
            continue
    by_id = {m.public_id: m for m in AcceleratorModel.objects.filter(public_id__in=wanted)}
    return [by_id[i] for i in dict.fromkeys(wanted) if i in by_id]


@dataclass(frozen=True)
class ComparisonRow:
    model: AcceleratorModel
    normalised: units.Normalised


def accelerator_comparison(models: Iterable[AcceleratorModel]) -> list[ComparisonRow]:
    return [ComparisonRow(model=m, normalised=m.normalised()) for m in models]


def vendor_list() -> list[str]:
    return list(AcceleratorModel.objects.order_by("vendor").values_list("vendor", flat=True).distinct())


def cluster_list() -> QuerySet[Cluster]:
    return Cluster.objects.select_related("hub").order_by("hub__side", "hub__code", "name_zh")


def hub_list() -> QuerySet[Hub]:
    return Hub.objects.prefetch_related("clusters").order_by("side", "code")


# --- Sites and pools (tenant) -------------------------------------------------------------------------


def site_list(organization: Organization) -> QuerySet[Site]:
    return (
        Site.objects.filter(organization=organization)
        .select_related("hub", "cluster")
        .annotate(pool_count=Count("pools"))
        .order_by("name")
    )


def site_get(organization: Organization, public_id: UUID | str) -> Site:
    return _get(Site.objects.filter(organization=organization).select_related("hub", "cluster"), public_id)  # type: ignore[return-value]


def _pool_queryset() -> QuerySet[Pool]:
    return Pool.objects.select_related(
        "site", "site__hub", "accelerator_model", "current_attestation", "organization"
    ).prefetch_related(Prefetch("shares", queryset=PoolShare.objects.select_related("organization")))


def pool_list(organization: Organization, *, site: Site | None = None) -> QuerySet[Pool]:
    qs = _pool_queryset().filter(organization=organization)
    if site is not None:
        qs = qs.filter(site=site)
    return qs.order_by("site__name", "name")


def pool_get(organization: Organization, public_id: UUID | str) -> Pool:
    return _get(_pool_queryset().filter(organization=organization), public_id)  # type: ignore[return-value]


def pool_listing_list(*, domestic: bool | None = None, verified: bool | None = None) -> QuerySet[Pool]:
    """Listed pools of active sites, for everyone: verified first (DESIGN.md §4.1), then by model."""
    qs = _pool_queryset().filter(status=PoolStatus.LISTED, site__status=SiteStatus.ACTIVE)
    if domestic is not None:
        qs = qs.filter(accelerator_model__domestic=domestic)
    if verified is not None:
        qs = qs.filter(verified=verified)
    return qs.order_by("-verified", "accelerator_model__vendor", "accelerator_model__name", "public_id")


def pool_listing_get(public_id: UUID | str) -> Pool:
    return _get(pool_listing_list(), public_id)  # type: ignore[return-value]


def attestation_list(organization: Organization, *, pool: Pool) -> QuerySet[Attestation]:
    return (
        Attestation.objects.filter(organization=organization, pool=pool)
        .select_related("pool", "submitted_by")
        .order_by("-created_at", "-id")
    )


def attestation_get(organization: Organization, public_id: UUID | str) -> Attestation:
    qs = Attestation.objects.filter(organization=organization).select_related(
        "pool", "pool__accelerator_model", "pool__site", "submitted_by"
    )
    return _get(qs, public_id)  # type: ignore[return-value]


def supply_summary(organization: Organization) -> dict[str, int]:
    pools = Pool.objects.filter(organization=organization)
    return {
        "sites": Site.objects.filter(organization=organization).count(),
        "pools": pools.count(),
        "listed": pools.filter(status=PoolStatus.LISTED).count(),
        "verified": pools.filter(verified=True).count(),
    }


# --- Market (tenant-scoped) -----------------------------------------------------------------------------


def offer_list(organization: Organization, *, status: str | None = None) -> QuerySet[Offer]:
    offers = Offer.objects.filter(organization=organization).select_related("pool")
    return offers.filter(status=status) if status else offers


def offer_get(organization: Organization, public_id: UUID | str) -> Offer:
    return _get(offer_list(organization), public_id)  # type: ignore[return-value]


def bid_list(organization: Organization, *, status: str | None = None) -> QuerySet[Bid]:
    bids = Bid.objects.filter(organization=organization).prefetch_related("accelerator_models", "hubs")
    return bids.filter(status=status) if status else bids


def bid_get(organization: Organization, public_id: UUID | str) -> Bid:
    return _get(bid_list(organization), public_id)  # type: ignore[return-value]


def lease_list(organization: Organization, *, status: str | None = None) -> QuerySet[Lease]:
    """Leases the organisation bought or sold."""
    leases = Lease.objects.filter(Q(buyer=organization) | Q(provider=organization)).select_related(
        "pool__site", "pool__accelerator_model", "buyer", "provider", "bid", "offer"
    )
    return leases.filter(status=status) if status else leases


def lease_get(organization: Organization, public_id: UUID | str) -> Lease:
    return _get(lease_list(organization).prefetch_related("events"), public_id)  # type: ignore[return-value]


def lease_get_as_provider(organization: Organization, public_id: UUID | str) -> Lease:
    return _get(lease_list(organization).filter(provider=organization), public_id)  # type: ignore[return-value]


def lease_facts_for_provider(organization: Organization, public_ids: Iterable[str]) -> QuerySet[Lease]:
    """The provider's usable (not cancelled) leases among these ids, for metering."""
    return Lease.objects.filter(provider=organization, public_id__in=list(public_ids)).exclude(
        status=LeaseStatus.CANCELLED
    )


@dataclass(frozen=True)
class LeaseTerms:
    """What metering reconciles a lease against (not tenant-scoped: for platform jobs and billing)."""

    pk: int
    public_id: UUID
    provider_id: int
    buyer_id: int
    accelerators: int
    start: datetime
    end: datetime
    status: str
    tdp_w: int | None


def lease_terms(
    *, public_ids: Iterable[UUID | str] | None = None, overlapping: tuple[datetime, datetime] | None = None
) -> list[LeaseTerms]:
    """Terms of leases by public id and/or overlapping [start, end), one query; cancelled leases excluded."""
    leases = Lease.objects.exclude(status=LeaseStatus.CANCELLED)
    if public_ids is not None:
        leases = leases.filter(public_id__in=list(public_ids))
    if overlapping is not None:
        leases = leases.filter(start__lt=overlapping[1], end__gt=overlapping[0])
    rows = leases.values_list(
        "pk", "public_id", "provider_id", "buyer_id", "accelerators", "start", "end", "status",
        "pool__accelerator_model__tdp_w",
    )  # fmt: skip
    return [LeaseTerms(*row) for row in rows]


# --- The market page (public to members: every open offer) --------------------------------------------

MARKET_SORTS = ("price", "-price", "-green", "pue", "hub", "-created")


@dataclass(frozen=True)
class MarketFilters:
    """What the market page and the bid form filter on; empty means any. ``unit`` is a ``PriceUnit``."""

    accelerator_models: tuple[str, ...] = ()  # public ids
    vendors: tuple[str, ...] = ()
    hubs: tuple[str, ...] = ()  # hub codes
    provinces: tuple[str, ...] = ()
    domestic_only: bool = False
    verified_only: bool = False
    min_green_share_pct: Decimal = Decimal(0)
    max_pue: Decimal | None = None
    min_tflops: int = 0
    min_memory_gb: int = 0
    workload: str = Workload.TRAINING
    buyer_province: str = ""
    latency_tier: str = latency.Tier.ANY
    window_start: datetime | None = None  # offers overlapping [window_start, window_end)
    window_end: datetime | None = None
    unit: str = PriceUnit.ACCELERATOR_HOUR
    max_unit_price: Decimal | None = None  # in ``unit``
    min_accelerators: int = 0  # one offer holds at least this many
    hours: int = 0  # one offer's window and minimum lease fit a lease of this many hours
    sort: str = "price"


def _tflops_expression() -> Any:
    """Attested dense FP16/BF16 TFLOPS per accelerator, or the datasheet's (the larger of BF16 and FP16)."""
    return Coalesce(
        F("pool__current_attestation__measured_tflops"),
        Greatest(F("pool__accelerator_model__bf16_tflops"), F("pool__accelerator_model__fp16_tflops")),
    )


def _tbps_expression() -> Any:
    return Coalesce(F("pool__current_attestation__measured_bw_tbps"), F("pool__accelerator_model__memory_bw_tbps"))


_PRICE = DecimalField(max_digits=30, decimal_places=10)


def _priced_offers(now: datetime) -> QuerySet[Offer]:
    """Open offers still running, of listed pools at active sites, with the ask in the three units (in SQL, the
    same figures as ``units.normalise``: attested where measured; NULL where the unit's figure is unknown)."""
    tflops = _tflops_expression()
    tbps = _tbps_expression()
    return (
        Offer.objects.filter(
            status=OrderStatus.OPEN,
            end__gt=floor_hour(now),
            pool__status=PoolStatus.LISTED,
            pool__site__status=SiteStatus.ACTIVE,
        )
        .select_related("organization", "pool__site__hub", "pool__accelerator_model", "pool__current_attestation")
        .defer("pool__current_attestation__raw_output", "pool__accelerator_model__source_url")
        .annotate(
            tflops=tflops,
            tbps=tbps,
            price_acc_hour=ExpressionWrapper(F("ask"), output_field=_PRICE),
            price_scu_hour=ExpressionWrapper(F("ask") * Value(1000) / NullIf(tflops, Value(0)), output_field=_PRICE),
            price_bwu_hour=ExpressionWrapper(F("ask") / NullIf(tbps, Value(0)), output_field=_PRICE),
        )
    )


# Accelerators of an offer still for sale over the whole rest of its window: its size minus the peak of its live
# (not cancelled) leases from the current hour on. The peak of overlapping intervals is reached at the start of
# one of them (clipped to the current hour), so it is the largest sum of leases running at such a start: two
# correlated subqueries per offer, on the lease table's offer index (most offers have no lease at all).


def _remaining_expression(now: datetime) -> Any:
    hour = Value(floor_hour(now), output_field=DateTimeField())
    live = Lease.objects.exclude(status=LeaseStatus.CANCELLED)
    point = Greatest(OuterRef("start"), hour, output_field=DateTimeField())
    running = (
        live.filter(offer_id=OuterRef("offer_id"), start__lte=point, end__gt=point)
        .values("offer_id")
        .annotate(n=Sum("accelerators"))
        .values("n")
    )
    peak = (
        live.filter(offer_id=OuterRef("pk"), end__gt=hour)
        .annotate(busy=Subquery(running, output_field=IntegerField()))
        .order_by(F("busy").desc(nulls_last=True))
        .values("busy")[:1]
    )
    return ExpressionWrapper(
        F("accelerators") - Coalesce(Subquery(peak, output_field=IntegerField()), Value(0)),
        output_field=IntegerField(),
    )


_PRICE_FIELD = {
    PriceUnit.ACCELERATOR_HOUR: "price_acc_hour",
    PriceUnit.SCU_HOUR: "price_scu_hour",
    PriceUnit.BWU_HOUR: "price_bwu_hour",
}


def offer_market_list(*, filters: MarketFilters, now: datetime | None = None) -> QuerySet[Offer]:
    """Every open offer matching ``filters``, sorted; each row has ``unit_price`` (in ``filters.unit``) and the
    three ``price_*`` figures. Filtering, sorting and (by the caller) paging all happen in SQL."""
    now = now or utcnow()
    qs = _priced_offers(now)
    price_field = _PRICE_FIELD.get(filters.unit, "price_acc_hour")  # type: ignore[call-overload]
    qs = qs.annotate(unit_price=F(price_field))
    if filters.accelerator_models:
        ids = [u for u in (_uuid_or_none(m) for m in filters.accelerator_models) if u]
        qs = qs.filter(pool__accelerator_model__public_id__in=ids)
    if filters.vendors:
        qs = qs.filter(pool__accelerator_model__vendor__in=filters.vendors)
    if filters.hubs:
        qs = qs.filter(pool__site__hub__code__in=filters.hubs)
    if filters.provinces:
        qs = qs.filter(pool__site__province__in=filters.provinces)
    if filters.domestic_only:
        qs = qs.filter(pool__accelerator_model__domestic=True)
    if filters.verified_only:
        qs = qs.filter(pool__verified=True)
    if filters.min_green_share_pct:
        qs = qs.filter(pool__site__green_share_pct__gte=filters.min_green_share_pct)
    if filters.max_pue is not None:
        qs = qs.filter(pool__site__pue__lte=filters.max_pue)
    if filters.min_tflops:
        qs = qs.filter(tflops__gte=filters.min_tflops)  # type: ignore[misc]  # an annotation
    if filters.min_memory_gb:
        qs = qs.filter(pool__accelerator_model__memory_gb__gte=filters.min_memory_gb)
    if filters.buyer_province and latency.region_of(filters.buyer_province):
        placement = latency.placement_provinces(
            workload=filters.workload, buyer_province=filters.buyer_province, tier=filters.latency_tier
        )
        if placement is not None:
            qs = qs.filter(pool__site__province__in=sorted(placement))
    if filters.window_start is not None:
        qs = qs.filter(end__gt=filters.window_start)
    if filters.window_end is not None:
        qs = qs.filter(start__lt=filters.window_end)
    if filters.max_unit_price is not None:
        qs = qs.filter(unit_price__lte=filters.max_unit_price)
    if filters.min_accelerators:
        # What is left unleased: an offer never has more left than its size, and only offers with live leases
        # can have less, so the (uncorrelated, computed once) subquery looks at those alone.
        leased = Lease.objects.exclude(status=LeaseStatus.CANCELLED).filter(end__gt=floor_hour(now)).values("offer_id")
        short = (
            Offer.objects.filter(id__in=leased)
            .alias(remaining=_remaining_expression(now))
            .filter(remaining__lt=filters.min_accelerators)
            .values("id")
        )
        qs = qs.filter(accelerators__gte=filters.min_accelerators).exclude(id__in=short)
    if filters.hours:
        qs = qs.filter(min_lease_hours__lte=filters.hours, end__gte=F("start") + timedelta(hours=filters.hours))
    return qs.order_by(*_market_ordering(filters.sort))


def offer_market_page(*, filters: MarketFilters, page: Any, per_page: int, now: datetime | None = None) -> Page:
    """One page of ``offer_market_list`` in two queries: the page's ids with the total (``COUNT(*) OVER ()``: one
    pass, sorted and sliced on narrow rows in SQL), then those offers with their pool, site, hub, model and
    attestation. A page number past the end shows the last page, as ``Paginator.get_page`` does."""
    now = now or utcnow()
    try:
        number = max(1, int(page))
    except (TypeError, ValueError):
        number = 1
    ids_query = offer_market_list(filters=filters, now=now).annotate(total=Window(Count("id")))
    found = list(ids_query.values_list("id", "total")[(number - 1) * per_page : number * per_page])
    if not found and number > 1:
        total = ids_query.count()
        number = max(1, -(-total // per_page))
        found = list(ids_query.values_list("id", "total")[(number - 1) * per_page : number * per_page])
    paginator = Paginator(ids_query, per_page)
    paginator.__dict__["count"] = found[0][1] if found else 0  # a cached_property: the total is known already
    result = paginator.page(number) if found else paginator.get_page(1)
    price_field = _PRICE_FIELD.get(filters.unit, "price_acc_hour")  # type: ignore[call-overload]
    ids = [row[0] for row in found]
    rows = {
        o.id: o
        for o in _priced_offers(now)
        .annotate(unit_price=F(price_field), remaining=_remaining_expression(now))
        .filter(id__in=ids)
    }
    result.object_list = [_market_row(rows[i]) for i in ids if i in rows]  # type: ignore[misc]  # ids -> offers
    return result


_CENT = Decimal("0.01")
_PROVINCE_LABELS = dict(province_choices())


def _market_row(offer: Offer) -> Offer:
    """What the table shows, precomputed (cheaper than template filters and ``get_province_display``)."""
    unit_price = offer.unit_price  # type: ignore[attr-defined]
    offer.unit_price_shown = None if unit_price is None else unit_price.quantize(_CENT)  # type: ignore[attr-defined]
    offer.ask_shown = offer.ask.quantize(_CENT)  # type: ignore[attr-defined]
    offer.province_label = _PROVINCE_LABELS.get(offer.pool.site.province, offer.pool.site.province)  # type: ignore[attr-defined]
    return offer


def _market_ordering(sort: str) -> list[Any]:
    price = F("unit_price")
    by_sort: dict[str, list[Any]] = {
        "price": [price.asc(nulls_last=True)],
        "-price": [price.desc(nulls_last=True)],
        "-green": [F("pool__site__green_share_pct").desc(), price.asc(nulls_last=True)],
        "pue": [F("pool__site__pue").asc(), price.asc(nulls_last=True)],
        "hub": [F("pool__site__hub__code").asc(nulls_last=True), price.asc(nulls_last=True)],
        "-created": [F("created_at").desc()],
    }
    # Verified pools rank before unverified ones at the same key (DESIGN.md §4.1), then a stable order.
    return [*by_sort.get(sort, by_sort["price"]), F("pool__verified").desc(), F("id").asc()]


def _uuid_or_none(value: str) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def market_filter_choices() -> dict[str, Any]:
    """The choices the market filters offer: models and vendors that have listed pools, and every hub."""
    models = list(
        AcceleratorModel.objects.filter(pools__status=PoolStatus.LISTED)
        .distinct()
        .order_by("domestic", "vendor", "name")
        .only("public_id", "vendor", "name", "domestic")
    )
    return {
        "models": models,
        "vendors": sorted({m.vendor for m in models}),
        "hubs": list(Hub.objects.order_by("side", "code")),
    }


# --- Order-book depth -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthLevel:
    price: Decimal  # in the chosen unit
    accelerators: int  # at this price
    cumulative: int  # at this price or better (asks: cheaper; bids: dearer)


def _model_unit_figure(model: AcceleratorModel, unit: str) -> Decimal | None:
    """Per-accelerator-hour SCU or BWU of a model's datasheet (1 for accelerator-hours)."""
    if unit == PriceUnit.ACCELERATOR_HOUR:
        return Decimal(1)
    normalised = model.normalised()
    figure = normalised.scu if unit == PriceUnit.SCU_HOUR else normalised.bwu
    return figure.value if figure else None


def convert_unit_price(price: Decimal, *, from_unit: str, to_unit: str, model: AcceleratorModel) -> Decimal | None:
    """A price in one unit as a price in another, for one accelerator model (datasheet figures)."""
    source = _model_unit_figure(model, from_unit)
    target = _model_unit_figure(model, to_unit)
    if source is None or target is None:
        return None
    return price * source / target


def _cumulate(levels: dict[Decimal, int], *, descending: bool) -> list[DepthLevel]:
    out: list[DepthLevel] = []
    total = 0
    for price in sorted(levels, reverse=descending):
        total += levels[price]
        out.append(DepthLevel(price=price, accelerators=levels[price], cumulative=total))
    return out


DEPTH_QUANTUM = Decimal("0.01")


def market_busiest_model(*, now: datetime | None = None) -> AcceleratorModel | None:
    """The accelerator model with the most open offers (the order book's default)."""
    now = now or utcnow()
    row = (
        _priced_offers(now)
        .values("pool__accelerator_model")
        .annotate(n=Count("id"))
        .order_by("-n", "pool__accelerator_model")
        .first()
    )
    return AcceleratorModel.objects.filter(pk=row["pool__accelerator_model"]).first() if row else None


def market_depth(
    *, accelerator_model: AcceleratorModel, unit: str, now: datetime | None = None
) -> dict[str, list[DepthLevel]]:
    """The order book of one accelerator model in one unit: asks (open offers of its pools) cumulated upwards
    from the cheapest, bids (open bids that accept the model) cumulated downwards from the dearest. Bids in
    another unit are converted with the model's datasheet figures; prices are rounded to 0.01 per level."""
    now = now or utcnow()
    price_field = _PRICE_FIELD.get(unit, "price_acc_hour")  # type: ignore[call-overload]
    asks: dict[Decimal, int] = {}
    rows = (
        _priced_offers(now)
        .filter(pool__accelerator_model=accelerator_model)
        .annotate(remaining=_remaining_expression(now))
        .values_list(price_field, "remaining")
    )
    for price, count in rows:
        if price is not None and count > 0:
            level = price.quantize(DEPTH_QUANTUM)
            asks[level] = asks.get(level, 0) + count
    bids: dict[Decimal, int] = {}
    open_bids = (
        Bid.objects.filter(status=OrderStatus.OPEN, latest_end__gt=floor_hour(now))
        .filter(Q(accelerator_models=None) | Q(accelerator_models=accelerator_model))
        .distinct()
        .values_list("limit_price", "price_unit", "accelerators", "filled_accelerators")
    )
    for limit, price_unit, count, filled in open_bids:
        converted = convert_unit_price(limit, from_unit=price_unit, to_unit=unit, model=accelerator_model)
        if converted is not None and count > filled:
            level = converted.quantize(DEPTH_QUANTUM)
            bids[level] = bids.get(level, 0) + count - filled
    return {"asks": _cumulate(asks, descending=False), "bids": _cumulate(bids, descending=True)}


# --- My orders ------------------------------------------------------------------------------------------


def offer_list_with_fill(organization: Organization, *, status: str | None = None) -> QuerySet[Offer]:
    """The organisation's offers with ``sold`` (accelerators in leases that are not cancelled)."""
    offers = offer_list(organization, status=status).select_related("pool__accelerator_model", "pool__site")
    return offers.annotate(
        sold=Coalesce(Sum("leases__accelerators", filter=~Q(leases__status=LeaseStatus.CANCELLED)), 0)
    ).order_by("-created_at", "-id")


def bid_list_for_page(organization: Organization, *, status: str | None = None) -> QuerySet[Bid]:
    return bid_list(organization, status=status).order_by("-created_at", "-id")


def organization_province(organization: Organization) -> str:
    """Where the organisation is (its company registration), for latency tiers; "" when unknown."""
    profile = getattr(organization, "company_profile", None)
    return profile.registered_province if profile else ""


# --- For billing (platform jobs, not tenant-scoped) ---------------------------------------------------


@dataclass(frozen=True)
class LeaseBillingTerms:
    public_id: UUID
    buyer_id: int
    provider_id: int
    pool_id: int
    pool_name: str
    accelerator_model: str
    chip_domestic: bool
    currency: str
    price: Decimal  # per accelerator-hour
    accelerators: int
    start: datetime
    end: datetime
    scu_per_accelerator_hour: Decimal | None


# Leases that are charged: confirmed by the provider (active), ended (completed) or under dispute.
BILLABLE_LEASE_STATUSES = (LeaseStatus.ACTIVE, LeaseStatus.COMPLETED, LeaseStatus.DISPUTED)


def lease_billing_terms(
    *,
    window: tuple[datetime, datetime],
    buyer_ids: Iterable[int] | None = None,
    public_ids: Iterable[UUID] | None = None,
    exclude_public_ids: Iterable[UUID] = (),
) -> list[LeaseBillingTerms]:
    """Every billable lease overlapping [start, end), with what an invoice line shows; one query."""
    leases = Lease.objects.filter(status__in=BILLABLE_LEASE_STATUSES, start__lt=window[1], end__gt=window[0])
    if buyer_ids is not None:
        leases = leases.filter(buyer_id__in=list(buyer_ids))
    if public_ids is not None:
        leases = leases.filter(public_id__in=list(public_ids))
    if excluded := list(exclude_public_ids):
        leases = leases.exclude(public_id__in=excluded)
    rows = leases.annotate(tflops=_tflops_expression()).values_list(
        "public_id", "buyer_id", "provider_id", "pool_id", "pool__name", "pool__accelerator_model__name",
        "pool__accelerator_model__domestic", "currency", "price", "accelerators", "start", "end", "tflops",
    )  # fmt: skip
    return [
        LeaseBillingTerms(*row[:-1], scu_per_accelerator_hour=units.scu_per_hour(row[-1]) if row[-1] else None)
        for row in rows
    ]


def leases_ended_for_billing(*, ended_before: datetime, buyer_ids: Iterable[int]) -> list[tuple[UUID, int]]:
    """(public id, buyer id) of the buyers' billable leases that ended before ``ended_before``."""
    return list(
        Lease.objects.filter(
            status__in=BILLABLE_LEASE_STATUSES, end__lte=ended_before, buyer_id__in=list(buyer_ids)
        ).values_list("public_id", "buyer_id")
    )


def pool_shares(*, pool_ids: Iterable[int]) -> dict[int, list[tuple[int, Decimal]]]:
    """Each pool's revenue-share owners as (organisation id, share %); without shares, the provider owns 100%."""
    ids = list(pool_ids)
    owners: dict[int, list[tuple[int, Decimal]]] = {pool_id: [] for pool_id in ids}
    for pool_id, org_id, pct in (
        PoolShare.objects.filter(pool_id__in=ids)
        .order_by("pool_id", "organization_id")
        .values_list("pool_id", "organization_id", "share_pct")
    ):
        owners[pool_id].append((org_id, pct))
    for pool_id, provider_id in Pool.objects.filter(pk__in=[p for p, o in owners.items() if not o]).values_list(
        "pk", "organization_id"
    ):
        owners[pool_id] = [(provider_id, Decimal(100))]
    return owners


@dataclass(frozen=True)
class TokenContractBillingTerms:
    public_id: UUID
    buyer_id: int
    provider_id: int
    pool_id: int
    model_name: str
    chip_domestic: bool
    currency: str
    price_input: Decimal  # per million tokens
    price_output: Decimal


def token_contract_billing_terms(
    *, window: tuple[datetime, datetime], buyer_ids: Iterable[int] | None = None
) -> list[TokenContractBillingTerms]:
    """Every billable token contract overlapping [start, end); one query."""
    from marketplace.models import TokenContract

    contracts = TokenContract.objects.filter(status__in=BILLABLE_LEASE_STATUSES, start__lt=window[1], end__gt=window[0])
    if buyer_ids is not None:
        contracts = contracts.filter(buyer_id__in=list(buyer_ids))
    rows = contracts.values_list(
        "public_id", "buyer_id", "provider_id", "endpoint__pool_id", "served_model__name",
        "endpoint__pool__accelerator_model__domestic", "currency", "price_input", "price_output",
    )  # fmt: skip
    return [TokenContractBillingTerms(*row) for row in rows]


# --- For the voucher console (issuer reports, not tenant-scoped: the vouchers app scopes by programme) ----


@dataclass(frozen=True)
class SubjectHub:
    code: str
    name_zh: str
    name_en: str


def hubs_for_subjects(*, public_ids: Iterable[UUID | str]) -> dict[str, SubjectHub | None]:
    """The 东数西算 hub of each lease or token contract, by public id (as a string), through its pool's site:
    None when the site has no hub; ids that name neither a lease nor a token contract are absent. Two queries."""
    from marketplace.models import TokenContract

    ids: set[UUID] = set()
    for value in public_ids:
        try:
            ids.add(value if isinstance(value, UUID) else UUID(str(value)))
        except ValueError:
            continue
    out: dict[str, SubjectHub | None] = {}
    if not ids:
        return out
    for queryset, prefix in (
        (Lease.objects.filter(public_id__in=ids), "pool__site__hub__"),
        (TokenContract.objects.filter(public_id__in=ids), "endpoint__pool__site__hub__"),
    ):
        for public_id, code, name_zh, name_en in queryset.values_list(
            "public_id", f"{prefix}code", f"{prefix}name_zh", f"{prefix}name_en"
        ):
            out[str(public_id)] = SubjectHub(code, name_zh, name_en) if code else None
    return out


def metering_subject_facts(
    *, provider_id: int, public_ids: list[str]
) -> list[tuple[str, str, int, int, datetime, datetime]]:
    """(kind, public id, provider id, accelerators, start, end) of the provider's usable (not cancelled) leases and
    token contracts among these ids (valid UUID strings), for the metering ingest. A batch names up to thousands
    of them, so: one round trip with the ids as one array parameter, plain tuples, and the bounds as epoch
    microseconds (Django's time-zone-aware timestamp loader costs ~5 µs a value; this is exact and ~20x cheaper)."""
    from marketplace.models import TokenContract

    if not public_ids:
        return []
    bounds = '(extract(epoch FROM start) * 1000000)::bigint, (extract(epoch FROM "end") * 1000000)::bigint'
    sql = f"""
        SELECT 'lease', public_id::text, provider_id, accelerators, {bounds} FROM {Lease._meta.db_table}
        WHERE provider_id = %s AND public_id = ANY(%s::uuid[]) AND status <> %s
        UNION ALL
        SELECT 'contract', public_id::text, provider_id, 0, {bounds} FROM {TokenContract._meta.db_table}
        WHERE provider_id = %s AND public_id = ANY(%s::uuid[]) AND status <> %s
    """  # noqa: S608 - table names from the models, values as parameters
    cancelled = LeaseStatus.CANCELLED.value
    with connection.cursor() as cursor:
        cursor.execute(sql, [provider_id, public_ids, cancelled, provider_id, public_ids, cancelled])
        rows = cursor.fetchall()
    return [
        (
            kind,
            public_id,
            provider,
            accelerators,
            _EPOCH + timedelta(microseconds=start),
            _EPOCH + timedelta(microseconds=end),
        )
        for kind, public_id, provider, accelerators, start, end in rows
    ]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

"""Reads of the supply side. Tenant data always takes the organisation; foreign ids are 404."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404

from accounts.models import Organization
from marketplace import units
from marketplace.models import (
    AcceleratorModel,
    Attestation,
    Bid,
    Cluster,
    Hub,
    Lease,
    LeaseStatus,
    Offer,
    Pool,
    PoolShare,
    PoolStatus,
    Site,
    SiteStatus,
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

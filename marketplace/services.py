"""Writes of the supply side: sites, pools with revenue shares, attestations. Each service owns its transaction.

Every rule is checked here (the portal forms and the API only parse), and every problem comes back as a
``FieldError`` naming the input field, all at once, before anything is written. ``site_validate`` and
``pool_validate`` run the same checks without writing, for the portal's validation as the user types.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any, TypeVar

from django.db import IntegrityError, connection, transaction
from django.db.models import DecimalField, ExpressionWrapper, F, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest, NullIf
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, OrganizationAPIKey, OrganizationKind, User
from accounts.regions import PROVINCE_EN_BY_CODE
from core.audit import actor_label_for, audit_record
from core.errors import ApplicationError, FieldError, ValidationFailed
from core.outbox import outbox_enqueue
from core.timeutils import floor_hour, month_start, utcnow
from marketplace import latency, matching, token_matching, units
from marketplace.models import (
    PUE_MAX,
    PUE_MIN,
    SECONDS_PER_TOKEN_MONTH,
    AcceleratorModel,
    Attestation,
    AttestationSource,
    AttestationStatus,
    Bid,
    Cluster,
    EndpointStatus,
    GridRegion,
    Hub,
    LatencyTier,
    Lease,
    LeaseAllocation,
    LeaseEvent,
    LeaseStatus,
    Offer,
    OrderStatus,
    Pool,
    PoolShare,
    PoolStatus,
    PriceUnit,
    ServedModel,
    Site,
    SiteStatus,
    SoftwareStack,
    TokenBid,
    TokenContract,
    TokenContractEvent,
    TokenEndpoint,
    Workload,
)

_T = TypeVar("_T")
OrderT = TypeVar("OrderT", Offer, Bid)

MAX_ACCELERATORS_PER_POOL = 100_000
# Absolute sanity limits for figures of chips whose datasheet is silent (no 1.5x check possible).
MAX_TFLOPS = Decimal(20_000)
MAX_TBPS = Decimal(100)
MAX_RAW_OUTPUT = 200_000

MSG_REQUIRED = _("This field is required.")


def _snapshot(instance: Any, fields: list[str]) -> dict[str, Any]:
    out = {}
    for name in fields:
        value = getattr(instance, name)
        if isinstance(value, Decimal | date | uuid.UUID):
            value = str(value)
        elif hasattr(value, "public_id"):
            value = str(value.public_id)
        out[name] = value
    return out


def _require_provider(organization: Organization) -> None:
    if organization.kind != OrganizationKind.PROVIDER:
        raise ApplicationError("not_a_provider", _("Only providers register sites and pools."), status_code=403)


def _parse_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


# --- Sites --------------------------------------------------------------------------------------------

SITE_FIELDS = [
    "name",
    "province",
    "city",
    "cluster",
    "grid_region",
    "pue",
    "pue_period_start",
    "pue_period_end",
    "green_share_pct",
    "latency_tier",
    "dengbao_level",
]


@dataclass(frozen=True)
class SiteInput:
    name: str
    province: str
    city: str
    cluster_id: uuid.UUID | str | None
    grid_region: str
    pue: Decimal | None
    pue_period_start: date | None
    pue_period_end: date | None
    green_share_pct: Decimal | None
    latency_tier: str
    dengbao_level: int | None


def _site_check(
    organization: Organization, data: SiteInput, *, site: Site | None = None
) -> tuple[list[FieldError], Cluster | None]:
    errors: list[FieldError] = []
    cluster = None
    if not data.name.strip():
        errors.append(FieldError("required", MSG_REQUIRED, "name"))
    elif (
        Site.objects.filter(organization=organization, name=data.name.strip())
        .exclude(pk=site.pk if site else -1)
        .exists()
    ):
        errors.append(FieldError("duplicate_name", _("You already have a site with this name."), "name"))
    if data.province not in PROVINCE_EN_BY_CODE:
        errors.append(FieldError("invalid_province", _("Choose a province."), "province"))
    if not data.city.strip():
        errors.append(FieldError("required", MSG_REQUIRED, "city"))
    if data.cluster_id:
        cluster_uuid = _parse_uuid(data.cluster_id)
        cluster = Cluster.objects.select_related("hub").filter(public_id=cluster_uuid).first() if cluster_uuid else None
        if cluster is None:
            errors.append(FieldError("unknown_cluster", _("Unknown hub cluster."), "cluster"))
        elif data.province in PROVINCE_EN_BY_CODE and PROVINCE_EN_BY_CODE[data.province] not in cluster.province_names:
            errors.append(
                FieldError(
                    "cluster_province_mismatch",
                    _("The %(cluster)s cluster is not in this province.") % {"cluster": cluster.name_zh},
                    "cluster",
                )
            )
    if data.grid_region not in GridRegion.values:
        errors.append(FieldError("invalid_grid_region", _("Choose a grid region."), "grid_region"))
    if data.pue is None:
        errors.append(FieldError("required", MSG_REQUIRED, "pue"))
    elif not data.pue.is_finite() or data.pue < PUE_MIN:
        errors.append(FieldError("pue_too_low", _("A PUE is at least 1.0 (all power reaches the IT load)."), "pue"))
    elif data.pue > PUE_MAX:
        errors.append(FieldError("pue_absurd", _("A PUE above 3.0 is not plausible for a data centre."), "pue"))
    if data.pue_period_start and data.pue_period_end and data.pue_period_end < data.pue_period_start:
        errors.append(
            FieldError("period_order", _("The end of the measurement period is before its start."), "pue_period_end")
        )
    if data.green_share_pct is not None and not (0 <= data.green_share_pct <= 100):
        errors.append(FieldError("out_of_range", _("A share is between 0 and 100%."), "green_share_pct"))
    if data.latency_tier not in LatencyTier.values:
        errors.append(FieldError("invalid_latency_tier", _("Choose a latency tier."), "latency_tier"))
    if data.dengbao_level is not None and not (1 <= data.dengbao_level <= 5):
        errors.append(FieldError("out_of_range", _("等保 levels are 1 to 5."), "dengbao_level"))
    return errors, cluster


def site_validate(*, organization: Organization, data: SiteInput, site: Site | None = None) -> list[FieldError]:
    """The errors ``site_create`` / ``site_update`` would raise, without writing anything."""
    return _site_check(organization, data, site=site)[0]


def _site_apply(site: Site, data: SiteInput, cluster: Cluster | None) -> None:
    site.name = data.name.strip()
    site.province = data.province
    site.city = data.city.strip()
    site.cluster = cluster
    site.hub = cluster.hub if cluster else None
    site.grid_region = data.grid_region
    site.pue = data.pue  # type: ignore[assignment]
    site.pue_period_start = data.pue_period_start
    site.pue_period_end = data.pue_period_end
    site.green_share_pct = data.green_share_pct if data.green_share_pct is not None else Decimal(0)
    site.latency_tier = data.latency_tier
    site.dengbao_level = data.dengbao_level


def site_create(*, organization: Organization, actor: User, data: SiteInput) -> Site:
    _require_provider(organization)
    errors, cluster = _site_check(organization, data)
    if errors:
        raise ValidationFailed(errors)
    site = Site(organization=organization)
    _site_apply(site, data, cluster)
    try:
        with transaction.atomic():
            site.save()
            audit_record(
                action="site.created",
                target=site,
                actor=actor,
                organization=organization,
                after=_snapshot(site, SITE_FIELDS),
            )
    except IntegrityError:
        raise ApplicationError("duplicate_name", _("You already have a site with this name."), field="name") from None
    return site


def site_update(*, organization: Organization, actor: User, site: Site, data: SiteInput) -> Site:
    if site.organization_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    errors, cluster = _site_check(organization, data, site=site)
    if errors:
        raise ValidationFailed(errors)
    before = _snapshot(site, SITE_FIELDS)
    _site_apply(site, data, cluster)
    with transaction.atomic():
        site.save()
        audit_record(
            action="site.updated",
            target=site,
            actor=actor,
            organization=organization,
            before=before,
            after=_snapshot(site, SITE_FIELDS),
        )
    return site


def site_set_status(*, organization: Organization, actor: User, site: Site, status: str) -> Site:
    """Suspending a site suspends its listed pools (they cannot be sold from a suspended site)."""
    if site.organization_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    if status not in SiteStatus.values:
        raise ApplicationError("invalid_status", _("Unknown status."), field="status")
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site.pk)
        before = site.status
        site.status = status
        site.save(update_fields=["status", "updated_at"])
        if status == SiteStatus.SUSPENDED:
            site.pools.filter(status=PoolStatus.LISTED).update(status=PoolStatus.SUSPENDED, updated_at=utcnow())
        audit_record(
            action="site.status_changed",
            target=site,
            actor=actor,
            organization=organization,
            before={"status": before},
            after={"status": status},
        )
    return site


# --- Pools --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareInput:
    """A revenue-share owner: an organisation's ID (UUID) or its 统一社会信用代码, and a percentage."""

    owner: str
    share_pct: Decimal


@dataclass(frozen=True)
class PoolInput:
    site_id: uuid.UUID | str | None
    accelerator_model_id: uuid.UUID | str | None
    name: str
    accelerator_count: int | None
    interconnect: str
    software_stack: str
    shares: list[ShareInput]


POOL_FIELDS = ["site", "accelerator_model", "name", "accelerator_count", "interconnect", "software_stack", "status"]


def _resolve_owner(owner: str) -> Organization | None:
    owner = owner.strip()
    owner_uuid = _parse_uuid(owner)
    if owner_uuid is not None:
        return Organization.objects.filter(public_id=owner_uuid).first()
    return Organization.objects.filter(company_profile__uscc=owner.upper()).first() if owner else None


def _shares_check(shares: list[ShareInput]) -> tuple[list[FieldError], list[tuple[Organization, Decimal]]]:
    errors: list[FieldError] = []
    resolved: list[tuple[Organization, Decimal]] = []
    if not shares:
        return [FieldError("required", _("Name at least one owner (your organisation: 100%)."), "shares")], []
    seen: set[int] = set()
    total = Decimal(0)
    for index, share in enumerate(shares, start=1):
        organization = _resolve_owner(share.owner)
        if organization is None:
            errors.append(
                FieldError(
                    "unknown_owner",
                    _("Line %(n)d: no organisation with ID or credit code “%(owner)s”.")
                    % {"n": index, "owner": share.owner},
                    "shares",
                )
            )
        elif organization.pk in seen:
            errors.append(
                FieldError("duplicate_owner", _("Line %(n)d: this owner is named twice.") % {"n": index}, "shares")
            )
        else:
            seen.add(organization.pk)
        if not share.share_pct.is_finite() or share.share_pct <= 0 or share.share_pct > 100:
            errors.append(
                FieldError(
                    "invalid_share", _("Line %(n)d: a share is more than 0 and at most 100%%.") % {"n": index}, "shares"
                )
            )
        elif share.share_pct != share.share_pct.quantize(Decimal("0.01")):
            errors.append(
                FieldError("invalid_share", _("Line %(n)d: at most two decimal places.") % {"n": index}, "shares")
            )
        else:
            total += share.share_pct
        if organization is not None:
            resolved.append((organization, share.share_pct))
    if not errors and total != 100:
        errors.append(
            FieldError(
                "shares_not_100",
                _("The shares add up to %(total)s%%, not 100%%.") % {"total": format(total.normalize(), "f")},
                "shares",
            )
        )
    return errors, resolved


def _pool_check(
    organization: Organization, data: PoolInput, *, pool: Pool | None = None
) -> tuple[list[FieldError], Site | None, AcceleratorModel | None, list[tuple[Organization, Decimal]], PoolInput]:
    errors: list[FieldError] = []
    site = model = None
    site_uuid = _parse_uuid(data.site_id) if data.site_id else None
    if not data.site_id:
        errors.append(FieldError("required", MSG_REQUIRED, "site"))
    else:
        # Another provider's site is indistinguishable from a site that does not exist.
        site = Site.objects.filter(organization=organization, public_id=site_uuid).first() if site_uuid else None
        if site is None:
            errors.append(FieldError("unknown_site", _("No such site among your sites."), "site"))
    model_uuid = _parse_uuid(data.accelerator_model_id) if data.accelerator_model_id else None
    if not data.accelerator_model_id:
        errors.append(FieldError("required", MSG_REQUIRED, "accelerator_model"))
    else:
        model = AcceleratorModel.objects.filter(public_id=model_uuid).first() if model_uuid else None
        if model is None:
            errors.append(
                FieldError(
                    "unknown_accelerator_model",
                    _("Unknown accelerator model: choose one from the catalog."),
                    "accelerator_model",
                )
            )
    if not data.name.strip():
        errors.append(FieldError("required", MSG_REQUIRED, "name"))
    elif (
        site is not None
        and Pool.objects.filter(site=site, name=data.name.strip()).exclude(pk=pool.pk if pool else -1).exists()
    ):
        errors.append(FieldError("duplicate_name", _("This site already has a pool with this name."), "name"))
    if data.accelerator_count is None:
        errors.append(FieldError("required", MSG_REQUIRED, "accelerator_count"))
    elif data.accelerator_count <= 0:
        errors.append(FieldError("count_not_positive", _("A pool has at least one accelerator."), "accelerator_count"))
    elif data.accelerator_count > MAX_ACCELERATORS_PER_POOL:
        errors.append(
            FieldError(
                "count_too_large",
                _("At most %(n)d accelerators per pool; split larger fleets.") % {"n": MAX_ACCELERATORS_PER_POOL},
                "accelerator_count",
            )
        )
    if not data.software_stack and model is not None:
        data = replace(data, software_stack=model.software_stack)
    if data.software_stack not in SoftwareStack.values:
        errors.append(FieldError("invalid_software_stack", _("Choose a software stack."), "software_stack"))
    share_errors, resolved = _shares_check(data.shares)
    errors.extend(share_errors)
    return errors, site, model, resolved, data


def pool_validate(*, organization: Organization, data: PoolInput, pool: Pool | None = None) -> list[FieldError]:
    return _pool_check(organization, data, pool=pool)[0]


def _replace_shares(pool: Pool, resolved: list[tuple[Organization, Decimal]]) -> list[dict[str, str]]:
    pool.shares.all().delete()
    PoolShare.objects.bulk_create(PoolShare(pool=pool, organization=org, share_pct=pct) for org, pct in resolved)
    return [{"organization": str(org.public_id), "share_pct": str(pct)} for org, pct in resolved]


def pool_create(*, organization: Organization, actor: User, data: PoolInput) -> Pool:
    _require_provider(organization)
    errors, site, model, resolved, data = _pool_check(organization, data)
    if errors:
        raise ValidationFailed(errors)
    assert site is not None
    assert model is not None
    assert data.accelerator_count is not None
    pool = Pool(
        organization=organization,
        site=site,
        accelerator_model=model,
        name=data.name.strip(),
        accelerator_count=data.accelerator_count,
        interconnect=data.interconnect.strip(),
        software_stack=data.software_stack,
    )
    try:
        with transaction.atomic():
            pool.save()
            shares = _replace_shares(pool, resolved)
            audit_record(
                action="pool.created",
                target=pool,
                actor=actor,
                organization=organization,
                after={**_snapshot(pool, POOL_FIELDS), "shares": shares},
            )
    except IntegrityError:
        raise ApplicationError(
            "duplicate_name", _("This site already has a pool with this name."), field="name"
        ) from None
    return pool


def pool_update(*, organization: Organization, actor: User, pool: Pool, data: PoolInput) -> Pool:
    if pool.organization_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    errors, site, model, resolved, data = _pool_check(organization, data, pool=pool)
    if errors:
        raise ValidationFailed(errors)
    assert site is not None
    assert model is not None
    assert data.accelerator_count is not None
    before = {
        **_snapshot(pool, POOL_FIELDS),
        "shares": [
            {"organization": str(s.organization.public_id), "share_pct": str(s.share_pct)} for s in pool.shares.all()
        ],
    }
    model_changed = model.pk != pool.accelerator_model_id
    pool.site = site
    pool.accelerator_model = model
    pool.name = data.name.strip()
    pool.accelerator_count = data.accelerator_count
    pool.interconnect = data.interconnect.strip()
    pool.software_stack = data.software_stack
    if model_changed:
        # Attested figures belong to the old hardware: the pool is rated on the datasheet again.
        pool.current_attestation = None
        pool.verified = False
    with transaction.atomic():
        pool.save()
        shares = _replace_shares(pool, resolved)
        audit_record(
            action="pool.updated",
            target=pool,
            actor=actor,
            organization=organization,
            before=before,
            after={**_snapshot(pool, POOL_FIELDS), "shares": shares},
        )
    return pool


def pool_set_status(*, organization: Organization, actor: User, pool: Pool, status: str) -> Pool:
    if pool.organization_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    if status not in PoolStatus.values:
        raise ApplicationError("invalid_status", _("Unknown status."), field="status")
    with transaction.atomic():
        pool = Pool.objects.select_for_update().select_related("site").get(pk=pool.pk)
        if status == PoolStatus.LISTED and pool.site.status != SiteStatus.ACTIVE:
            raise ApplicationError(
                "site_suspended", _("The site is suspended: reactivate it before listing its pools."), field="status"
            )
        before = pool.status
        pool.status = status
        pool.save(update_fields=["status", "updated_at"])
        audit_record(
            action="pool.status_changed",
            target=pool,
            actor=actor,
            organization=organization,
            before={"status": before},
            after={"status": status},
        )
    return pool


def pool_request_retest(*, pool: Pool, actor: User) -> Pool:
    """Platform staff ask for a fresh attestation; the next accepted one re-rates the pool."""
    with transaction.atomic():
        pool = Pool.objects.select_for_update().get(pk=pool.pk)
        pool.retest_requested_at = utcnow()
        pool.save(update_fields=["retest_requested_at", "updated_at"])
        audit_record(action="pool.retest_requested", target=pool, actor=actor, organization=pool.organization, after={})
    return pool


# --- Attestations -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttestationInput:
    measured_tflops: Decimal | None
    measured_bw_tbps: Decimal | None
    raw_output: str
    tokens_per_s: Decimal | None = None
    reference_model: str = ""
    reference_latency_ms: int | None = None
    tool: str = ""
    request_review: bool = False


def _figure_errors(
    field: str, value: Decimal | None, declared: Decimal | None, maximum: Decimal, *, request_review: bool
) -> tuple[list[FieldError], bool]:
    """Errors for one measured figure, and whether it needs staff review (above 1.5 x the datasheet)."""
    if value is None:
        return [FieldError("required", MSG_REQUIRED, field)], False
    if not value.is_finite() or value <= 0:
        return [FieldError("not_positive", _("A measured figure is more than zero."), field)], False
    if value > maximum:
        return [FieldError("absurd", _("This figure is beyond any accelerator on the market."), field)], False
    if units.is_implausible(value, declared):
        assert declared is not None
        if request_review:
            return [], True
        message = _(
            "%(ratio)s x the datasheet peak (%(declared)s): figures above 1.5 x go to platform staff for review. "
            "Check the run, or resubmit asking for a review."
        ) % {"ratio": units.ratio(value, declared).normalize(), "declared": declared.normalize()}
        return [FieldError("above_datasheet", message, field)], False
    return [], False


def attestation_validate(*, pool: Pool, data: AttestationInput) -> tuple[list[FieldError], bool]:
    model = pool.accelerator_model
    errors, review_tflops = _figure_errors(
        "measured_tflops", data.measured_tflops, model.dense_tflops, MAX_TFLOPS, request_review=data.request_review
    )
    bw_errors, review_bw = _figure_errors(
        "measured_bw_tbps", data.measured_bw_tbps, model.memory_bw_tbps, MAX_TBPS, request_review=data.request_review
    )
    errors.extend(bw_errors)
    if data.tokens_per_s is not None and (not data.tokens_per_s.is_finite() or data.tokens_per_s <= 0):
        errors.append(FieldError("not_positive", _("A measured figure is more than zero."), "tokens_per_s"))
    if data.tokens_per_s is not None and not data.reference_model.strip():
        errors.append(
            FieldError("required", _("Name the reference model the tokens/s were measured on."), "reference_model")
        )
    if not data.raw_output.strip():
        errors.append(FieldError("required", _("Paste the raw benchmark output."), "raw_output"))
    elif len(data.raw_output) > MAX_RAW_OUTPUT:
        errors.append(
            FieldError("too_long", _("The raw output is too long (200,000 characters at most)."), "raw_output")
        )
    return errors, review_tflops or review_bw


def attestation_submit(
    *,
    organization: Organization,
    pool: Pool,
    data: AttestationInput,
    user: User | None = None,
    api_key: OrganizationAPIKey | None = None,
) -> Attestation:
    """Store measured figures. Plausible ones are accepted and rate the pool (verified); figures above
    1.5 x the datasheet are refused unless the provider asks for a review, and then wait for staff."""
    if pool.organization_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    errors, needs_review = attestation_validate(pool=pool, data=data)
    if errors:
        raise ValidationFailed(errors)
    assert data.measured_tflops is not None
    assert data.measured_bw_tbps is not None
    model = pool.accelerator_model
    actor: Any = user or api_key
    with transaction.atomic():
        pool = Pool.objects.select_for_update().get(pk=pool.pk)
        attestation = Attestation.objects.create(
            pool=pool,
            organization=organization,
            measured_tflops=data.measured_tflops,
            measured_bw_tbps=data.measured_bw_tbps,
            tokens_per_s=data.tokens_per_s,
            reference_model=data.reference_model.strip(),
            reference_latency_ms=data.reference_latency_ms,
            declared_tflops=model.dense_tflops,
            declared_bw_tbps=model.memory_bw_tbps,
            tflops_ratio=units.measured_to_declared(data.measured_tflops, model.dense_tflops),
            bw_ratio=units.measured_to_declared(data.measured_bw_tbps, model.memory_bw_tbps),
            tool=data.tool.strip()[:200],
            raw_output=data.raw_output,
            status=AttestationStatus.PENDING_REVIEW if needs_review else AttestationStatus.ACCEPTED,
            retest=pool.retest_requested_at is not None,
            source=AttestationSource.API if api_key else AttestationSource.PORTAL,
            submitted_by=user,
            api_key=api_key,
            submitted_by_label=str(user) if user else f"api-key:{api_key.prefix}" if api_key else "system",
        )
        if not needs_review:
            _rate_pool(pool, attestation)
        audit_record(
            action="attestation.submitted",
            target=attestation,
            actor=actor,
            organization=organization,
            after={
                "pool": str(pool.public_id),
                "measured_tflops": str(attestation.measured_tflops),
                "measured_bw_tbps": str(attestation.measured_bw_tbps),
                "status": attestation.status,
            },
        )
    return attestation


def _rate_pool(pool: Pool, attestation: Attestation) -> None:
    pool.current_attestation = attestation
    pool.verified = True
    pool.retest_requested_at = None
    pool.save(update_fields=["current_attestation", "verified", "retest_requested_at", "updated_at"])


def attestation_review(*, attestation: Attestation, actor: User, accept: bool, note: str = "") -> Attestation:
    """Platform staff decide on an attestation flagged for review (above 1.5 x the datasheet)."""
    if not actor.is_staff:
        raise ApplicationError("forbidden", _("Only platform staff review attestations."), status_code=403)
    with transaction.atomic():
        attestation = Attestation.objects.select_for_update().get(pk=attestation.pk)
        if attestation.status != AttestationStatus.PENDING_REVIEW:
            raise ApplicationError("not_pending", _("This attestation is not waiting for review."))
        attestation.status = AttestationStatus.ACCEPTED if accept else AttestationStatus.REJECTED
        attestation.reviewed_by = actor
        attestation.reviewed_at = utcnow()
        attestation.review_note = note[:500]
        attestation.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
        if accept:
            pool = Pool.objects.select_for_update().get(pk=attestation.pool_id)
            _rate_pool(pool, attestation)
        audit_record(
            action="attestation.reviewed",
            target=attestation,
            actor=actor,
            organization=attestation.organization,
            after={"status": attestation.status, "note": note},
        )
    return attestation


# --- Market: offers, bids, matching, leases (DESIGN.md §4.3) ---------------------------------------------
#
# Every order submission and every change that frees or takes capacity runs under transaction-level advisory
# locks: the book is read from the database, the pure engine (marketplace.matching) runs, and its trades are
# written as leases with allocations, all in one transaction, so concurrent submissions from many processes see
# each other's trades. The locks are per accelerator model (MODEL_LOCK_BASE + model id, exclusive) under a
# shared hold of MARKET_LOCK: an offer locks its pool's model, a bid the models it names, so orders that could
# trade with the same capacity run one after the other and orders of other models run alongside. A bid that
# accepts any model, and the periodic jobs, take MARKET_LOCK exclusively (the whole market). Every caller takes
# MARKET_LOCK first and then the model locks in ascending order: no deadlock. The locks are not what guarantees
# the invariant: the exclusion constraint on LeaseAllocation is. If it ever fires, the whole submission rolls
# back and the order is refused.
#
# A rejected or expired lease gives its capacity back to its offer and its accelerators back to its bid, and
# both are matched again at once, in the same transaction (``_rematch_returned``), never with each other again.

MARKET_LOCK = 0x5375616E_4C69_01  # pg_advisory_xact_lock key of the market
MODEL_LOCK_BASE = 0x5375616E_4C6B_0000  # + accelerator model id: the market of one model
PRICE_QUANTUM = Decimal("0.000001")  # prices are matched exactly in micro-yuan
MAX_ORDER_HOURS = 24 * 366
MAX_ORDER_ACCELERATORS = 100_000
CONFIRM_WINDOW = timedelta(hours=2)  # a provider confirms or rejects a pending lease within this time
MAX_PRICE = Decimal("1000000")


def _market_lock(models: Iterable[int] | None = None) -> None:
    """Lock the markets of these accelerator models (ids), or with ``None`` the whole market. Call in a
    transaction; the locks last until it ends."""
    with connection.cursor() as cursor:
        if models is None:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [MARKET_LOCK])
            return
        keys = sorted({MODEL_LOCK_BASE + model for model in models})
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [MARKET_LOCK])
        for key in keys:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _bid_lock_scope(bid: Bid) -> set[int] | None:
    """The models whose markets a bid can trade in: those it names, or ``None`` (every model) when it names none."""
    return {m.pk for m in bid.accelerator_models.all()} or None


def _scope_union(*scopes: set[int] | None) -> set[int] | None:
    if any(scope is None for scope in scopes):
        return None
    return set().union(*scopes)  # type: ignore[arg-type]


def _epoch_hour(value: datetime) -> int:
    return int(value.timestamp()) // 3600


def _from_hour(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, tz=UTC)


def _whole_hour(value: datetime) -> bool:
    return value.minute == 0 and value.second == 0 and value.microsecond == 0


def _micro(value: Decimal) -> int:
    return int((value * matching.MICRO).to_integral_value(rounding=ROUND_FLOOR))


def _price_errors(value: Decimal | None, field: str) -> list[FieldError]:
    if value is None:
        return [FieldError("required", MSG_REQUIRED, field)]
    if value <= 0:
        return [FieldError("price_not_positive", _("The price must be above zero."), field)]
    if value > MAX_PRICE:
        return [FieldError("price_too_high", _("The price is too high."), field)]
    if value != value.quantize(PRICE_QUANTUM):
        return [FieldError("price_precision", _("Prices have at most 6 decimal places."), field)]
    return []


def _window_errors(start: datetime | None, end: datetime | None, start_field: str, end_field: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if start is None:
        errors.append(FieldError("required", MSG_REQUIRED, start_field))
    if end is None:
        errors.append(FieldError("required", MSG_REQUIRED, end_field))
    if start is None or end is None:
        return errors
    for value, field in ((start, start_field), (end, end_field)):
        if not _whole_hour(value):
            errors.append(FieldError("not_whole_hour", _("Use a whole hour (UTC), e.g. 08:00."), field))
    if end <= start:
        errors.append(FieldError("window_order", _("The end must be after the start."), end_field))
    elif start < floor_hour(utcnow()):
        errors.append(FieldError("window_in_past", _("The window starts in the past."), start_field))
    elif end - start > timedelta(hours=MAX_ORDER_HOURS):
        errors.append(FieldError("window_too_long", _("The window is longer than a year."), end_field))
    return errors


def pool_attributes(pool: Pool) -> matching.PoolAttributes:
    """What the engine filters and normalises on, from a pool with its site, hub, model and attestation."""
    normalised = pool.normalised()
    site = pool.site
    attestation = pool.current_attestation
    tflops = attestation.measured_tflops if attestation else pool.accelerator_model.dense_tflops
    memory = pool.accelerator_model.memory_gb
    return matching.PoolAttributes(
        pool_id=str(pool.pk),
        model=str(pool.accelerator_model_id),
        vendor=pool.accelerator_model.vendor,
        domestic=pool.accelerator_model.domestic,
        verified=pool.verified,
        hub=site.hub.code if site.hub else None,
        province=site.province,
        green_share_pct=int(site.green_share_pct),
        pue_milli=int(site.pue * 1000),
        tflops=int(tflops or 0),
        memory_gb=int(memory or 0),
        scu_micro=_micro(normalised.scu.value) if normalised.scu else 0,
        bwu_micro=_micro(normalised.bwu.value) if normalised.bwu else 0,
    )


def _engine_offer(offer: Offer, pool_attrs: matching.PoolAttributes, now_hour: int) -> matching.Offer:
    """The offer as the engine sees it from the current hour on: earlier hours cannot be sold any more."""
    start_hour = max(_epoch_hour(offer.start), now_hour)
    allocations = [
        (max(_epoch_hour(lease.start), start_hour), _epoch_hour(lease.end), lease.accelerators)
        for lease in offer.leases.all()
        if lease.status != LeaseStatus.CANCELLED and _epoch_hour(lease.end) > start_hour
    ]
    return matching.Offer(
        offer_id=str(offer.pk),
        pool=pool_attrs,
        accelerators=offer.accelerators,
        start_hour=start_hour,
        end_hour=_epoch_hour(offer.end),
        ask_micro=_micro(offer.ask),
        min_lease_hours=offer.min_lease_hours,
        arrival=int(offer.created_at.timestamp() * 1_000_000),
        allocations=allocations,
    )


def _prefetch_constraints(bid: Bid, models: list[AcceleratorModel], hubs: list[Hub]) -> None:
    """Fill the bid's accelerator-model and hub caches with what was just saved: no query to read them back."""
    cache: dict[str, Any] = {}
    for name, objects in (("accelerator_models", models), ("hubs", hubs)):
        queryset = getattr(bid, name).all()
        queryset._result_cache = list(objects)
        queryset._prefetch_done = True
        cache[name] = queryset
    bid._prefetched_objects_cache = cache  # type: ignore[attr-defined]


def _constraints(
    bid: Bid, models: Iterable[AcceleratorModel] | None = None, hubs: Iterable[Hub] | None = None
) -> matching.Constraints:
    """The bid's hard filters; ``models`` and ``hubs`` default to the bid's (saved) ones."""
    model_ids = frozenset(str(m.pk) for m in (bid.accelerator_models.all() if models is None else models))
    hub_codes = frozenset(h.code for h in (bid.hubs.all() if hubs is None else hubs))
    return matching.Constraints(
        models=model_ids or None,
        min_tflops=bid.min_tflops,
        min_memory_gb=bid.min_memory_gb,
        hubs=hub_codes or None,
        provinces=frozenset(bid.provinces) or None,
        min_green_share_pct=bid.min_green_share_pct,
        max_pue_milli=int(bid.max_pue * 1000) if bid.max_pue is not None else None,
        domestic_only=bid.domestic_only,
        verified_only=bid.verified_only,
    )


def _engine_bid(bid: Bid, now_hour: int) -> matching.Bid:
    return matching.Bid(
        bid_id=str(bid.pk),
        accelerators=bid.accelerators,
        hours=bid.hours,
        earliest_start_hour=max(_epoch_hour(bid.earliest_start), now_hour),
        latest_end_hour=_epoch_hour(bid.latest_end),
        limit_micro=_micro(bid.limit_price),
        unit=matching.PriceUnit(bid.price_unit),
        constraints=_constraints(bid),
        split_allowed=bid.split_allowed,
        arrival=int(bid.created_at.timestamp() * 1_000_000),
        filled=bid.filled_accelerators,
        fixed_start_hour=_epoch_hour(bid.fixed_start) if bid.fixed_start else None,
    )


def _tradable_offers(now: datetime) -> QuerySet[Offer]:
    return (
        Offer.objects.filter(
            status=OrderStatus.OPEN,
            end__gt=floor_hour(now),
            pool__status=PoolStatus.LISTED,
            pool__site__status=SiteStatus.ACTIVE,
        )
        .select_related("pool__site__hub", "pool__accelerator_model", "pool__current_attestation")
        .defer("pool__current_attestation__raw_output", "pool__accelerator_model__source_url")
    )


def _tradable_bids(now: datetime) -> QuerySet[Bid]:
    return Bid.objects.filter(status=OrderStatus.OPEN, latest_end__gt=floor_hour(now)).prefetch_related(
        "accelerator_models", "hubs"
    )


def _assign_indexes(pool: Pool, start: datetime, end: datetime, count: int) -> list[int]:
    """The lowest accelerator indexes of the pool free over the whole of [start, end) (first fit)."""
    busy = set(
        LeaseAllocation.objects.filter(pool=pool, period__overlap=(start, end)).values_list(
            "accelerator_index", flat=True
        )
    )
    free = [i for i in range(pool.accelerator_count) if i not in busy][:count]
    if len(free) < count:
        # Offered capacity never exceeds the pool, but fixed indexes can fragment: refuse rather than move a lease.
        raise ApplicationError(
            "capacity_conflict", _("The capacity was taken in the meantime: submit the order again."), status_code=409
        )
    return free


def _lease_event(lease: Lease, from_status: str, actor: Any, note: str = "") -> None:
    LeaseEvent.objects.create(
        lease=lease, from_status=from_status, to_status=lease.status, actor_label=actor_label_for(actor), note=note
    )


def _persist_trades(
    trades: list[matching.Trade], offers: dict[str, Offer], bids: dict[str, Bid], actor: Any, now: datetime
) -> list[Lease]:
    leases: list[Lease] = []
    for trade in trades:
        offer = offers[trade.offer_id]
        bid = bids[trade.bid_id]
        start, end = _from_hour(trade.start_hour), _from_hour(trade.end_hour)
        lease = Lease.objects.create(
            bid=bid,
            offer=offer,
            pool=offer.pool,
            buyer_id=bid.organization_id,
            provider_id=offer.organization_id,
            accelerators=trade.accelerators,
            start=start,
            end=end,
            price=Decimal(trade.price_micro) / matching.MICRO,
            currency=offer.currency,
            confirm_by=now + CONFIRM_WINDOW,
        )
        LeaseAllocation.objects.bulk_create(
            LeaseAllocation(lease=lease, pool=offer.pool, accelerator_index=index, period=(start, end))
            for index in _assign_indexes(offer.pool, start, end, trade.accelerators)
        )
        _lease_event(lease, "", actor, note=f"matched ({trade.aggressor} took liquidity)")
        audit_record(
            action="lease.created",
            target=lease,
            actor=actor,
            organization=offer.organization,
            after={
                "bid": str(bid.public_id),
                "offer": str(offer.public_id),
                "accelerators": lease.accelerators,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "price": str(lease.price),
                "currency": lease.currency,
            },
        )
        outbox_enqueue("marketplace.tasks.lease_notify", kwargs={"lease_id": str(lease.public_id), "event": "created"})
        leases.append(lease)
    return leases


def _save_engine_state(
    engine_offers: dict[str, matching.Offer],
    engine_bids: dict[str, matching.Bid],
    offers: dict[str, Offer],
    bids: dict[str, Bid],
    touched: set[tuple[str, str]],
) -> None:
    for bid_id, offer_id in touched:
        offer, engine_offer = offers[offer_id], engine_offers[offer_id]
        if engine_offer.sold_out() and offer.status == OrderStatus.OPEN:
            offer.status = OrderStatus.FILLED
            offer.save(update_fields=["status", "updated_at"])
        bid, engine_bid = bids[bid_id], engine_bids[bid_id]
        bid.filled_accelerators = engine_bid.filled
        bid.fixed_start = _from_hour(engine_bid.fixed_start_hour) if engine_bid.fixed_start_hour is not None else None
        if engine_bid.remaining == 0:
            bid.status = OrderStatus.FILLED
        bid.save(update_fields=["filled_accelerators", "fixed_start", "status", "updated_at"])


# Slack of the SQL pre-filter on prices in SCU or BWU (the engine decides exactly on integer micro-units; the
# database's figure may differ from units.normalise in the last digits): the filter only drops offers that are
# clearly too dear, never one the engine would take.
_PREFILTER_SLACK = Decimal("1.01")
_PREFILTER_EPSILON = Decimal("0.000001")


def _pool_constraints_q(constraints: matching.Constraints, *, prefix: str = "") -> Q:
    """A bid's exact hard filters on a pool (models, hubs, provinces, domestic, verified, green share, PUE) as
    SQL; ``prefix`` reaches the pool from another model (``"pool__"`` from an offer)."""
    conditions: dict[str, Any] = {}
    if constraints.models:
        conditions["accelerator_model_id__in"] = sorted(int(m) for m in constraints.models)
    if constraints.hubs:
        conditions["site__hub__code__in"] = sorted(constraints.hubs)
    if constraints.provinces:
        conditions["site__province__in"] = sorted(constraints.provinces)
    if constraints.domestic_only:
        conditions["accelerator_model__domestic"] = True
    if constraints.verified_only:
        conditions["verified"] = True
    if constraints.min_green_share_pct:
        conditions["site__green_share_pct__gte"] = constraints.min_green_share_pct
    if constraints.max_pue_milli is not None:
        conditions["site__pue__lte"] = Decimal(constraints.max_pue_milli) / 1000
    return Q(**{prefix + lookup: value for lookup, value in conditions.items()})


def _offers_a_bid_could_take(bid: Bid, constraints: matching.Constraints, now: datetime) -> QuerySet[Offer]:
    """Resting offers that could cross ``bid``: open, not over, overlapping its window, and in SQL already the
    hard filters and the price (loosely, see ``_PREFILTER_SLACK``) so that few rows reach the engine, which
    decides exactly. With their live leases prefetched (for the free capacity)."""
    qs = _tradable_offers(now).filter(
        _pool_constraints_q(constraints, prefix="pool__"), start__lt=bid.latest_end, end__gt=bid.earliest_start
    )
    limit = bid.limit_price + _PREFILTER_EPSILON
    if bid.price_unit == PriceUnit.ACCELERATOR_HOUR:
        qs = qs.filter(ask__lt=limit)
    else:
        figure: Any
        if bid.price_unit == PriceUnit.SCU_HOUR:  # SCU per accelerator-hour = dense TFLOPS / 1000
            figure = Coalesce(
                NullIf(F("pool__current_attestation__measured_tflops"), Value(0)),
                Greatest(F("pool__accelerator_model__bf16_tflops"), F("pool__accelerator_model__fp16_tflops")),
            ) / Value(Decimal(1000))
        else:  # BWU per accelerator-hour = memory bandwidth in TB/s
            figure = Coalesce(
                NullIf(F("pool__current_attestation__measured_bw_tbps"), Value(0)),
                F("pool__accelerator_model__memory_bw_tbps"),
            )
        qs = qs.alias(
            ceiling=ExpressionWrapper(
                figure * Value(limit * _PREFILTER_SLACK) + Value(_PREFILTER_EPSILON),
                output_field=DecimalField(max_digits=40, decimal_places=12),
            )
        ).filter(ask__lt=F("ceiling"))
    live = Lease.objects.exclude(status=LeaseStatus.CANCELLED).filter(end__gt=floor_hour(now))
    return qs.prefetch_related(
        Prefetch("leases", queryset=live.only("offer_id", "start", "end", "accelerators", "status"))
    )


FIRST_PASS_OFFERS = 32


def _cheapest_first(bid: Bid, candidates: QuerySet[Offer]) -> tuple[list[Offer], bool] | None:
    """For a bid in ¥/accelerator-hour: the cheapest candidate offers strictly below the first one left out (in
    micro-yuan, the engine's key), and whether those are all the candidates. The engine takes offers in exactly
    that price order (then arrival order), so if the bid fills among them, the whole book gives the same trades
    and most of it need not be read. ``None`` in the other units (their order in SQL is not the engine's)."""
    if bid.price_unit != PriceUnit.ACCELERATOR_HOUR:
        return None
    cheapest = list(candidates.order_by("ask", "created_at", "id")[: FIRST_PASS_OFFERS + 1])
    if len(cheapest) <= FIRST_PASS_OFFERS:
        return cheapest, True
    cutoff = _micro(cheapest[-1].ask)
    return [offer for offer in cheapest if _micro(offer.ask) < cutoff], False


def _match(
    *,
    incoming: Offer | Bid,
    actor: Any,
    now: datetime,
    exclude: Iterable[int] = (),
) -> list[Lease]:
    """Run the engine for one incoming order against the resting side. Call under the locks of its models.

    ``exclude``: ids of resting orders this one must not trade with (they turned it down before). Leases start at
    the current hour at the earliest (it may have begun a few minutes ago)."""
    now_hour = _epoch_hour(now)
    excluded = set(exclude)
    offers: dict[str, Offer] = {}
    bids: dict[str, Bid] = {}
    engine_offers: dict[str, matching.Offer] = {}
    engine_bids: dict[str, matching.Bid] = {}
    book = matching.OrderBook()
    if isinstance(incoming, Bid):
        candidates = _offers_a_bid_could_take(incoming, _engine_bid(incoming, now_hour).constraints, now)
        first = _cheapest_first(incoming, candidates)
        passes: list[list[Offer] | None] = [None] if first is None else [first[0]] if first[1] else [first[0], None]
        for rows in passes:  # a first pass on the cheapest offers; the whole book only if that did not fill it
            book, offers, engine_offers = matching.OrderBook(), {}, {}
            engine_bid = _engine_bid(incoming, now_hour)
            for offer in sorted(
                candidates.order_by() if rows is None else rows, key=lambda o: (o.created_at, o.pk)
            ):  # time priority: the book is built in arrival order
                if offer.pk in excluded:
                    continue
                engine_offer = _engine_offer(offer, pool_attributes(offer.pool), now_hour)
                offers[engine_offer.offer_id], engine_offers[engine_offer.offer_id] = offer, engine_offer
                book.add_offer(engine_offer)  # no bids in the book yet: it only rests
            bids[engine_bid.bid_id], engine_bids[engine_bid.bid_id] = incoming, engine_bid
            trades = book.add_bid(engine_bid)
            if engine_bid.remaining == 0:
                break
    else:
        # Resting bids that could cross: open, overlapping the offer's window, accepting its pool's model.
        model_id = incoming.pool.accelerator_model_id
        resting_bids = (
            _tradable_bids(now)
            .filter(earliest_start__lt=incoming.end, latest_end__gt=incoming.start)
            .filter(Q(accelerator_models=None) | Q(accelerator_models=model_id))
            .distinct()
            .order_by("created_at", "id")
        )
        for bid in resting_bids:
            if bid.pk in excluded:
                continue
            engine_bid = _engine_bid(bid, now_hour)
            bids[engine_bid.bid_id], engine_bids[engine_bid.bid_id] = bid, engine_bid
            book.add_bid(engine_bid)  # no offers in the book yet: it only rests
        engine_offer = _engine_offer(incoming, pool_attributes(incoming.pool), now_hour)
        offers[engine_offer.offer_id], engine_offers[engine_offer.offer_id] = incoming, engine_offer
        trades = book.add_offer(engine_offer)
    if not trades:
        return []
    leases = _persist_trades(trades, offers, bids, actor, now)
    _save_engine_state(engine_offers, engine_bids, offers, bids, {(t.bid_id, t.offer_id) for t in trades})
    return leases


def _run_refusing_double_sales(work: Callable[[], _T], *, scope: set[int] | None) -> _T:
    """``work`` in a transaction under the locks of ``scope`` (``_market_lock``); the exclusion constraint turns
    into a refusal."""
    try:
        with transaction.atomic():
            _market_lock(scope)
            return work()
    except IntegrityError as error:
        if "allocation_no_double_sale" not in str(error):
            raise
        raise ApplicationError(
            "capacity_conflict", _("The capacity was taken in the meantime: submit the order again."), status_code=409
        ) from None


# --- Offers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferInput:
    pool_id: uuid.UUID | str | None
    accelerators: int | None
    start: datetime | None
    end: datetime | None
    ask: Decimal | None
    currency: str = "CNY"
    min_lease_hours: int = 1


def _peak_offered(offers: Iterable[Offer], start: datetime, end: datetime) -> int:
    """The most accelerators these offers put on sale at once inside [start, end)."""
    points: list[tuple[datetime, int]] = []
    for offer in offers:
        points.append((max(offer.start, start), offer.accelerators))
        points.append((min(offer.end, end), -offer.accelerators))
    used = peak = 0
    for _at, delta in sorted(points, key=lambda p: (p[0], p[1])):  # ends before starts: half-open
        used += delta
        peak = max(peak, used)
    return peak


def _offer_check(organization: Organization, data: OfferInput) -> tuple[list[FieldError], Pool | None]:
    errors: list[FieldError] = []
    pool = None
    pool_uuid = _parse_uuid(data.pool_id) if data.pool_id else None
    if pool_uuid is not None:
        pool = Pool.objects.select_related("site").filter(organization=organization, public_id=pool_uuid).first()
    if pool is None:
        # Another provider's pool is as unknown as a made-up id.
        errors.append(FieldError("unknown_pool", _("Unknown pool."), "pool"))
    elif pool.status != PoolStatus.LISTED or pool.site.status != SiteStatus.ACTIVE:
        errors.append(FieldError("pool_not_listed", _("Only a listed pool of an active site can be offered."), "pool"))
    if data.accelerators is None or data.accelerators <= 0:
        errors.append(FieldError("accelerators_not_positive", _("Offer at least one accelerator."), "accelerators"))
    elif pool is not None and data.accelerators > pool.accelerator_count:
        errors.append(
            FieldError(
                "beyond_pool_size",
                _("The pool has only %(count)s accelerators.") % {"count": pool.accelerator_count},
                "accelerators",
            )
        )
    errors += _window_errors(data.start, data.end, "start", "end")
    errors += _price_errors(data.ask, "ask")
    if data.currency not in ("CNY", "USD"):
        errors.append(FieldError("unknown_currency", _("Use CNY or USD."), "currency"))
    if data.min_lease_hours > MAX_ORDER_HOURS:
        errors.append(
            FieldError("min_lease_too_long", _("The minimum lease is longer than the window."), "min_lease_hours")
        )
    elif data.min_lease_hours <= 0:
        errors.append(
            FieldError("min_lease_not_positive", _("The minimum lease is at least one hour."), "min_lease_hours")
        )
    elif (
        data.start
        and data.end
        and data.end > data.start
        and timedelta(hours=data.min_lease_hours) > data.end - data.start
    ):
        errors.append(
            FieldError("min_lease_too_long", _("The minimum lease is longer than the window."), "min_lease_hours")
        )
    return errors, pool


def _offer_overlap_error(pool: Pool, data: OfferInput) -> FieldError | None:
    assert data.start is not None
    assert data.end is not None
    assert data.accelerators is not None
    overlapping = Offer.objects.filter(
        pool=pool, status__in=[OrderStatus.OPEN, OrderStatus.FILLED], start__lt=data.end, end__gt=data.start
    )
    if _peak_offered(overlapping, data.start, data.end) + data.accelerators > pool.accelerator_count:
        return FieldError(
            "overlaps_offered_capacity",
            _("With your other offers of this pool in this window, this offers more accelerators than the pool has."),
            "accelerators",
        )
    return None


def offer_create(*, organization: Organization, actor: Any, data: OfferInput, now: datetime | None = None) -> Offer:
    """Post an offer and match it against resting bids at once (its trades are pending leases)."""
    _require_provider(organization)
    errors, pool = _offer_check(organization, data)
    if errors:
        raise ValidationFailed(errors)
    assert pool is not None
    now = now or utcnow()

    def work() -> Offer:
        assert pool is not None
        assert data.start
        assert data.end
        assert data.ask
        assert data.accelerators
        overlap = _offer_overlap_error(pool, data)  # under the lock: two racing offers see each other
        if overlap:
            raise ValidationFailed([overlap])
        offer = Offer.objects.create(
            organization=organization,
            pool=pool,
            accelerators=data.accelerators,
            start=data.start,
            end=data.end,
            ask=data.ask,
            currency=data.currency,
            min_lease_hours=data.min_lease_hours,
        )
        audit_record(
            action="offer.created",
            target=offer,
            actor=actor,
            organization=organization,
            after=_snapshot(offer, ["pool", "accelerators", "start", "end", "ask", "currency", "min_lease_hours"]),
        )
        _match(incoming=offer, actor=actor, now=now)
        offer.refresh_from_db()
        return offer

    return _run_refusing_double_sales(work, scope={pool.accelerator_model_id})


def offer_cancel(*, organization: Organization, actor: Any, offer: Offer) -> Offer:
    """Withdraw what is unsold of an open offer; leases already made stand."""
    return _order_cancel(organization=organization, actor=actor, order=offer, action="offer.cancelled")


# --- Bids -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BidInput:
    accelerators: int | None
    hours: int | None
    earliest_start: datetime | None
    latest_end: datetime | None
    limit_price: Decimal | None
    price_unit: str = PriceUnit.ACCELERATOR_HOUR
    currency: str = "CNY"
    workload: str = Workload.TRAINING
    accelerator_models: tuple[str, ...] = ()
    min_tflops: int = 0
    min_memory_gb: int = 0
    hubs: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()
    min_green_share_pct: int = 0
    max_pue: Decimal | None = None
    domestic_only: bool = False
    verified_only: bool = False
    split_allowed: bool = False
    # Inference only: a latency tier (marketplace.latency) relative to the buyer's province (default: the
    # province of the buyer's company registration). It becomes a set of provinces.
    latency_tier: str = latency.Tier.ANY
    buyer_province: str = ""


def _placement_provinces(organization: Organization, data: BidInput) -> tuple[list[FieldError], list[str]]:
    """The bid's provinces with the latency tier applied (inference only): the named ones inside the tier."""
    if data.latency_tier not in {tier.value for tier in latency.Tier}:
        return [FieldError("unknown_latency_tier", _("Unknown latency tier."), "latency_tier")], []
    if data.workload != Workload.INFERENCE or data.latency_tier == latency.Tier.ANY:
        return [], sorted(set(data.provinces))
    profile = getattr(organization, "company_profile", None)
    province = data.buyer_province or (profile.registered_province if profile else "")
    if latency.region_of(province) is None:
        return [
            FieldError("buyer_province_required", _("Say where you are to use a latency tier."), "buyer_province")
        ], []
    within = latency.provinces_within(province, data.latency_tier) or frozenset()
    provinces = sorted(within & set(data.provinces)) if data.provinces else sorted(within)
    if not provinces:
        return [
            FieldError("unsatisfiable", _("None of the chosen provinces is within this latency tier."), "latency_tier")
        ], []
    return [], provinces


def _bid_check(data: BidInput) -> tuple[list[FieldError], list[AcceleratorModel], list[Hub]]:
    errors: list[FieldError] = []
    if data.accelerators is None or data.accelerators <= 0:
        errors.append(FieldError("accelerators_not_positive", _("Ask for at least one accelerator."), "accelerators"))
    elif data.accelerators > MAX_ORDER_ACCELERATORS:
        errors.append(
            FieldError("too_many_accelerators", _("That is more accelerators than the market has."), "accelerators")
        )
    if data.hours is None or data.hours <= 0:
        errors.append(FieldError("hours_not_positive", _("Ask for at least one hour."), "hours"))
    elif data.hours > MAX_ORDER_HOURS:
        errors.append(FieldError("window_too_long", _("The window is longer than a year."), "hours"))
    errors += _window_errors(data.earliest_start, data.latest_end, "earliest_start", "latest_end")
    if (
        data.hours
        and 0 < data.hours <= MAX_ORDER_HOURS
        and data.earliest_start
        and data.latest_end
        and data.latest_end > data.earliest_start
        and timedelta(hours=data.hours) > data.latest_end - data.earliest_start
    ):
        errors.append(FieldError("window_too_short", _("The window is shorter than the hours asked for."), "hours"))
    errors += _price_errors(data.limit_price, "limit_price")
    if data.price_unit not in PriceUnit.values:
        errors.append(FieldError("unknown_unit", _("Unknown price unit."), "price_unit"))
    if data.currency not in ("CNY", "USD"):
        errors.append(FieldError("unknown_currency", _("Use CNY or USD."), "currency"))
    if data.workload not in Workload.values:
        errors.append(FieldError("unknown_workload", _("Choose training or inference."), "workload"))
    model_ids = [_parse_uuid(m) for m in data.accelerator_models]
    models = list(AcceleratorModel.objects.filter(public_id__in=[m for m in model_ids if m]))
    if len(models) != len(set(data.accelerator_models)) or None in model_ids:
        errors.append(FieldError("unknown_model", _("Unknown accelerator model."), "accelerator_models"))
    hubs = list(Hub.objects.filter(code__in=data.hubs))
    if len(hubs) != len(set(data.hubs)):
        errors.append(FieldError("unknown_hub", _("Unknown hub."), "hubs"))
    if any(p not in PROVINCE_EN_BY_CODE for p in data.provinces):
        errors.append(FieldError("invalid_province", _("Choose a province."), "provinces"))
    if not 0 <= data.min_green_share_pct <= 100:
        errors.append(FieldError("green_share_range", _("A share is between 0 and 100%."), "min_green_share_pct"))
    if data.max_pue is not None and not PUE_MIN <= data.max_pue <= PUE_MAX:
        errors.append(FieldError("pue_range", _("PUE is between 1.0 and 3.0."), "max_pue"))
    if data.min_tflops < 0 or data.min_memory_gb < 0:
        errors.append(FieldError("negative", _("Use zero or more."), "min_tflops"))
    return errors, models, hubs


def _satisfiable_error(bid: Bid, constraints: matching.Constraints) -> FieldError | None:
    """Refuse constraints that no pool on the market could ever satisfy, rather than leave the bid resting."""
    pools = (
        Pool.objects.filter(status=PoolStatus.LISTED, site__status=SiteStatus.ACTIVE)
        .select_related("site__hub", "accelerator_model", "current_attestation")
        .defer("current_attestation__raw_output", "accelerator_model__source_url")
    )
    # The same hard filters in SQL first (exact, as in _offers_a_bid_could_take): fewer pools to normalise.
    pools = pools.filter(_pool_constraints_q(constraints))
    unit = matching.PriceUnit(bid.price_unit)
    fitting = [
        pool for pool in pools if constraints.accepts(attrs := pool_attributes(pool)) and attrs.unit_micro(unit) > 0
    ]
    if not fitting:
        return FieldError(
            "unsatisfiable",
            _("No pool on the market meets these constraints (and price unit): relax them."),
        )
    if not bid.split_allowed and max(p.accelerator_count for p in fitting) < bid.accelerators:
        return FieldError(
            "beyond_pool_size",
            _("No pool that meets these constraints has this many accelerators: allow splitting or ask for fewer."),
            "accelerators",
        )
    return None


def bid_create(*, organization: Organization, actor: Any, data: BidInput, now: datetime | None = None) -> Bid:
    """Place a bid and match it against resting offers at once; what is not filled rests until it expires."""
    if organization.kind != OrganizationKind.BUYER:
        raise ApplicationError("not_a_buyer", _("Only buyers place bids."), status_code=403)
    errors, models, hubs = _bid_check(data)
    tier_errors, provinces = _placement_provinces(organization, data)
    if errors or tier_errors:
        raise ValidationFailed(errors + tier_errors)
    now = now or utcnow()
    assert data.accelerators
    assert data.hours
    assert data.earliest_start
    assert data.latest_end
    assert data.limit_price
    bid = Bid(
        organization=organization,
        accelerators=data.accelerators,
        hours=data.hours,
        earliest_start=data.earliest_start,
        latest_end=data.latest_end,
        limit_price=data.limit_price,
        price_unit=data.price_unit,
        currency=data.currency,
        workload=data.workload,
        min_tflops=data.min_tflops,
        min_memory_gb=data.min_memory_gb,
        provinces=provinces,
        min_green_share_pct=data.min_green_share_pct,
        max_pue=data.max_pue,
        domestic_only=data.domestic_only,
        verified_only=data.verified_only,
        split_allowed=data.split_allowed,
    )
    # Before taking any lock: it depends only on the bid and the pools, not on the book.
    unsatisfiable = _satisfiable_error(bid, _constraints(bid, models, hubs))
    if unsatisfiable:
        raise ValidationFailed([unsatisfiable])

    def work() -> Bid:
        bid.save(force_insert=True)
        _prefetch_constraints(bid, models, hubs)  # the engine and the API read them back without a query
        if models:
            Bid.accelerator_models.through.objects.bulk_create(
                Bid.accelerator_models.through(bid_id=bid.pk, acceleratormodel_id=m.pk) for m in models
            )
        if hubs:
            Bid.hubs.through.objects.bulk_create(Bid.hubs.through(bid_id=bid.pk, hub_id=h.pk) for h in hubs)
        audit_record(
            action="bid.created",
            target=bid,
            actor=actor,
            organization=organization,
            after=_snapshot(
                bid, ["accelerators", "hours", "earliest_start", "latest_end", "limit_price", "price_unit"]
            ),
        )
        _match(incoming=bid, actor=actor, now=now)  # updates ``bid`` (status, filled) when it trades
        return bid

    return _run_refusing_double_sales(work, scope={m.pk for m in models} or None)


def bid_cancel(*, organization: Organization, actor: Any, bid: Bid) -> Bid:
    """Withdraw the unfilled part of an open bid; leases already made stand."""
    return _order_cancel(organization=organization, actor=actor, order=bid, action="bid.cancelled")


def _order_cancel(*, organization: Organization, actor: Any, order: OrderT, action: str) -> OrderT:
    """Cancel an open offer or bid of the organisation, under its market's lock and the order's row lock."""
    if order.organization_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    scope = _bid_lock_scope(order) if isinstance(order, Bid) else {_offer_model_id(order)}
    with transaction.atomic():
        _market_lock(scope)
        order = type(order).objects.select_for_update().get(pk=order.pk)
        if order.status != OrderStatus.OPEN:
            raise ApplicationError("not_open", _("Only an open order can be cancelled."), status_code=409)
        order.status = OrderStatus.CANCELLED
        order.save(update_fields=["status", "updated_at"])
        audit_record(action=action, target=order, actor=actor, organization=organization)
    return order


# --- Leases ---------------------------------------------------------------------------------------------


def _offer_model_id(offer: Offer) -> int:
    return Pool.objects.filter(pk=offer.pool_id).values_list("accelerator_model_id", flat=True).get()


def _lease_lock_scope(lease: Lease) -> set[int] | None:
    """What a lease's release and re-matching touch: its pool's model and every model its bid may take."""
    pool_model = Pool.objects.filter(pk=lease.pool_id).values_list("accelerator_model_id", flat=True).get()
    bid_models = set(
        Bid.accelerator_models.through.objects.filter(bid_id=lease.bid_id).values_list("acceleratormodel_id", flat=True)
    )
    return _scope_union({pool_model}, bid_models or None)


def _rematch_returned(*, bid_ids: Iterable[int], offer_ids: Iterable[int], actor: Any, now: datetime) -> list[Lease]:
    """Match returned orders at once, after a rejection or an expired confirmation. Call under locks covering their
    models (``_lease_lock_scope``), after ``_release``.

    Each returned bid re-enters as an incoming order (it takes the best resting offers at their price), then each
    returned offer serves the resting bids in price-time priority. An order is never matched again with one that
    already turned it down or let it expire (a cancelled lease between them)."""
    leases: list[Lease] = []
    refused = Lease.objects.filter(status=LeaseStatus.CANCELLED)
    for bid in _tradable_bids(now).filter(pk__in=sorted(set(bid_ids))).order_by("created_at", "id"):
        if bid.filled_accelerators < bid.accelerators:
            turned_down = refused.filter(bid=bid).values_list("offer_id", flat=True)
            leases += _match(incoming=bid, actor=actor, now=now, exclude=turned_down)
    live = Lease.objects.exclude(status=LeaseStatus.CANCELLED).filter(end__gt=floor_hour(now))
    offers = (
        _tradable_offers(now)
        .filter(pk__in=sorted(set(offer_ids)))
        .prefetch_related(Prefetch("leases", queryset=live))
        .order_by("created_at", "id")
    )
    for offer in offers:
        turned_down = refused.filter(offer=offer).values_list("bid_id", flat=True)
        leases += _match(incoming=offer, actor=actor, now=now, exclude=turned_down)
    return leases


def _release(lease: Lease) -> None:
    """Give a lease's capacity back to its offer and its accelerators back to its bid (``_rematch_returned`` then
    matches them again)."""
    lease.allocations.all().delete()
    offer = Offer.objects.select_for_update().get(pk=lease.offer_id)
    if offer.status == OrderStatus.FILLED:
        offer.status = OrderStatus.OPEN
        offer.save(update_fields=["status", "updated_at"])
    bid = Bid.objects.select_for_update().get(pk=lease.bid_id)
    bid.filled_accelerators -= lease.accelerators
    if bid.filled_accelerators == 0:
        bid.fixed_start = None
    if bid.status == OrderStatus.FILLED:
        bid.status = OrderStatus.OPEN
    bid.save(update_fields=["filled_accelerators", "fixed_start", "status", "updated_at"])


def lease_respond(
    *, organization: Organization, actor: Any, lease: Lease, confirm: bool, note: str = "", now: datetime | None = None
) -> Lease:
    """The provider confirms (active) or rejects (cancelled, capacity returned) a pending lease before its deadline."""
    if lease.provider_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    now = now or utcnow()
    scope = _lease_lock_scope(lease)
    with transaction.atomic():
        _market_lock(scope)
        lease = Lease.objects.select_for_update().get(pk=lease.pk)
        if lease.status != LeaseStatus.PENDING:
            raise ApplicationError("not_pending", _("This lease is no longer waiting for you."), status_code=409)
        if now >= lease.confirm_by:
            raise ApplicationError(
                "confirmation_expired", _("The deadline to confirm this lease has passed."), status_code=409
            )
        previous = lease.status
        lease.status = LeaseStatus.ACTIVE if confirm else LeaseStatus.CANCELLED
        lease.save(update_fields=["status", "updated_at"])
        if not confirm:
            _release(lease)
        _lease_event(lease, previous, actor, note=note[:500])
        audit_record(
            action="lease.confirmed" if confirm else "lease.rejected",
            target=lease,
            actor=actor,
            organization=organization,
            before={"status": previous},
            after={"status": lease.status},
        )
        outbox_enqueue(
            "marketplace.tasks.lease_notify", kwargs={"lease_id": str(lease.public_id), "event": lease.status}
        )
        if not confirm:
            _rematch_returned(bid_ids=[lease.bid_id], offer_ids=[lease.offer_id], actor=actor, now=now)
    return lease


def lease_set_disputed(
    *, lease: Lease, disputed: bool, restore_status: str = "", actor: Any = None, note: str = ""
) -> Lease:
    """Metering disputes: mark a lease ``disputed`` while a dispute is open, then give it back
    ``restore_status`` (its status before). Audited, with a lease event; a no-op when already right."""
    with transaction.atomic():
        lease = Lease.objects.select_for_update().get(pk=lease.pk)
        target = LeaseStatus.DISPUTED if disputed else (restore_status or LeaseStatus.ACTIVE)
        if lease.status == target or lease.status == LeaseStatus.CANCELLED:
            return lease
        previous = lease.status
        lease.status = target
        lease.save(update_fields=["status", "updated_at"])
        _lease_event(lease, previous, actor, note=note[:500])
        audit_record(
            action="lease.disputed" if disputed else "lease.dispute_closed",
            target=lease,
            actor=actor,
            organization=lease.provider,
            before={"status": previous},
            after={"status": lease.status},
        )
    return lease


def lease_expire_unconfirmed(*, now: datetime | None = None) -> int:
    """Cancel pending leases past their confirmation deadline, return their capacity and bids and match those
    again at once. Idempotent."""
    now = now or utcnow()
    expired = 0
    with transaction.atomic():
        _market_lock()
        leases = list(Lease.objects.select_for_update().filter(status=LeaseStatus.PENDING, confirm_by__lte=now))
        for lease in leases:
            lease.status = LeaseStatus.CANCELLED
            lease.save(update_fields=["status", "updated_at"])
            _release(lease)
            _lease_event(lease, LeaseStatus.PENDING, None, note="confirmation deadline passed")
            audit_record(
                action="lease.expired",
                target=lease,
                organization=lease.provider,
                before={"status": LeaseStatus.PENDING},
                after={"status": lease.status},
            )
            expired += 1
        if leases:
            _rematch_returned(
                bid_ids=[lease.bid_id for lease in leases],
                offer_ids=[lease.offer_id for lease in leases],
                actor=None,
                now=now,
            )
    return expired


def order_expire_due(*, now: datetime | None = None) -> int:
    """Mark open offers and bids whose window has ended as expired (they are already out of the book). Idempotent."""
    now = now or utcnow()
    with transaction.atomic():
        _market_lock()
        offers = Offer.objects.filter(status=OrderStatus.OPEN, end__lte=now).update(
            status=OrderStatus.EXPIRED, updated_at=now
        )
        bids = Bid.objects.filter(status=OrderStatus.OPEN, latest_end__lte=now).update(
            status=OrderStatus.EXPIRED, updated_at=now
        )
    return offers + bids


def site_green_share_record(*, site: Site, share_pct: Decimal) -> Site:
    """Record a site's green-power share as the green app computed it from certificate allocations (last 12
    months); the matching engine's minimum-green-share constraint reads it. Idempotent; audited when it changes."""
    share = min(Decimal(100), max(Decimal(0), share_pct)).quantize(Decimal("0.01"))
    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        if locked.green_share_pct == share:
            return locked
        before = {"green_share_pct": str(locked.green_share_pct)}
        locked.green_share_pct = share
        locked.save(update_fields=["green_share_pct", "updated_at"])
        audit_record(
            action="site.green_share_record",
            target=locked,
            actor_label="green allocation job",
            organization=locked.organization,
            before=before,
            after={"green_share_pct": str(share)},
        )
    return locked


# --- Tokens: endpoints, token bids, token contracts (DESIGN.md §4.3, "Tokens") ---------------------------
#
# The token market of one served model runs under its own advisory lock (TOKEN_LOCK_BASE + model id): the book
# is read, the pure engine (marketplace.token_matching) runs and its trades are written in one transaction. The
# lock is not what guarantees the invariant: an endpoint's committed monthly volume is raised only by a
# conditional UPDATE (``committed + volume <= capacity``) and the CHECK constraint token_endpoint_within_capacity
# refuses anything else; if either refuses, the whole submission rolls back and the order is refused (409).
#
# Committed volume: the sum of the monthly volumes of the endpoint's pending and active contracts, whatever
# their months (a conservative reading: a contract for next year holds its volume from now on). It is given back
# when a contract is rejected, expires unconfirmed or completes.

TOKEN_LOCK_BASE = 0x5375616E_4C6A_0000
TOKEN_CONFIRM_WINDOW = timedelta(hours=24)
MAX_TOKEN_THROUGHPUT = 100_000_000  # tokens/s of one endpoint
MAX_MONTHLY_TOKENS = 10**15
MAX_TOKEN_MONTHS = 36
MAX_TOKEN_WEIGHT = token_matching.MAX_WEIGHT
TOKEN_BID_DEFAULT_LIFETIME = timedelta(days=7)
TOKEN_CURRENCY = "CNY"  # noqa: S105 (a currency code)  # nosec B105


def _token_lock(served_model_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [TOKEN_LOCK_BASE + served_model_id])


def _add_months(value: date, months: int) -> date:
    index = value.year * 12 + value.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _month_instant(value: date) -> datetime:
    return datetime(value.year, value.month, 1, tzinfo=UTC)


def _served_model_error(value: Any) -> tuple[FieldError | None, ServedModel | None]:
    if not value:
        return FieldError("required", MSG_REQUIRED, "served_model"), None
    model_uuid = _parse_uuid(value)
    model = (
        ServedModel.objects.filter(public_id=model_uuid).first()
        if model_uuid
        else ServedModel.objects.filter(name=str(value).strip()).first()
    )
    if model is None:
        return FieldError("unknown_model", _("Unknown model: choose one from the list."), "served_model"), None
    return None, model


def _currency_errors(currency: str) -> list[FieldError]:
    if currency != TOKEN_CURRENCY:
        return [FieldError("unknown_currency", _("Token prices are in CNY."), "currency")]
    return []


@dataclass(frozen=True)
class TokenEndpointInput:
    pool_id: uuid.UUID | str | None
    served_model: uuid.UUID | str | None  # public id or exact name
    price_input: Decimal | None
    price_output: Decimal | None
    throughput_tokens_per_s: int | None
    currency: str = TOKEN_CURRENCY


def token_endpoint_validate(
    *, organization: Organization, data: TokenEndpointInput
) -> tuple[list[FieldError], Pool | None, ServedModel | None]:
    """The errors ``token_endpoint_create`` would raise, without writing anything, with the resolved objects."""
    errors: list[FieldError] = []
    pool = None
    pool_uuid = _parse_uuid(data.pool_id) if data.pool_id else None
    if pool_uuid is not None:
        pool = Pool.objects.select_related("site").filter(organization=organization, public_id=pool_uuid).first()
    if pool is None:
        errors.append(FieldError("unknown_pool", _("Unknown pool."), "pool"))
    elif pool.status != PoolStatus.LISTED or pool.site.status != SiteStatus.ACTIVE:
        errors.append(FieldError("pool_not_listed", _("Only a listed pool of an active site can serve."), "pool"))
    model_error, model = _served_model_error(data.served_model)
    if model_error:
        errors.append(model_error)
    errors += _price_errors(data.price_input, "price_input")
    errors += _price_errors(data.price_output, "price_output")
    if data.throughput_tokens_per_s is None:
        errors.append(FieldError("required", MSG_REQUIRED, "throughput_tokens_per_s"))
    elif data.throughput_tokens_per_s <= 0:
        errors.append(
            FieldError("throughput_not_positive", _("The throughput is above zero."), "throughput_tokens_per_s")
        )
    elif data.throughput_tokens_per_s > MAX_TOKEN_THROUGHPUT:
        errors.append(
            FieldError("throughput_too_high", _("That throughput is not plausible."), "throughput_tokens_per_s")
        )
    errors += _currency_errors(data.currency)
    return errors, pool, model


def _engine_endpoint(endpoint: TokenEndpoint) -> token_matching.Endpoint:
    pool = endpoint.pool
    return token_matching.Endpoint(
        endpoint_id=str(endpoint.pk),
        model=str(endpoint.served_model_id),
        price_input=_micro(endpoint.price_input),
        price_output=_micro(endpoint.price_output),
        capacity_tokens=endpoint.capacity_monthly_tokens,
        committed_tokens=endpoint.committed_monthly_tokens,
        arrival=int(endpoint.created_at.timestamp() * 1_000_000),
        domestic=pool.accelerator_model.domestic,
        hub=pool.site.hub.code if pool.site.hub else None,
    )


def _engine_token_bid(bid: TokenBid) -> token_matching.Bid:
    hubs = frozenset(h.code for h in bid.hubs.all())
    return token_matching.Bid(
        bid_id=str(bid.pk),
        model=str(bid.served_model_id),
        limit_input=_micro(bid.limit_input),
        limit_output=_micro(bid.limit_output),
        monthly_tokens=bid.monthly_tokens,
        input_weight=bid.input_weight,
        output_weight=bid.output_weight,
        arrival=int(bid.created_at.timestamp() * 1_000_000),
        domestic_only=bid.domestic_only,
        hubs=hubs or None,
    )


def _tradable_endpoints(served_model_id: int) -> QuerySet[TokenEndpoint]:
    return TokenEndpoint.objects.filter(
        served_model_id=served_model_id,
        status=EndpointStatus.OPEN,
        pool__status=PoolStatus.LISTED,
        pool__site__status=SiteStatus.ACTIVE,
    ).select_related("pool__site__hub", "pool__accelerator_model")


def _token_capacity_conflict() -> ApplicationError:
    return ApplicationError(
        "capacity_conflict", _("The endpoint's capacity was taken in the meantime: submit again."), status_code=409
    )


def token_endpoint_commit(*, endpoint_id: int, monthly_tokens: int) -> None:
    """Take ``monthly_tokens`` of an open endpoint's monthly capacity, or refuse (409). Call inside a transaction.

    The conditional UPDATE is atomic in PostgreSQL (a concurrent writer of the row waits and re-checks the
    condition), so concurrent commits can never overshoot; the CHECK constraint backs it up."""
    try:
        with transaction.atomic():
            updated = TokenEndpoint.objects.filter(
                pk=endpoint_id,
                status=EndpointStatus.OPEN,
                committed_monthly_tokens__lte=F("throughput_tokens_per_s") * SECONDS_PER_TOKEN_MONTH - monthly_tokens,
            ).update(committed_monthly_tokens=F("committed_monthly_tokens") + monthly_tokens, updated_at=utcnow())
    except IntegrityError as error:
        if "token_endpoint_within_capacity" not in str(error):
            raise
        raise _token_capacity_conflict() from None
    if updated != 1:
        raise _token_capacity_conflict()


def _token_release(contract: TokenContract, now: datetime, *, reopen_bid: bool) -> None:
    """Give a contract's volume back to its endpoint; with ``reopen_bid`` its bid rests again (or expires)."""
    TokenEndpoint.objects.filter(pk=contract.endpoint_id).update(
        committed_monthly_tokens=F("committed_monthly_tokens") - contract.monthly_tokens, updated_at=now
    )
    if reopen_bid:
        bid = TokenBid.objects.select_for_update().get(pk=contract.bid_id)
        if bid.status == OrderStatus.FILLED:
            bid.status = OrderStatus.OPEN if bid.expires_at > now else OrderStatus.EXPIRED
            bid.save(update_fields=["status", "updated_at"])


def _token_rematch_returned(contract: TokenContract, actor: Any, now: datetime) -> list[TokenContract]:
    """After a contract is cancelled or completes, under its model's token lock: its bid (if it rests again)
    takes the best open endpoint at once, then its endpoint's returned volume serves the resting bids. Never with
    each other again after a rejection or an expired confirmation."""
    contracts: list[TokenContract] = []
    refused = TokenContract.objects.filter(status=LeaseStatus.CANCELLED)
    bid = TokenBid.objects.filter(pk=contract.bid_id, status=OrderStatus.OPEN, expires_at__gt=now).first()
    if bid is not None:
        turned_down = refused.filter(bid=bid).values_list("endpoint_id", flat=True)
        contracts += _match_token_bid(bid, actor, now, exclude=turned_down)
    endpoint = TokenEndpoint.objects.filter(pk=contract.endpoint_id, status=EndpointStatus.OPEN).first()
    if endpoint is not None:
        turned_down = refused.filter(endpoint=endpoint).values_list("bid_id", flat=True)
        contracts += _match_token_endpoint(endpoint, actor, now, exclude=turned_down)
    return contracts


def _token_contract_event(contract: TokenContract, from_status: str, actor: Any, note: str = "") -> None:
    TokenContractEvent.objects.create(
        contract=contract,
        from_status=from_status,
        to_status=contract.status,
        actor_label=actor_label_for(actor),
        note=note,
    )


def _token_contract_window(bid: TokenBid, now: datetime) -> tuple[datetime, datetime]:
    """From the bid's first month (or the current hour if that month has begun) to the end of its last month."""
    start = max(_month_instant(bid.start_month), floor_hour(now))
    return start, _month_instant(_add_months(bid.start_month, bid.months))


def _persist_token_trades(
    trades: list[token_matching.Trade],
    endpoints: dict[str, TokenEndpoint],
    bids: dict[str, TokenBid],
    actor: Any,
    now: datetime,
) -> list[TokenContract]:
    contracts: list[TokenContract] = []
    for trade in trades:
        endpoint, bid = endpoints[trade.endpoint_id], bids[trade.bid_id]
        token_endpoint_commit(endpoint_id=endpoint.pk, monthly_tokens=trade.monthly_tokens)
        start, end = _token_contract_window(bid, now)
        contract = TokenContract.objects.create(
            bid=bid,
            endpoint=endpoint,
            buyer_id=bid.organization_id,
            provider_id=endpoint.organization_id,
            served_model_id=endpoint.served_model_id,
            price_input=Decimal(trade.price_input) / matching.MICRO,
            price_output=Decimal(trade.price_output) / matching.MICRO,
            currency=endpoint.currency,
            monthly_tokens=trade.monthly_tokens,
            start=start,
            end=end,
            confirm_by=now + TOKEN_CONFIRM_WINDOW,
        )
        TokenBid.objects.filter(pk=bid.pk).update(status=OrderStatus.FILLED, updated_at=now)
        _token_contract_event(contract, "", actor, note=f"matched ({trade.aggressor} took liquidity)")
        audit_record(
            action="token_contract.created",
            target=contract,
            actor=actor,
            organization=endpoint.organization,
            after={
                "bid": str(bid.public_id),
                "endpoint": str(endpoint.public_id),
                "monthly_tokens": contract.monthly_tokens,
                "price_input": str(contract.price_input),
                "price_output": str(contract.price_output),
                "currency": contract.currency,
                "start": start.isoformat(),
                "end": end.isoformat(),
            },
        )
        outbox_enqueue(
            "marketplace.tasks.token_contract_notify",
            kwargs={"contract_id": str(contract.public_id), "event": "created"},
        )
        contracts.append(contract)
    return contracts


def _match_token_bid(bid: TokenBid, actor: Any, now: datetime, exclude: Iterable[int] = ()) -> list[TokenContract]:
    """An arriving bid against the open endpoints of its model (except ``exclude``, ids of endpoints that turned
    it down before). Call under the model's token lock."""
    excluded = set(exclude)
    endpoints = {str(e.pk): e for e in _tradable_endpoints(bid.served_model_id) if e.pk not in excluded}
    trade = token_matching.match_bid(_engine_token_bid(bid), [_engine_endpoint(e) for e in endpoints.values()])
    return _persist_token_trades([trade], endpoints, {str(bid.pk): bid}, actor, now) if trade else []


def _match_token_endpoint(
    endpoint: TokenEndpoint, actor: Any, now: datetime, exclude: Iterable[int] = ()
) -> list[TokenContract]:
    """An arriving (or resumed) endpoint, or one whose volume came back, against the resting bids of its model
    (except ``exclude``, ids of bids it turned down before). Call under the model's lock."""
    resting = (
        TokenBid.objects.filter(served_model_id=endpoint.served_model_id, status=OrderStatus.OPEN, expires_at__gt=now)
        .exclude(pk__in=sorted(set(exclude)))
        .prefetch_related("hubs")
    )
    bids = {str(b.pk): b for b in resting}
    endpoint = TokenEndpoint.objects.select_related("pool__site__hub", "pool__accelerator_model").get(pk=endpoint.pk)
    trades = token_matching.match_endpoint(_engine_endpoint(endpoint), [_engine_token_bid(b) for b in bids.values()])
    return _persist_token_trades(trades, {str(endpoint.pk): endpoint}, bids, actor, now)


def token_endpoint_create(
    *, organization: Organization, actor: Any, data: TokenEndpointInput, now: datetime | None = None
) -> TokenEndpoint:
    """Open an endpoint and match it at once against resting token bids (its trades are pending contracts)."""
    _require_provider(organization)
    errors, pool, model = token_endpoint_validate(organization=organization, data=data)
    if errors:
        raise ValidationFailed(errors)
    assert pool is not None
    assert model is not None
    assert data.price_input is not None
    assert data.price_output is not None
    assert data.throughput_tokens_per_s is not None
    now = now or utcnow()
    with transaction.atomic():
        _token_lock(model.pk)
        endpoint = TokenEndpoint.objects.create(
            organization=organization,
            pool=pool,
            served_model=model,
            price_input=data.price_input,
            price_output=data.price_output,
            currency=data.currency,
            throughput_tokens_per_s=data.throughput_tokens_per_s,
        )
        audit_record(
            action="token_endpoint.created",
            target=endpoint,
            actor=actor,
            organization=organization,
            after=_snapshot(
                endpoint, ["pool", "served_model", "price_input", "price_output", "currency", "throughput_tokens_per_s"]
            ),
        )
        _match_token_endpoint(endpoint, actor, now)
        endpoint.refresh_from_db()
    return endpoint


def _token_endpoint_set_status(
    *, organization: Organization, actor: Any, endpoint: TokenEndpoint, allowed: set[str], status: str, now: datetime
) -> TokenEndpoint:
    if endpoint.organization_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    with transaction.atomic():
        _token_lock(endpoint.served_model_id)
        endpoint = TokenEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if endpoint.status == status:
            return endpoint  # already there: nothing to do (a retried request changes nothing)
        if endpoint.status not in allowed:
            raise ApplicationError(
                "invalid_transition", _("This endpoint cannot change to that status now."), status_code=409
            )
        before = endpoint.status
        endpoint.status = status
        endpoint.save(update_fields=["status", "updated_at"])
        audit_record(
            action=f"token_endpoint.{status}",
            target=endpoint,
            actor=actor,
            organization=organization,
            before={"status": before},
            after={"status": status},
        )
        if status == EndpointStatus.OPEN:
            _match_token_endpoint(endpoint, actor, now)
            endpoint.refresh_from_db()
    return endpoint


def token_endpoint_pause(*, organization: Organization, actor: Any, endpoint: TokenEndpoint) -> TokenEndpoint:
    """Stop matching new bids (contracts already made stand)."""
    return _token_endpoint_set_status(
        organization=organization,
        actor=actor,
        endpoint=endpoint,
        allowed={EndpointStatus.OPEN},
        status=EndpointStatus.PAUSED,
        now=utcnow(),
    )


def token_endpoint_resume(
    *, organization: Organization, actor: Any, endpoint: TokenEndpoint, now: datetime | None = None
) -> TokenEndpoint:
    """Open a paused endpoint again; it matches resting bids at once."""
    return _token_endpoint_set_status(
        organization=organization,
        actor=actor,
        endpoint=endpoint,
        allowed={EndpointStatus.PAUSED},
        status=EndpointStatus.OPEN,
        now=now or utcnow(),
    )


def token_endpoint_close(*, organization: Organization, actor: Any, endpoint: TokenEndpoint) -> TokenEndpoint:
    """Withdraw an endpoint for good (contracts already made stand)."""
    return _token_endpoint_set_status(
        organization=organization,
        actor=actor,
        endpoint=endpoint,
        allowed={EndpointStatus.OPEN, EndpointStatus.PAUSED},
        status=EndpointStatus.CLOSED,
        now=utcnow(),
    )


@dataclass(frozen=True)
class TokenBidInput:
    served_model: uuid.UUID | str | None  # public id or exact name
    limit_input: Decimal | None
    limit_output: Decimal | None
    monthly_tokens: int | None
    start_month: date | None  # the first day of a month
    months: int | None
    input_weight: int = token_matching.DEFAULT_INPUT_WEIGHT
    output_weight: int = token_matching.DEFAULT_OUTPUT_WEIGHT
    domestic_only: bool = False
    hubs: tuple[str, ...] = ()
    expires_at: datetime | None = None  # default: a week from now
    currency: str = TOKEN_CURRENCY


def token_bid_validate(
    *, data: TokenBidInput, now: datetime | None = None
) -> tuple[list[FieldError], ServedModel | None, list[Hub]]:
    """The errors ``token_bid_create`` would raise (except an unsatisfiable combination), without writing."""
    now = now or utcnow()
    errors: list[FieldError] = []
    model_error, model = _served_model_error(data.served_model)
    if model_error:
        errors.append(model_error)
    errors += _price_errors(data.limit_input, "limit_input")
    errors += _price_errors(data.limit_output, "limit_output")
    if data.monthly_tokens is None:
        errors.append(FieldError("required", MSG_REQUIRED, "monthly_tokens"))
    elif data.monthly_tokens <= 0:
        errors.append(FieldError("volume_not_positive", _("Ask for at least one token a month."), "monthly_tokens"))
    elif data.monthly_tokens > MAX_MONTHLY_TOKENS:
        errors.append(FieldError("volume_too_large", _("That is more tokens than the market has."), "monthly_tokens"))
    if data.start_month is None:
        errors.append(FieldError("required", MSG_REQUIRED, "start_month"))
    elif data.start_month.day != 1:
        errors.append(FieldError("not_first_of_month", _("Use the first day of a month."), "start_month"))
    elif data.start_month < month_start(now).date():
        errors.append(FieldError("month_in_past", _("The first month is in the past."), "start_month"))
    if data.months is None:
        errors.append(FieldError("required", MSG_REQUIRED, "months"))
    elif not 1 <= data.months <= MAX_TOKEN_MONTHS:
        errors.append(FieldError("months_range", _("A term is 1 to %(n)d months.") % {"n": MAX_TOKEN_MONTHS}, "months"))
    if not (0 <= data.input_weight <= MAX_TOKEN_WEIGHT and 0 <= data.output_weight <= MAX_TOKEN_WEIGHT):
        errors.append(FieldError("weight_range", _("Use weights from 0 to 1000."), "input_weight"))
    elif data.input_weight + data.output_weight == 0:
        errors.append(FieldError("weights_zero", _("At least one weight is above zero."), "input_weight"))
    term_ok = data.start_month is not None and data.start_month.day == 1 and 1 <= (data.months or 0) <= MAX_TOKEN_MONTHS
    if data.expires_at is not None and data.expires_at <= now:
        errors.append(FieldError("expiry_in_past", _("The expiry is in the past."), "expires_at"))
    elif (
        data.expires_at is not None
        and term_ok
        and data.expires_at >= _month_instant(_add_months(data.start_month, data.months))  # type: ignore[arg-type]
    ):
        errors.append(FieldError("expiry_after_term", _("The bid expires after its term ends."), "expires_at"))
    hubs = list(Hub.objects.filter(code__in=data.hubs))
    if len(hubs) != len(set(data.hubs)):
        errors.append(FieldError("unknown_hub", _("Unknown hub."), "hubs"))
    errors += _currency_errors(data.currency)
    return errors, model, hubs


def _token_bid_satisfiable_error(data: TokenBidInput, hubs: list[Hub]) -> FieldError | None:
    """Refuse constraints that no pool on the market could ever serve, rather than leave the bid resting."""
    pools = Pool.objects.filter(status=PoolStatus.LISTED, site__status=SiteStatus.ACTIVE)
    if data.domestic_only:
        pools = pools.filter(accelerator_model__domestic=True)
    if hubs:
        pools = pools.filter(site__hub__in=hubs)
    if not pools.exists():
        return FieldError(
            "unsatisfiable", _("No pool on the market meets these constraints (domestic, hubs): relax them.")
        )
    return None


def token_bid_create(
    *, organization: Organization, actor: Any, data: TokenBidInput, now: datetime | None = None
) -> TokenBid:
    """Place a token bid and match it at once against open endpoints; if none fits it rests until it expires."""
    if organization.kind != OrganizationKind.BUYER:
        raise ApplicationError("not_a_buyer", _("Only buyers place bids."), status_code=403)
    now = now or utcnow()
    errors, model, hubs = token_bid_validate(data=data, now=now)
    if not errors:
        unsatisfiable = _token_bid_satisfiable_error(data, hubs)
        if unsatisfiable:
            errors.append(unsatisfiable)
    if errors:
        raise ValidationFailed(errors)
    assert model is not None
    assert data.limit_input is not None
    assert data.limit_output is not None
    assert data.monthly_tokens is not None
    assert data.start_month is not None
    assert data.months is not None
    with transaction.atomic():
        _token_lock(model.pk)
        bid = TokenBid.objects.create(
            organization=organization,
            served_model=model,
            limit_input=data.limit_input,
            limit_output=data.limit_output,
            currency=data.currency,
            monthly_tokens=data.monthly_tokens,
            input_weight=data.input_weight,
            output_weight=data.output_weight,
            start_month=data.start_month,
            months=data.months,
            domestic_only=data.domestic_only,
            # Default: a week, but never past the end of the term (a one-month bid late in its month).
            expires_at=data.expires_at
            or min(now + TOKEN_BID_DEFAULT_LIFETIME, _month_instant(_add_months(data.start_month, data.months))),
        )
        bid.hubs.set(hubs)
        audit_record(
            action="token_bid.created",
            target=bid,
            actor=actor,
            organization=organization,
            after=_snapshot(
                bid, ["served_model", "limit_input", "limit_output", "monthly_tokens", "start_month", "months"]
            ),
        )
        _match_token_bid(bid, actor, now)
        bid.refresh_from_db()
    return bid


def token_bid_cancel(*, organization: Organization, actor: Any, bid: TokenBid) -> TokenBid:
    """Withdraw an open token bid (a filled one has its contract; that is cancelled by the provider's rejection)."""
    if bid.organization_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    with transaction.atomic():
        _token_lock(bid.served_model_id)
        bid = TokenBid.objects.select_for_update().get(pk=bid.pk)
        if bid.status != OrderStatus.OPEN:
            raise ApplicationError("not_open", _("Only an open order can be cancelled."), status_code=409)
        bid.status = OrderStatus.CANCELLED
        bid.save(update_fields=["status", "updated_at"])
        audit_record(action="token_bid.cancelled", target=bid, actor=actor, organization=organization)
    return bid


def _token_contract_respond(
    *,
    organization: Organization,
    actor: Any,
    contract: TokenContract,
    confirm: bool,
    note: str = "",
    now: datetime | None = None,
) -> TokenContract:
    if contract.provider_id != organization.pk:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    now = now or utcnow()
    with transaction.atomic():
        _token_lock(contract.served_model_id)
        contract = TokenContract.objects.select_for_update().get(pk=contract.pk)
        if contract.status != LeaseStatus.PENDING:
            raise ApplicationError("not_pending", _("This contract is no longer waiting for you."), status_code=409)
        if now >= contract.confirm_by:
            raise ApplicationError(
                "confirmation_expired", _("The deadline to confirm this contract has passed."), status_code=409
            )
        previous = contract.status
        contract.status = LeaseStatus.ACTIVE if confirm else LeaseStatus.CANCELLED
        contract.save(update_fields=["status", "updated_at"])
        if not confirm:
            _token_release(contract, now, reopen_bid=True)
        _token_contract_event(contract, previous, actor, note=note[:500])
        audit_record(
            action="token_contract.confirmed" if confirm else "token_contract.rejected",
            target=contract,
            actor=actor,
            organization=organization,
            before={"status": previous},
            after={"status": contract.status},
        )
        outbox_enqueue(
            "marketplace.tasks.token_contract_notify",
            kwargs={"contract_id": str(contract.public_id), "event": contract.status},
        )
        if not confirm:
            _token_rematch_returned(contract, actor, now)
    return contract


def token_contract_confirm(
    *, organization: Organization, actor: Any, contract: TokenContract, note: str = "", now: datetime | None = None
) -> TokenContract:
    """The provider confirms a pending contract before its deadline: it becomes active."""
    return _token_contract_respond(
        organization=organization, actor=actor, contract=contract, confirm=True, note=note, now=now
    )


def token_contract_reject(
    *, organization: Organization, actor: Any, contract: TokenContract, note: str = "", now: datetime | None = None
) -> TokenContract:
    """The provider rejects a pending contract: cancelled, the volume returns to the endpoint and the bid rests
    again; both are matched again at once (never with each other)."""
    return _token_contract_respond(
        organization=organization, actor=actor, contract=contract, confirm=False, note=note, now=now
    )


def _token_contracts_close(
    contracts: QuerySet[TokenContract], *, to_status: str, reopen_bid: bool, action: str, note: str, now: datetime
) -> int:
    """Move each contract (one transaction each, under its model's lock) and give its volume back. Idempotent."""
    done = 0
    for contract_id, model_id in list(contracts.values_list("pk", "served_model_id")):
        with transaction.atomic():
            _token_lock(model_id)
            contract = (
                contracts.select_for_update(of=("self",)).select_related("provider").filter(pk=contract_id).first()
            )  # re-checked under the lock: another run may have done it
            if contract is None:
                continue
            previous = contract.status
            contract.status = to_status
            contract.save(update_fields=["status", "updated_at"])
            _token_release(contract, now, reopen_bid=reopen_bid)
            _token_contract_event(contract, previous, None, note=note)
            audit_record(
                action=action,
                target=contract,
                organization=contract.provider,
                before={"status": previous},
                after={"status": to_status},
            )
            _token_rematch_returned(contract, None, now)
            done += 1
    return done


def token_contract_expire_unconfirmed(*, now: datetime | None = None) -> int:
    """Cancel pending contracts past their confirmation deadline; their volume and bids return. Idempotent."""
    now = now or utcnow()
    return _token_contracts_close(
        TokenContract.objects.filter(status=LeaseStatus.PENDING, confirm_by__lte=now),
        to_status=LeaseStatus.CANCELLED,
        reopen_bid=True,
        action="token_contract.expired",
        note="confirmation deadline passed",
        now=now,
    )


def token_market_expire_due(*, now: datetime | None = None) -> int:
    """Expire open token bids past their expiry and complete active contracts whose term has ended (their
    volume returns to the endpoint). Idempotent."""
    now = now or utcnow()
    with transaction.atomic():
        bids = TokenBid.objects.filter(status=OrderStatus.OPEN, expires_at__lte=now).update(
            status=OrderStatus.EXPIRED, updated_at=now
        )
    completed = _token_contracts_close(
        TokenContract.objects.filter(status=LeaseStatus.ACTIVE, end__lte=now),
        to_status=LeaseStatus.COMPLETED,
        reopen_bid=False,
        action="token_contract.completed",
        note="term ended",
        now=now,
    )
    return bids + completed

"""Writes of the supply side: sites, pools with revenue shares, attestations. Each service owns its transaction.

Every rule is checked here (the portal forms and the API only parse), and every problem comes back as a
``FieldError`` naming the input field, all at once, before anything is written. ``site_validate`` and
``pool_validate`` run the same checks without writing, for the portal's validation as the user types.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, OrganizationAPIKey, OrganizationKind, User
from accounts.regions import PROVINCE_EN_BY_CODE
from core.audit import audit_record
from core.errors import ApplicationError, FieldError, ValidationFailed
from core.timeutils import utcnow
from marketplace import units
from marketplace.models import (
    PUE_MAX,
    PUE_MIN,
    AcceleratorModel,
    Attestation,
    AttestationSource,
    AttestationStatus,
    Cluster,
    GridRegion,
    LatencyTier,
    Pool,
    PoolShare,
    PoolStatus,
    Site,
    SiteStatus,
    SoftwareStack,
)

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

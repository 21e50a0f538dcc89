"""Models of the marketplace app (see DESIGN.md §4.1-4.2): catalog, hubs, sites, pools, attestations."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import ArrayField, DateTimeRangeField, RangeOperators
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Organization, OrganizationAPIKey, User
from accounts.regions import province_choices
from core.ids import PublicIdModel
from marketplace import units

# --- Catalog -------------------------------------------------------------------------------------------


class SoftwareStack(models.TextChoices):
    CUDA = "cuda", "CUDA"
    ROCM = "rocm", "ROCm"
    CANN = "cann", "CANN (Ascend)"
    DTK = "dtk", "DTK (Hygon DCU)"
    NEUWARE = "neuware", "Cambricon Neuware"
    MUSA = "musa", "MUSA (Moore Threads)"
    MXMACA = "mxmaca", "MXMACA (MetaX)"
    BIRENSUPA = "birensupa", "BIRENSUPA (Biren)"
    COREX = "corex", "CoreX (Iluvatar)"
    XPU = "xpu", "XPU SDK (Kunlunxin)"
    TOPSRIDER = "topsrider", "TopsRider (Enflame)"
    OTHER = "other", _("Other")


class AcceleratorModel(PublicIdModel):
    """A catalog entry: datasheet peaks (dense, no sparsity). NULL means unknown, never a guess."""

    vendor = models.CharField(_("vendor"), max_length=60)
    name = models.CharField(_("model"), max_length=120)
    form_factor = models.CharField(_("form factor"), max_length=60, blank=True)
    fp64_tflops = models.DecimalField("FP64 TFLOPS", max_digits=10, decimal_places=3, null=True, blank=True)
    fp32_tflops = models.DecimalField("FP32 TFLOPS", max_digits=10, decimal_places=3, null=True, blank=True)
    tf32_tflops = models.DecimalField("TF32 TFLOPS", max_digits=10, decimal_places=3, null=True, blank=True)
    bf16_tflops = models.DecimalField("BF16 TFLOPS", max_digits=10, decimal_places=3, null=True, blank=True)
    fp16_tflops = models.DecimalField("FP16 TFLOPS", max_digits=10, decimal_places=3, null=True, blank=True)
    fp8_tflops = models.DecimalField("FP8 TFLOPS", max_digits=10, decimal_places=3, null=True, blank=True)
    int8_tops = models.DecimalField("INT8 TOPS", max_digits=10, decimal_places=3, null=True, blank=True)
    memory_gb = models.DecimalField(_("memory (GB)"), max_digits=8, decimal_places=2, null=True, blank=True)
    memory_bw_tbps = models.DecimalField(
        _("memory bandwidth (TB/s)"), max_digits=8, decimal_places=4, null=True, blank=True
    )
    tdp_w = models.PositiveIntegerField(_("TDP (W)"), null=True, blank=True)
    interconnect = models.CharField(_("interconnect"), max_length=300, blank=True)
    domestic = models.BooleanField(_("domestic (国产)"), default=False)
    software_stack = models.CharField(_("software stack"), max_length=20, choices=SoftwareStack.choices)
    source_url = models.TextField(_("source"), blank=True, help_text=_("Where the datasheet figures come from."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["vendor", "name"]
        constraints = [
            models.UniqueConstraint(fields=["vendor", "name"], name="accelerator_model_unique"),
            *[
                models.CheckConstraint(
                    condition=Q(**{f"{f}__isnull": True}) | Q(**{f"{f}__gt": 0}), name=f"acc_{f}_pos"
                )
                for f in (
                    "fp64_tflops",
                    "fp32_tflops",
                    "tf32_tflops",
                    "bf16_tflops",
                    "fp16_tflops",
                    "fp8_tflops",
                    "int8_tops",
                    "memory_gb",
                    "memory_bw_tbps",
                )
            ],
        ]
        verbose_name = _("accelerator model")
        verbose_name_plural = _("accelerator models")

    def __str__(self) -> str:
        return f"{self.vendor} {self.name}"

    @property
    def dense_tflops(self) -> Decimal | None:
        """Datasheet dense FP16/BF16 peak (the SCU basis)."""
        return units.dense_half_precision_peak(bf16_tflops=self.bf16_tflops, fp16_tflops=self.fp16_tflops)

    def normalised(self) -> units.Normalised:
        return units.normalise(datasheet_tflops=self.dense_tflops, datasheet_tbps=self.memory_bw_tbps)


# --- 东数西算 hubs and clusters -------------------------------------------------------------------------


class GridRegion(models.TextChoices):
    NORTH = "north", _("North China grid")
    NORTHEAST = "northeast", _("Northeast China grid")
    EAST = "east", _("East China grid")
    CENTRAL = "central", _("Central China grid")
    NORTHWEST = "northwest", _("Northwest China grid")
    SOUTHWEST = "southwest", _("Southwest China grid")
    SOUTH = "south", _("China Southern grid")


class Hub(models.Model):
    """One of the 8 national hub nodes (国家枢纽节点) of 东数西算 (data/hubs.csv)."""

    code = models.CharField(max_length=10, unique=True)
    name_zh = models.CharField(max_length=40)
    name_en = models.CharField(max_length=80)
    side = models.CharField(max_length=4, choices=[("east", _("east (demand)")), ("west", _("west (base)"))])
    grid_region = models.CharField(max_length=12, choices=GridRegion.choices)

    class Meta:
        ordering = ["code"]
        verbose_name = _("hub")
        verbose_name_plural = _("hubs")

    def __str__(self) -> str:
        return self.name_zh


class Cluster(PublicIdModel):
    """A data-centre cluster (数据中心集群) of a hub."""

    hub = models.ForeignKey(Hub, on_delete=models.PROTECT, related_name="clusters")
    name_zh = models.CharField(max_length=80, unique=True)
    start_zone_zh = models.CharField(max_length=200, blank=True)
    provinces = models.CharField(max_length=120, help_text="English province names, ';'-separated")
    grid_region = models.CharField(max_length=12, choices=GridRegion.choices)
    role = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["hub__code", "name_zh"]
        verbose_name = _("cluster")
        verbose_name_plural = _("clusters")

    def __str__(self) -> str:
        return f"{self.hub.name_zh} · {self.name_zh}"

    @property
    def province_names(self) -> list[str]:
        return [p.strip() for p in self.provinces.split(";") if p.strip()]


# --- Sites --------------------------------------------------------------------------------------------


class LatencyTier(models.TextChoices):
    CITY = "city", _("City (≤ 1 ms)")
    REGIONAL = "regional", _("Regional (≤ 5 ms)")
    CROSS_HUB = "cross_hub", _("Cross-hub (≤ 20 ms)")


class SiteStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended")


PUE_MIN = Decimal("1.0")
PUE_MAX = Decimal("3.0")


class Site(PublicIdModel):
    """A provider's data centre."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="sites")
    name = models.CharField(_("name"), max_length=120)
    province = models.CharField(_("province"), max_length=2, choices=province_choices())
    city = models.CharField(_("city"), max_length=60)
    hub = models.ForeignKey(Hub, on_delete=models.PROTECT, null=True, blank=True, related_name="sites")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, null=True, blank=True, related_name="sites")
    grid_region = models.CharField(_("grid region"), max_length=12, choices=GridRegion.choices)
    pue = models.DecimalField(_("measured PUE"), max_digits=4, decimal_places=2)
    pue_period_start = models.DateField(_("PUE measured from"), null=True, blank=True)
    pue_period_end = models.DateField(_("PUE measured until"), null=True, blank=True)
    green_share_pct = models.DecimalField(_("green-power share (%)"), max_digits=5, decimal_places=2, default=0)
    latency_tier = models.CharField(_("latency tier"), max_length=12, choices=LatencyTier.choices)
    dengbao_level = models.PositiveSmallIntegerField(_("等保 level"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=12, choices=SiteStatus.choices, default=SiteStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="site_name_unique_per_org"),
            models.CheckConstraint(condition=Q(pue__gte=PUE_MIN, pue__lte=PUE_MAX), name="site_pue_range"),
            models.CheckConstraint(
                condition=Q(green_share_pct__gte=0, green_share_pct__lte=100), name="site_green_share_range"
            ),
            models.CheckConstraint(
                condition=Q(dengbao_level__isnull=True) | Q(dengbao_level__gte=1, dengbao_level__lte=5),
                name="site_dengbao_range",
            ),
            models.CheckConstraint(
                condition=Q(pue_period_start__isnull=True)
                | Q(pue_period_end__isnull=True)
                | Q(pue_period_end__gte=F("pue_period_start")),
                name="site_pue_period_order",
            ),
            models.CheckConstraint(
                condition=Q(cluster__isnull=True) | Q(hub__isnull=False), name="site_cluster_needs_hub"
            ),
        ]
        verbose_name = _("site")
        verbose_name_plural = _("sites")

    def __str__(self) -> str:
        return self.name


# --- Pools --------------------------------------------------------------------------------------------


class PoolStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    LISTED = "listed", _("Listed")
    SUSPENDED = "suspended", _("Suspended")


class Pool(PublicIdModel):
    """Accelerators of one model at one site, sold together. ``organization`` is the site's operator."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="pools")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="pools")
    accelerator_model = models.ForeignKey(AcceleratorModel, on_delete=models.PROTECT, related_name="pools")
    name = models.CharField(_("name"), max_length=120)
    accelerator_count = models.PositiveIntegerField(_("accelerators"))
    interconnect = models.CharField(_("interconnect"), max_length=200, blank=True)
    software_stack = models.CharField(_("software stack"), max_length=20, choices=SoftwareStack.choices)
    status = models.CharField(_("status"), max_length=12, choices=PoolStatus.choices, default=PoolStatus.DRAFT)
    # The accepted attestation the pool is rated on (the latest accepted one); None: datasheet, unverified.
    current_attestation = models.ForeignKey(
        "Attestation", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    verified = models.BooleanField(_("verified"), default=False)
    retest_requested_at = models.DateTimeField(_("re-test requested"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="pool_name_unique_per_site"),
            models.CheckConstraint(condition=Q(accelerator_count__gt=0), name="pool_count_positive"),
            models.CheckConstraint(
                condition=Q(verified=True, current_attestation__isnull=False)
                | Q(verified=False, current_attestation__isnull=True),
                name="pool_verified_iff_attested",
            ),
        ]
        verbose_name = _("pool")
        verbose_name_plural = _("pools")

    def __str__(self) -> str:
        return f"{self.name} ({self.accelerator_count} x {self.accelerator_model.name})"

    def normalised(self) -> units.Normalised:
        """Per-accelerator SCU/BWU/H100e, attested where the current attestation says, datasheet otherwise."""
        attestation = self.current_attestation
        return units.normalise(
            datasheet_tflops=self.accelerator_model.dense_tflops,
            datasheet_tbps=self.accelerator_model.memory_bw_tbps,
            attested_tflops=attestation.measured_tflops if attestation else None,
            attested_tbps=attestation.measured_bw_tbps if attestation else None,
        )


class PoolShare(models.Model):
    """A revenue-share owner of a pool (合作分成). A pool's shares sum to exactly 100 (checked by the service)."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="shares")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="pool_shares")
    share_pct = models.DecimalField(_("share (%)"), max_digits=5, decimal_places=2)

    class Meta:
        ordering = ["-share_pct", "organization__name"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "organization"], name="pool_share_unique_owner"),
            models.CheckConstraint(condition=Q(share_pct__gt=0, share_pct__lte=100), name="pool_share_pct_range"),
        ]
        verbose_name = _("revenue share")
        verbose_name_plural = _("revenue shares")

    def __str__(self) -> str:
        return f"{self.organization} {self.share_pct}%"


# --- Attestations -------------------------------------------------------------------------------------


class AttestationStatus(models.TextChoices):
    ACCEPTED = "accepted", _("Accepted")
    PENDING_REVIEW = "pending_review", _("Waiting for staff review")
    REJECTED = "rejected", _("Rejected by staff")


class AttestationSource(models.TextChoices):
    PORTAL = "portal", _("Portal")
    API = "api", _("API")


class Attestation(PublicIdModel):
    """Measured performance of a pool's accelerators (per accelerator), with the raw benchmark output."""

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="attestations")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="attestations")
    measured_tflops = models.DecimalField(_("measured dense FP16/BF16 TFLOPS"), max_digits=10, decimal_places=3)
    measured_bw_tbps = models.DecimalField(_("measured memory bandwidth (TB/s)"), max_digits=8, decimal_places=4)
    tokens_per_s = models.DecimalField(_("tokens/s"), max_digits=12, decimal_places=2, null=True, blank=True)
    reference_model = models.CharField(_("reference model"), max_length=120, blank=True)
    reference_latency_ms = models.PositiveIntegerField(_("at latency (ms)"), null=True, blank=True)
    # Datasheet peaks at the time of the attestation, and measured / declared (None: the datasheet is silent).
    declared_tflops = models.DecimalField(max_digits=10, decimal_places=3, null=True, blank=True)
    declared_bw_tbps = models.DecimalField(max_digits=8, decimal_places=4, null=True, blank=True)
    tflops_ratio = models.DecimalField(max_digits=8, decimal_places=4, null=True, blank=True)
    bw_ratio = models.DecimalField(max_digits=8, decimal_places=4, null=True, blank=True)
    formula_version = models.CharField(max_length=40, default=units.FORMULA_VERSION)
    tool = models.CharField(_("tool"), max_length=200, blank=True)
    raw_output = models.TextField(_("raw benchmark output"))
    status = models.CharField(max_length=16, choices=AttestationStatus.choices, default=AttestationStatus.ACCEPTED)
    retest = models.BooleanField(_("re-test"), default=False)
    source = models.CharField(max_length=8, choices=AttestationSource.choices)
    submitted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    api_key = models.ForeignKey(OrganizationAPIKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    submitted_by_label = models.CharField(max_length=200)
    reviewed_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(measured_tflops__gt=0), name="attestation_tflops_positive"),
            models.CheckConstraint(condition=Q(measured_bw_tbps__gt=0), name="attestation_bw_positive"),
            models.CheckConstraint(
                condition=Q(tokens_per_s__isnull=True) | Q(tokens_per_s__gt=0), name="attestation_tokens_positive"
            ),
        ]
        verbose_name = _("attestation")
        verbose_name_plural = _("attestations")

    def __str__(self) -> str:
        return f"{self.pool.name}: {self.measured_tflops} TFLOPS, {self.measured_bw_tbps} TB/s"


# --- Market: offers, bids, leases (DESIGN.md §4.3) ------------------------------------------------------


class OrderStatus(models.TextChoices):
    OPEN = "open", _("Open")
    FILLED = "filled", _("Filled")
    CANCELLED = "cancelled", _("Cancelled")
    EXPIRED = "expired", _("Expired")


class PriceUnit(models.TextChoices):
    ACCELERATOR_HOUR = "acc_hour", _("per accelerator-hour")
    SCU_HOUR = "scu_hour", _("per SCU-hour")
    BWU_HOUR = "bwu_hour", _("per BWU-hour")


class Workload(models.TextChoices):
    TRAINING = "training", _("Training")
    INFERENCE = "inference", _("Inference")


class Offer(PublicIdModel):
    """A provider sells ``accelerators`` of a pool over ``[start, end)`` (whole UTC hours) at an ask."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="offers")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="offers")
    accelerators = models.PositiveIntegerField(_("accelerators"))
    start = models.DateTimeField(_("from"))
    end = models.DateTimeField(_("until"))
    ask = models.DecimalField(_("ask per accelerator-hour"), max_digits=20, decimal_places=10)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    min_lease_hours = models.PositiveIntegerField(_("minimum lease (hours)"), default=1)
    status = models.CharField(_("status"), max_length=12, choices=OrderStatus.choices, default=OrderStatus.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "end"], name="offer_status_end")]
        constraints = [
            models.CheckConstraint(condition=Q(accelerators__gt=0), name="offer_accelerators_positive"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="offer_window_order"),
            models.CheckConstraint(condition=Q(ask__gt=0), name="offer_ask_positive"),
            models.CheckConstraint(condition=Q(min_lease_hours__gt=0), name="offer_min_lease_positive"),
        ]
        verbose_name = _("offer")
        verbose_name_plural = _("offers")

    def __str__(self) -> str:
        return f"{self.pool.name}: {self.accelerators} x {self.start:%Y-%m-%d %H}h-{self.end:%Y-%m-%d %H}h"


class Bid(PublicIdModel):
    """A buyer wants ``accelerators`` for ``hours`` consecutive hours inside ``[earliest_start, latest_end)``."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="bids")
    accelerators = models.PositiveIntegerField(_("accelerators"))
    hours = models.PositiveIntegerField(_("hours"))
    earliest_start = models.DateTimeField(_("earliest start"))
    latest_end = models.DateTimeField(_("latest end"))
    limit_price = models.DecimalField(_("limit price"), max_digits=20, decimal_places=10)
    price_unit = models.CharField(_("price unit"), max_length=10, choices=PriceUnit.choices)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    workload = models.CharField(_("workload"), max_length=10, choices=Workload.choices, default=Workload.TRAINING)
    # Constraints (hard filters; empty means any).
    accelerator_models = models.ManyToManyField(AcceleratorModel, blank=True, related_name="+")
    min_tflops = models.PositiveIntegerField(_("minimum TFLOPS"), default=0)
    min_memory_gb = models.PositiveIntegerField(_("minimum memory (GB)"), default=0)
    hubs = models.ManyToManyField(Hub, blank=True, related_name="+")
    provinces = ArrayField(models.CharField(max_length=2), blank=True, default=list)
    min_green_share_pct = models.PositiveSmallIntegerField(_("minimum green-power share (%)"), default=0)
    max_pue = models.DecimalField(_("maximum PUE"), max_digits=4, decimal_places=2, null=True, blank=True)
    domestic_only = models.BooleanField(_("domestic only"), default=False)
    verified_only = models.BooleanField(_("verified only"), default=False)
    split_allowed = models.BooleanField(_("split across pools"), default=False)
    status = models.CharField(_("status"), max_length=12, choices=OrderStatus.choices, default=OrderStatus.OPEN)
    filled_accelerators = models.PositiveIntegerField(_("filled"), default=0)
    # Set by the first fill: the parts of a split bid run together.
    fixed_start = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "latest_end"], name="bid_status_end")]
        constraints = [
            models.CheckConstraint(condition=Q(accelerators__gt=0), name="bid_accelerators_positive"),
            models.CheckConstraint(condition=Q(hours__gt=0), name="bid_hours_positive"),
            models.CheckConstraint(condition=Q(latest_end__gt=F("earliest_start")), name="bid_window_order"),
            models.CheckConstraint(condition=Q(limit_price__gt=0), name="bid_limit_positive"),
            models.CheckConstraint(condition=Q(filled_accelerators__lte=F("accelerators")), name="bid_filled_le_n"),
            models.CheckConstraint(condition=Q(min_green_share_pct__lte=100), name="bid_green_share_range"),
        ]
        verbose_name = _("bid")
        verbose_name_plural = _("bids")

    def __str__(self) -> str:
        return f"{self.accelerators} x {self.hours} h @ {self.limit_price} {self.price_unit}"


class LeaseStatus(models.TextChoices):
    PENDING = "pending", _("Waiting for the provider")
    ACTIVE = "active", _("Active")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")
    DISPUTED = "disputed", _("Disputed")


class Lease(PublicIdModel):
    """A match: ``accelerators`` of a pool for ``[start, end)`` at a price per accelerator-hour."""

    bid = models.ForeignKey(Bid, on_delete=models.PROTECT, related_name="leases")
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="leases")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="leases")
    buyer = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="leases_bought")
    provider = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="leases_sold")
    accelerators = models.PositiveIntegerField(_("accelerators"))
    start = models.DateTimeField(_("from"))
    end = models.DateTimeField(_("until"))
    price = models.DecimalField(_("price per accelerator-hour"), max_digits=20, decimal_places=10)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    status = models.CharField(_("status"), max_length=12, choices=LeaseStatus.choices, default=LeaseStatus.PENDING)
    confirm_by = models.DateTimeField(_("provider confirms by"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(accelerators__gt=0), name="lease_accelerators_positive"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="lease_window_order"),
            models.CheckConstraint(condition=Q(price__gt=0), name="lease_price_positive"),
        ]
        verbose_name = _("lease")
        verbose_name_plural = _("leases")

    def __str__(self) -> str:
        return f"{self.pool.name}: {self.accelerators} x {self.start:%Y-%m-%d %H}h-{self.end:%Y-%m-%d %H}h"


class LeaseEvent(models.Model):
    """The history of a lease: every change of status, who made it and why."""

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, choices=LeaseStatus.choices)
    actor_label = models.CharField(max_length=200)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("lease event")
        verbose_name_plural = _("lease events")

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"


class LeaseAllocation(models.Model):
    """One accelerator of a pool held by a lease over a period: THE market invariant lives here.

    Why an exclusion constraint and not per-(pool, hour) capacity rows: a lease holds the same physical
    accelerators (index 0..count-1) for its whole window, which the agent and metering can name; one row per
    accelerator (not per accelerator-hour) keeps the table small for long leases; and PostgreSQL itself refuses
    any two rows of one accelerator whose periods overlap (``&&``), whatever the engine or a concurrent process
    did. It needs btree_gist (migration 0003) for the ``=`` parts of the GiST index.
    """

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="allocations")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="+")
    accelerator_index = models.PositiveIntegerField()
    period = DateTimeRangeField()  # [start, end), UTC

    class Meta:
        constraints = [
            ExclusionConstraint(
                name="allocation_no_double_sale",
                expressions=[
                    ("pool", RangeOperators.EQUAL),
                    ("accelerator_index", RangeOperators.EQUAL),
                    ("period", RangeOperators.OVERLAPS),
                ],
            ),
        ]
        verbose_name = _("lease allocation")
        verbose_name_plural = _("lease allocations")

    def __str__(self) -> str:
        return f"{self.pool_id}#{self.accelerator_index} {self.period}"


# --- Tokens: served models, endpoints, token bids, token contracts (DESIGN.md §4.3) -------------------

# An endpoint's monthly capacity is its throughput over a 30-day month: tokens/s x 2,592,000 s.
SECONDS_PER_TOKEN_MONTH = 30 * 24 * 3600


class ServedModel(PublicIdModel):
    """A model endpoints serve (catalog, loaded from data/served_models.csv with the publishers' model cards)."""

    name = models.CharField(_("model"), max_length=120, unique=True)
    publisher = models.CharField(_("publisher"), max_length=120)
    parameters_b = models.DecimalField(_("parameters (billions)"), max_digits=8, decimal_places=1)
    active_parameters_b = models.DecimalField(
        _("active parameters (billions)"), max_digits=8, decimal_places=1, null=True, blank=True
    )
    context_tokens = models.PositiveIntegerField(_("context length (tokens)"))
    license = models.CharField(_("licence"), max_length=120, blank=True)
    source_url = models.TextField(_("source"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["publisher", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(parameters_b__gt=0), name="served_model_parameters_positive"),
            models.CheckConstraint(condition=Q(context_tokens__gt=0), name="served_model_context_positive"),
        ]
        verbose_name = _("served model")
        verbose_name_plural = _("served models")

    def __str__(self) -> str:
        return self.name


class EndpointStatus(models.TextChoices):
    OPEN = "open", pgettext_lazy("token endpoint status", "Open")
    PAUSED = "paused", pgettext_lazy("token endpoint status", "Paused")
    CLOSED = "closed", pgettext_lazy("token endpoint status", "Closed")


class TokenEndpoint(PublicIdModel):
    """A provider serves a model from one of its pools at prices per million input and output tokens.

    ``committed_monthly_tokens`` is the sum of the monthly volumes of the endpoint's pending and active contracts;
    the database refuses any value above the monthly capacity (``token_endpoint_within_capacity``)."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="token_endpoints")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="token_endpoints")
    served_model = models.ForeignKey(ServedModel, on_delete=models.PROTECT, related_name="endpoints")
    price_input = models.DecimalField(_("per million input tokens"), max_digits=20, decimal_places=10)
    price_output = models.DecimalField(_("per million output tokens"), max_digits=20, decimal_places=10)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    throughput_tokens_per_s = models.BigIntegerField(_("throughput (tokens/s)"))
    committed_monthly_tokens = models.BigIntegerField(_("committed tokens per month"), default=0)
    status = models.CharField(_("status"), max_length=8, choices=EndpointStatus.choices, default=EndpointStatus.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["served_model", "status"], name="token_endpoint_model_status")]
        constraints = [
            models.CheckConstraint(condition=Q(price_input__gt=0), name="token_endpoint_input_positive"),
            models.CheckConstraint(condition=Q(price_output__gt=0), name="token_endpoint_output_positive"),
            models.CheckConstraint(condition=Q(throughput_tokens_per_s__gt=0), name="token_endpoint_throughput_pos"),
            models.CheckConstraint(condition=Q(committed_monthly_tokens__gte=0), name="token_endpoint_committed_pos"),
            models.CheckConstraint(
                condition=Q(committed_monthly_tokens__lte=F("throughput_tokens_per_s") * SECONDS_PER_TOKEN_MONTH),
                name="token_endpoint_within_capacity",
            ),
        ]
        verbose_name = _("token endpoint")
        verbose_name_plural = _("token endpoints")

    def __str__(self) -> str:
        return f"{self.served_model.name} @ {self.pool.name}"

    @property
    def capacity_monthly_tokens(self) -> int:
        return self.throughput_tokens_per_s * SECONDS_PER_TOKEN_MONTH

    @property
    def remaining_monthly_tokens(self) -> int:
        return self.capacity_monthly_tokens - self.committed_monthly_tokens


class TokenBid(PublicIdModel):
    """A buyer wants ``monthly_tokens`` of a model per month for ``months`` months from ``start_month``.

    Filled whole by one endpoint (no split). ``input_weight:output_weight`` is the expected ratio of input to
    output tokens (default 3:1); it weights the two prices into the blended price the engine ranks on."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="token_bids")
    served_model = models.ForeignKey(ServedModel, on_delete=models.PROTECT, related_name="bids")
    limit_input = models.DecimalField(_("limit per million input tokens"), max_digits=20, decimal_places=10)
    limit_output = models.DecimalField(_("limit per million output tokens"), max_digits=20, decimal_places=10)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    monthly_tokens = models.BigIntegerField(_("tokens per month"))
    input_weight = models.PositiveSmallIntegerField(_("input share (weight)"), default=3)
    output_weight = models.PositiveSmallIntegerField(_("output share (weight)"), default=1)
    start_month = models.DateField(_("first month"))
    months = models.PositiveSmallIntegerField(_("months"))
    domestic_only = models.BooleanField(_("domestic accelerators only"), default=False)
    hubs = models.ManyToManyField(Hub, blank=True, related_name="+")
    status = models.CharField(_("status"), max_length=12, choices=OrderStatus.choices, default=OrderStatus.OPEN)
    expires_at = models.DateTimeField(_("expires"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "expires_at"], name="token_bid_status_expires")]
        constraints = [
            models.CheckConstraint(condition=Q(limit_input__gt=0), name="token_bid_input_positive"),
            models.CheckConstraint(condition=Q(limit_output__gt=0), name="token_bid_output_positive"),
            models.CheckConstraint(condition=Q(monthly_tokens__gt=0), name="token_bid_volume_positive"),
            models.CheckConstraint(condition=Q(months__gt=0), name="token_bid_months_positive"),
            models.CheckConstraint(
                condition=Q(input_weight__gt=0) | Q(output_weight__gt=0), name="token_bid_weights_positive"
            ),
            models.CheckConstraint(condition=Q(start_month__day=1), name="token_bid_start_first_of_month"),
        ]
        verbose_name = _("token bid")
        verbose_name_plural = _("token bids")

    def __str__(self) -> str:
        return f"{self.served_model.name}: {self.monthly_tokens} tokens/month x {self.months}"


class TokenContract(PublicIdModel):
    """A match of a token bid with an endpoint: a monthly volume at fixed prices over ``[start, end)`` (UTC)."""

    bid = models.ForeignKey(TokenBid, on_delete=models.PROTECT, related_name="contracts")
    endpoint = models.ForeignKey(TokenEndpoint, on_delete=models.PROTECT, related_name="contracts")
    buyer = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="token_contracts_bought")
    provider = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="token_contracts_sold")
    served_model = models.ForeignKey(ServedModel, on_delete=models.PROTECT, related_name="+")
    price_input = models.DecimalField(_("per million input tokens"), max_digits=20, decimal_places=10)
    price_output = models.DecimalField(_("per million output tokens"), max_digits=20, decimal_places=10)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    monthly_tokens = models.BigIntegerField(_("tokens per month"))
    start = models.DateTimeField(_("from"))
    end = models.DateTimeField(_("until"))
    status = models.CharField(_("status"), max_length=12, choices=LeaseStatus.choices, default=LeaseStatus.PENDING)
    confirm_by = models.DateTimeField(_("provider confirms by"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "confirm_by"], name="token_contract_status_confirm")]
        constraints = [
            models.CheckConstraint(condition=Q(monthly_tokens__gt=0), name="token_contract_volume_positive"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="token_contract_window_order"),
            models.CheckConstraint(condition=Q(price_input__gt=0), name="token_contract_input_positive"),
            models.CheckConstraint(condition=Q(price_output__gt=0), name="token_contract_output_positive"),
        ]
        verbose_name = _("token contract")
        verbose_name_plural = _("token contracts")

    def __str__(self) -> str:
        return f"{self.served_model.name}: {self.monthly_tokens} tokens/month {self.start:%Y-%m}-{self.end:%Y-%m}"


class TokenContractEvent(models.Model):
    """The history of a token contract: every change of status, who made it and why."""

    contract = models.ForeignKey(TokenContract, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, choices=LeaseStatus.choices)
    actor_label = models.CharField(max_length=200)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("token contract event")
        verbose_name_plural = _("token contract events")

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"

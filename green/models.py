"""Models of the green app (DESIGN.md §4.7): emission factors, certificate lots, allocations."""

from __future__ import annotations

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import RangeOperators
from django.db import models
from django.db.models import F, Func, Q, Value
from django.utils.translation import gettext_lazy as _

from accounts.regions import province_choices
from core.ids import PublicIdModel

WH_PER_CERTIFICATE = 1_000_000  # 1 GEC (and 1 I-REC or GO) = 1 MWh


class FactorScope(models.TextChoices):
    NATIONAL = "national", _("National")
    GRID_REGION = "grid_region", _("Grid region")
    PROVINCE = "province", _("Province")


class FactorKind(models.TextChoices):
    AVERAGE = "average", _("Average")
    EXCLUDING_MARKET_TRADED_NON_FOSSIL = (
        "excluding_market_traded_non_fossil",
        _("Excluding market-traded non-fossil power"),
    )
    FOSSIL_POWER = "fossil_power", _("Fossil power")


class EmissionFactor(models.Model):
    """An official grid CO2 factor (green/data/grid_emission_factors.csv); staff can add a new year."""

    scope = models.CharField(_("scope"), max_length=12, choices=FactorScope.choices)
    region_code = models.CharField(
        _("region code"), max_length=12, help_text=_("CN, a grid region code, or a GB/T 2260 province code")
    )
    region_name = models.CharField(_("region name"), max_length=40, blank=True)
    year = models.PositiveSmallIntegerField(_("year"))
    kgco2_per_kwh = models.DecimalField(_("kg CO2 per kWh"), max_digits=8, decimal_places=4)
    kind = models.CharField(_("kind"), max_length=40, choices=FactorKind.choices, default=FactorKind.AVERAGE)
    source = models.CharField(_("source"), max_length=200)

    class Meta:
        ordering = ["scope", "region_code", "kind", "-year"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "region_code", "kind", "year"], name="emission_factor_unique"),
            models.CheckConstraint(condition=Q(kgco2_per_kwh__gte=0), name="emission_factor_non_negative"),
            models.CheckConstraint(condition=~Q(source=""), name="emission_factor_has_source"),
        ]
        verbose_name = _("emission factor")
        verbose_name_plural = _("emission factors")

    def __str__(self) -> str:
        return f"{self.scope}:{self.region_code} {self.year} {self.kind} = {self.kgco2_per_kwh}"


class Registry(models.TextChoices):
    GEC = "GEC", _("China green electricity certificate (GEC, 绿证)")
    IREC = "I-REC", _("I-REC")
    GO = "GO", _("Guarantee of origin (GO)")


class EnergySource(models.TextChoices):
    WIND = "wind", _("Wind")
    SOLAR = "solar", _("Solar")
    HYDRO = "hydro", _("Hydro")
    BIOMASS = "biomass", _("Biomass")
    GEOTHERMAL = "geothermal", _("Geothermal")
    OTHER = "other", _("Other renewable")


class LotStatus(models.TextChoices):
    """A lot's life (set by the services, never by hand):

    - active: registered, nothing allocated yet; the provider may still withdraw it;
    - reserved: partly allocated: some of its certificates now stand behind buyers' consumption (named on their
      statements), so it can no longer be withdrawn; the rest is still allocated to later consumption;
    - allocated: every Wh allocated;
    - expired: its validity ended with Wh left: the allocation job moves an active or reserved lot here once every
      month it could still cover (consumption before its expiry date) is closed, and never allocates it again;
    - withdrawn: taken back by the provider before any allocation.

    A reversal moves an allocated or reserved lot back to reserved, or to active when nothing stays allocated."""

    ACTIVE = "active", _("Active")
    RESERVED = "reserved", _("Reserved")
    ALLOCATED = "allocated", _("Fully allocated")
    EXPIRED = "expired", _("Expired")
    WITHDRAWN = "withdrawn", _("Withdrawn")


ALLOCATABLE_STATUSES = (LotStatus.ACTIVE, LotStatus.RESERVED)


def _serial_range() -> Func:
    # Half-open [first, last + 1): serials are integers, so this is the closed range [first, last].
    return Func(F("serial_first"), F("serial_last") + 1, Value("[)"), function="int8range")


class CertificateLot(PublicIdModel):
    """A block of consecutive certificates a provider declared for consumption at one of its sites.

    Serial ranges never overlap within a registry. The database holds it with one GiST exclusion constraint per
    registry on ``int8range(serial_first, serial_last + 1)``: a partial constraint (``WHERE registry = ...``) needs
    no btree_gist extension (only the built-in range operator class), and unlike an ``exists()`` check it also
    holds for two uploads racing. The service checks first, to name the clashing lot in a clear error.
    """

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="certificate_lots")
    site = models.ForeignKey("marketplace.Site", on_delete=models.PROTECT, related_name="certificate_lots")
    registry = models.CharField(_("registry"), max_length=8, choices=Registry.choices)
    serial_first = models.BigIntegerField(_("first serial"))
    serial_last = models.BigIntegerField(_("last serial"))
    certificate_count = models.PositiveIntegerField(_("certificates"))
    energy_wh = models.BigIntegerField(_("energy (Wh)"))
    allocated_wh = models.BigIntegerField(_("allocated (Wh)"), default=0)
    production_month = models.DateField(_("production month"))
    source = models.CharField(_("source"), max_length=12, choices=EnergySource.choices)
    market = models.CharField(_("market"), max_length=2, default="CN")
    province = models.CharField(_("province"), max_length=2, choices=province_choices())
    bundled_with_power = models.BooleanField(_("bundled with green power (绿电)"), default=False)
    expires_on = models.DateField(_("expires on"))
    evidence_text = models.TextField(_("declared-for-consumption evidence"), blank=True)
    evidence_file = models.FileField(_("evidence file"), upload_to="green/evidence/", blank=True)
    status = models.CharField(_("status"), max_length=12, choices=LotStatus.choices, default=LotStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["expires_on", "production_month", "id"]
        indexes = [models.Index(fields=["organization", "status", "expires_on"])]
        constraints = [
            models.CheckConstraint(condition=Q(serial_first__gte=0), name="lot_serial_non_negative"),
            models.CheckConstraint(condition=Q(serial_last__gte=F("serial_first")), name="lot_serial_order"),
            models.CheckConstraint(
                condition=Q(certificate_count=F("serial_last") - F("serial_first") + 1), name="lot_count_matches_range"
            ),
            models.CheckConstraint(
                condition=Q(energy_wh=F("certificate_count") * WH_PER_CERTIFICATE), name="lot_energy_matches_count"
            ),
            models.CheckConstraint(
                condition=Q(allocated_wh__gte=0, allocated_wh__lte=F("energy_wh")), name="lot_allocated_within_energy"
            ),
            models.CheckConstraint(condition=Q(production_month__day=1), name="lot_production_month_first_day"),
            models.CheckConstraint(
                condition=Q(expires_on__gt=F("production_month")), name="lot_expiry_after_production"
            ),
            models.CheckConstraint(condition=~Q(evidence_text="") | ~Q(evidence_file=""), name="lot_has_evidence"),
            models.CheckConstraint(condition=Q(registry__in=Registry.values), name="lot_registry_known"),
            *[
                ExclusionConstraint(
                    name=f"lot_serials_disjoint_{registry.lower().replace('-', '')}",
                    expressions=[(_serial_range(), RangeOperators.OVERLAPS)],
                    condition=Q(registry=registry) & ~Q(status=LotStatus.WITHDRAWN),
                )
                for registry in Registry.values
            ],
        ]
        verbose_name = _("certificate lot")
        verbose_name_plural = _("certificate lots")

    def __str__(self) -> str:
        return f"{self.registry} {self.serial_first}-{self.serial_last}"

    @property
    def remaining_wh(self) -> int:
        return self.energy_wh - self.allocated_wh


class ConsumptionAccount(models.Model):
    """The facility energy of one lease-hour and how much of it is green: allocated_wh never exceeds facility_wh,
    so one consumed Wh is covered at most once however many allocation runs race or repeat.

    A month holds a million of these rows, written in bulk by the allocation job, so the table carries only the
    indexes its reads use, and its site and buyer are copies without database foreign keys (a key checked per
    row would cost more than the rest of the insert): the job takes them from the joined leases and sites, which
    are never deleted (PROTECT)."""

    consumption_key = models.CharField(max_length=100, db_collation="C")  # byte order: cheap index inserts
    site = models.ForeignKey(
        "marketplace.Site", on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    hour_start = models.DateTimeField()
    facility_wh = models.BigIntegerField()
    allocated_wh = models.BigIntegerField(default=0)
    # What the facility energy came from (set by the monthly job; empty for consumption built by hand):
    lease_public_id = models.UUIDField(null=True, blank=True)
    buyer = models.ForeignKey(
        "accounts.Organization",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    it_energy_wh = models.BigIntegerField(null=True, blank=True, help_text="IT energy, measured or estimated")
    pue = models.DecimalField(max_digits=4, decimal_places=2, null=True, blank=True)
    estimated = models.BooleanField(default=False, help_text="some records of the hour lacked energy")

    class Meta:
        # The lease before the hour: the job inserts a month's accounts in key order (lease, then hour), so each
        # buyer's and each site's entries are appended at one place rather than spread over the index; reads by
        # buyer or site and a period skip over the leases (B-tree skip scan) or filter them inside the index.
        indexes = [
            models.Index(fields=["buyer", "lease_public_id", "hour_start"]),  # statements, buyer pages
            models.Index(fields=["site", "lease_public_id", "hour_start"]),  # site shares, hourly matching
        ]
        constraints = [
            models.UniqueConstraint(fields=["consumption_key"], name="consumption_account_key_unique"),
            models.CheckConstraint(condition=Q(facility_wh__gte=0), name="consumption_facility_non_negative"),
            models.CheckConstraint(
                condition=Q(allocated_wh__gte=0, allocated_wh__lte=F("facility_wh")),
                name="consumption_allocated_within_facility",
            ),
        ]
        verbose_name = _("consumption account")
        verbose_name_plural = _("consumption accounts")

    def __str__(self) -> str:
        return f"{self.consumption_key} {self.allocated_wh}/{self.facility_wh} Wh"


class Allocation(models.Model):
    """Green Wh of a lot assigned to one lease-hour. Final: a correction is a reversal row (negative Wh).

    A month's run writes half a million of these rows at once, so the references are checked once per statement
    rather than once per row: ``lot`` and ``reversal_of`` carry no per-row foreign-key triggers; instead the
    statement triggers of migration 0007 refuse, exactly like the foreign keys did, a row naming a lot or an
    allocation that does not exist (locking the named rows FOR KEY SHARE until commit) and the deletion (or a new
    id) of a lot or allocation still named by an allocation. A reversal is unique per original through a partial
    unique index (the run's rows, never reversals, add nothing to it)."""

    lot = models.ForeignKey(CertificateLot, on_delete=models.PROTECT, related_name="allocations", db_constraint=False)
    consumption_key = models.CharField(max_length=100, db_collation="C")
    hour_start = models.DateTimeField()
    energy_wh = models.BigIntegerField()
    run_key = models.CharField(max_length=100, db_collation="C")
    created_at = models.DateTimeField(auto_now_add=True)
    reversal_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversed_by",
        db_index=False,
        db_constraint=False,
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            # Also the index of the reads by consumption key (statements) and of a repeated run's check.
            models.UniqueConstraint(fields=["consumption_key", "lot", "run_key"], name="allocation_once_per_run"),
            models.UniqueConstraint(
                fields=["reversal_of"], condition=Q(reversal_of__isnull=False), name="allocation_reversed_once"
            ),
            models.CheckConstraint(
                condition=(Q(reversal_of__isnull=True) & Q(energy_wh__gt=0))
                | (Q(reversal_of__isnull=False) & Q(energy_wh__lt=0)),
                name="allocation_sign",
            ),
        ]
        verbose_name = _("allocation")
        verbose_name_plural = _("allocations")

    def __str__(self) -> str:
        return f"{self.lot_id} -> {self.consumption_key}: {self.energy_wh} Wh"


class AllocationPeriodStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")


class AllocationPeriod(models.Model):
    """The monthly allocation job's record of one month: how often it ran and what the last run did."""

    month = models.DateField(unique=True)
    status = models.CharField(max_length=12, choices=AllocationPeriodStatus.choices)
    runs = models.PositiveIntegerField(default=0)
    lease_hours = models.PositiveIntegerField(default=0)
    estimated_hours = models.PositiveIntegerField(default=0)
    facility_wh = models.BigIntegerField(default=0)
    allocated_wh = models.BigIntegerField(default=0, help_text="green Wh of the month's consumption after the run")
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-month"]
        constraints = [models.CheckConstraint(condition=Q(month__day=1), name="allocation_period_first_day")]
        verbose_name = _("allocation period")
        verbose_name_plural = _("allocation periods")

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.status} ({self.runs} runs)"


class GenerationHour(models.Model):
    """One hour of a site's green generation profile (a green-power contract or on-site meter), for hourly
    matching. Uploading the same hour again replaces its figure."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    site = models.ForeignKey("marketplace.Site", on_delete=models.PROTECT, related_name="generation_hours")
    hour_start = models.DateTimeField()
    energy_wh = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site", "hour_start"]
        constraints = [
            models.UniqueConstraint(fields=["site", "hour_start"], name="generation_hour_unique"),
            models.CheckConstraint(condition=Q(energy_wh__gte=0), name="generation_hour_non_negative"),
        ]
        verbose_name = _("generation hour")
        verbose_name_plural = _("generation hours")

    def __str__(self) -> str:
        return f"{self.site_id} {self.hour_start:%Y-%m-%d %H}:00 {self.energy_wh} Wh"


class StatementStatus(models.TextChoices):
    VALID = "valid", _("Valid")
    SUPERSEDED = "superseded", _("Superseded")
    REVOKED = "revoked", _("Revoked")


class Statement(PublicIdModel):
    """A green-electricity allocation statement of a buyer for a period (or one lease of it). ``content`` is frozen
    at issue: later allocations or factors never change it; a new statement supersedes it instead. Anyone holding
    the verification code (an unguessable capability printed on the PDF) can check it at /verify/green/<code>/."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="green_statements")
    period_start = models.DateField(_("from"))
    period_end = models.DateField(_("until (exclusive)"))
    lease_public_id = models.UUIDField(_("lease"), null=True, blank=True)
    scope_key = models.CharField(max_length=80, help_text="period and lease: one valid statement per scope")
    verification_code = models.CharField(_("verification code"), max_length=40, unique=True)
    content = models.JSONField()
    content_sha256 = models.CharField(max_length=64)
    status = models.CharField(
        _("status"), max_length=12, choices=StatementStatus.choices, default=StatementStatus.VALID
    )
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="supersedes"
    )
    issued_at = models.DateTimeField(_("issued"), auto_now_add=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_start", "-issued_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "scope_key"],
                condition=Q(status="valid"),
                name="statement_one_valid_per_scope",
            ),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="statement_period_order"),
        ]
        verbose_name = _("green statement")
        verbose_name_plural = _("green statements")

    def __str__(self) -> str:
        return f"{self.organization_id} {self.scope_key} ({self.status})"

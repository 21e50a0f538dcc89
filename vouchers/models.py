"""Models of the vouchers app (DESIGN.md §4.6): programmes, applications, grants, redemptions.

Every cap is guarded twice: the services lock the rows and update them conditionally, and the database refuses
any state that would break a cap (CHECK constraints below), so a bug or a race can never overspend.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from core.ids import PublicIdModel, new_public_id
from core.money import CURRENCY_CHOICES, DEFAULT_CURRENCY, RATE_DECIMAL_PLACES, RATE_MAX_DIGITS


class VoucherType(models.TextChoices):
    COMPUTE = "compute", _("Compute voucher (算力券)")
    MODEL = "model", _("Model voucher (模型券)")


class SettlementMode(models.TextChoices):
    REIMBURSE_BUYER = "reimburse_buyer", _("Reimburse the buyer after full payment")
    PAY_PROVIDER = "pay_provider", _("Pay the provider directly")
    DEDUCT_AT_CHECKOUT = "deduct_at_checkout", _("Deduct at checkout")


class ProgramStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    OPEN = "open", _("Open")
    CLOSED = "closed", _("Closed")


def _ratio_field(verbose_name: Any, **kwargs: Any) -> models.DecimalField:
    return models.DecimalField(
        verbose_name,
        max_digits=RATE_MAX_DIGITS,
        decimal_places=RATE_DECIMAL_PLACES,
        **kwargs,
    )


class Program(PublicIdModel):
    """A voucher programme run by an issuer (a city or provincial bureau)."""

    issuer = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="voucher_programs")
    name = models.CharField(_("name"), max_length=200)
    legal_basis = models.CharField(_("legal basis (policy document)"), max_length=300)
    document_number = models.CharField(_("document number"), max_length=100, blank=True)
    source = models.CharField(_("source of the rules"), max_length=300, blank=True)
    template_key = models.CharField(max_length=40, blank=True)
    voucher_type = models.CharField(_("voucher type"), max_length=10, choices=VoucherType.choices)
    status = models.CharField(_("status"), max_length=10, choices=ProgramStatus.choices, default=ProgramStatus.OPEN)
    currency = models.CharField(_("currency"), max_length=3, choices=CURRENCY_CHOICES, default=DEFAULT_CURRENCY)
    fiscal_year = models.PositiveSmallIntegerField(_("fiscal year"))
    budget_minor = models.BigIntegerField(_("budget"))
    # Committed to grants (an active grant commits its whole amount; a closed one what it redeemed).
    committed_minor = models.BigIntegerField(default=0)
    # Reserved by redemptions and not released.
    redeemed_minor = models.BigIntegerField(default=0)
    valid_from = models.DateTimeField(_("valid from"))
    valid_until = models.DateTimeField(_("valid until (exclusive)"))
    # Subsidy ratios (0.2 = 20%). The line's ratio is the chip-origin ratio, raised to the firm tier's if higher.
    ratio_domestic = _ratio_field(_("ratio, domestic chips"))
    ratio_other = _ratio_field(_("ratio, other chips"))
    ratio_startup = _ratio_field(_("ratio, start-ups"), null=True, blank=True)
    ratio_sme = _ratio_field(_("ratio, SMEs"), null=True, blank=True)
    # Product tier: the ratio for model/API (token) usage, in place of the chip-origin ratio (firm tiers still
    # raise it). Empty: model usage gets the chip-origin ratios like compute capacity.
    ratio_model = _ratio_field(_("ratio, model/API usage"), null=True, blank=True)
    startup_max_age_years = models.PositiveSmallIntegerField(_("start-up: founded within (years)"), default=3)
    cap_per_application_minor = models.BigIntegerField(_("cap per application"), null=True, blank=True)
    cap_per_firm_year_minor = models.BigIntegerField(_("cap per firm per year"), null=True, blank=True)
    eligible_provinces = ArrayField(models.CharField(max_length=2), default=list, blank=True)
    eligible_cities = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    eligible_size_classes = ArrayField(models.CharField(max_length=10), default=list, blank=True)
    eligible_industries = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    restrict_providers = models.BooleanField(_("only listed providers"), default=False)
    allowed_providers = models.ManyToManyField("accounts.Organization", blank=True, related_name="+")
    compute_only = models.BooleanField(_("compute only (no storage, network or security)"), default=True)
    stacking_allowed = models.BooleanField(_("may stack with other programmes on one invoice line"), default=False)
    settlement_mode = models.CharField(_("settlement"), max_length=20, choices=SettlementMode.choices)
    contact_name = models.CharField(_("reporting contact"), max_length=100, blank=True)
    contact_phone = models.CharField(_("contact phone"), max_length=40, blank=True)
    contact_email = models.EmailField(_("contact email"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(budget_minor__gt=0), name="voucher_program_budget_positive"),
            models.CheckConstraint(
                condition=Q(committed_minor__gte=0, committed_minor__lte=F("budget_minor")),
                name="voucher_program_committed_within_budget",
            ),
            models.CheckConstraint(
                condition=Q(redeemed_minor__gte=0, redeemed_minor__lte=F("committed_minor")),
                name="voucher_program_redeemed_within_committed",
            ),
            models.CheckConstraint(condition=Q(valid_until__gt=F("valid_from")), name="voucher_program_window"),
            models.CheckConstraint(
                condition=Q(ratio_domestic__gte=0, ratio_domestic__lte=1, ratio_other__gte=0, ratio_other__lte=1)
                & (Q(ratio_startup__isnull=True) | Q(ratio_startup__gte=0, ratio_startup__lte=1))
                & (Q(ratio_sme__isnull=True) | Q(ratio_sme__gte=0, ratio_sme__lte=1))
                & (Q(ratio_model__isnull=True) | Q(ratio_model__gte=0, ratio_model__lte=1)),
                name="voucher_program_ratios_0_1",
            ),
            models.CheckConstraint(
                condition=(Q(cap_per_application_minor__isnull=True) | Q(cap_per_application_minor__gt=0))
                & (Q(cap_per_firm_year_minor__isnull=True) | Q(cap_per_firm_year_minor__gt=0)),
                name="voucher_program_caps_positive",
            ),
        ]
        ordering = ["-valid_from", "name"]
        verbose_name = _("voucher programme")
        verbose_name_plural = _("voucher programmes")

    def __str__(self) -> str:
        return self.name

    @property
    def uncommitted_minor(self) -> int:
        return self.budget_minor - self.committed_minor


class ApplicationStatus(models.TextChoices):
    SUBMITTED = "submitted", _("Submitted")
    INFO_REQUESTED = "info_requested", _("More information requested")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")
    WITHDRAWN = "withdrawn", _("Withdrawn")


OPEN_APPLICATION_STATUSES = [ApplicationStatus.SUBMITTED, ApplicationStatus.INFO_REQUESTED]


class Application(PublicIdModel):
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="applications")
    buyer = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="voucher_applications")
    requested_minor = models.BigIntegerField(_("requested amount"))
    purpose = models.TextField(_("what the compute is for"))
    contract_reference = models.CharField(_("contract or lease reference"), max_length=200, blank=True)
    planned_usage = models.TextField(_("leases or contracts you will use"), blank=True)
    planned_providers = models.ManyToManyField("accounts.Organization", blank=True, related_name="+")
    status = models.CharField(max_length=20, choices=ApplicationStatus.choices, default=ApplicationStatus.SUBMITTED)
    info_request = models.TextField(blank=True)
    buyer_response = models.TextField(blank=True)
    decision_reason = models.TextField(blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(requested_minor__gt=0), name="voucher_application_amount_positive"),
            # One open application per buyer and programme: a double submit cannot create two.
            models.UniqueConstraint(
                fields=["program", "buyer"],
                condition=Q(status__in=["submitted", "info_requested"]),
                name="voucher_application_one_open",
            ),
        ]
        ordering = ["-submitted_at"]
        verbose_name = _("voucher application")
        verbose_name_plural = _("voucher applications")

    def __str__(self) -> str:
        return f"{self.buyer} -> {self.program}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_APPLICATION_STATUSES


def attachment_path(instance: Attachment, filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"vouchers/applications/{new_public_id().hex}.{suffix}"


class Attachment(PublicIdModel):
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=200)
    original_name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size_bytes = models.PositiveIntegerField()
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["uploaded_at"]

    def __str__(self) -> str:
        return self.original_name


class GrantStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    EXPIRED = "expired", _("Expired")
    REVOKED = "revoked", _("Revoked")


class Grant(PublicIdModel):
    """An approved application: the buyer may redeem up to ``amount_minor`` until ``expires_at`` (exclusive)."""

    application = models.OneToOneField(Application, on_delete=models.PROTECT, related_name="grant")
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="grants")
    buyer = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="voucher_grants")
    amount_minor = models.BigIntegerField(_("amount"))
    redeemed_minor = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    expires_at = models.DateTimeField(_("expires at"))
    status = models.CharField(max_length=10, choices=GrantStatus.choices, default=GrantStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.TextField(blank=True)
    # What closing (expiry or revocation) returned to the programme's budget.
    returned_minor = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="voucher_grant_amount_positive"),
            models.CheckConstraint(
                condition=Q(redeemed_minor__gte=0, redeemed_minor__lte=F("amount_minor")),
                name="voucher_grant_redeemed_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(status="active", closed_at__isnull=True)
                | (~Q(status="active") & Q(closed_at__isnull=False)),
                name="voucher_grant_closed_iff_not_active",
            ),
        ]
        indexes = [models.Index(fields=["buyer", "status", "expires_at"])]
        ordering = ["-created_at"]
        verbose_name = _("voucher grant")
        verbose_name_plural = _("voucher grants")

    def __str__(self) -> str:
        return f"{self.buyer} / {self.program}"

    @property
    def left_minor(self) -> int:
        return self.amount_minor - self.redeemed_minor


class FirmYearUsage(models.Model):
    """What a firm redeemed from a programme in a calendar year (Asia/Shanghai), with the cap copied in so that
    the database itself refuses any update that would pass it."""

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    buyer = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    year = models.PositiveSmallIntegerField()
    used_minor = models.BigIntegerField(default=0)
    cap_minor = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["program", "buyer", "year"], name="voucher_firm_year_unique"),
            models.CheckConstraint(
                condition=Q(used_minor__gte=0) & (Q(cap_minor__isnull=True) | Q(used_minor__lte=F("cap_minor"))),
                name="voucher_firm_year_within_cap",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.buyer} {self.year}: {self.used_minor}"


class SettlementStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    PAID = "paid", _("Paid")
    NOT_DUE = "not_due", _("Not due (released)")


class Redemption(PublicIdModel):
    """The subsidy one grant gives one invoice. Unique per (grant, invoice): asking twice returns the first."""

    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="redemptions")
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="redemptions")
    buyer = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    invoice_reference = models.CharField(max_length=100)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    eligible_minor = models.BigIntegerField()
    amount_minor = models.BigIntegerField()
    released_minor = models.BigIntegerField(default=0)
    year = models.PositiveSmallIntegerField()
    reserved_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.TextField(blank=True)
    settlement_mode = models.CharField(max_length=20, choices=SettlementMode.choices)
    settlement_status = models.CharField(
        max_length=10, choices=SettlementStatus.choices, default=SettlementStatus.PENDING
    )
    settled_at = models.DateTimeField(null=True, blank=True)
    fiscal_reference = models.CharField(_("fiscal reference"), max_length=100, blank=True)
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["grant", "invoice_reference"], name="voucher_redemption_once_per_invoice"),
            models.CheckConstraint(
                condition=Q(amount_minor__gt=0, eligible_minor__gte=F("amount_minor")),
                name="voucher_redemption_amount_positive",
            ),
            models.CheckConstraint(
                condition=Q(released_minor__gte=0, released_minor__lte=F("amount_minor")),
                name="voucher_redemption_released_within_amount",
            ),
            models.CheckConstraint(
                condition=~Q(settlement_status="paid") | Q(settled_at__isnull=False) & ~Q(fiscal_reference=""),
                name="voucher_redemption_paid_has_reference",
            ),
        ]
        indexes = [models.Index(fields=["program", "reserved_at"]), models.Index(fields=["buyer", "invoice_reference"])]
        ordering = ["-reserved_at"]
        verbose_name = _("voucher redemption")
        verbose_name_plural = _("voucher redemptions")

    def __str__(self) -> str:
        return f"{self.invoice_reference}: {self.net_minor}"

    @property
    def net_minor(self) -> int:
        return self.amount_minor - self.released_minor


class ProductKind(models.TextChoices):
    COMPUTE = "compute", _("Compute capacity")
    MODEL = "model", _("Model/API usage")


class RedemptionLine(models.Model):
    """One invoice line a redemption subsidised, with its metered evidence."""

    redemption = models.ForeignKey(Redemption, on_delete=models.CASCADE, related_name="lines")
    line_index = models.PositiveIntegerField()
    provider = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    amount_minor = models.BigIntegerField()
    ratio = _ratio_field(_("ratio"))
    subsidy_minor = models.BigIntegerField()
    chip_domestic = models.BooleanField()
    product = models.CharField(max_length=10, choices=ProductKind.choices, default=ProductKind.COMPUTE)
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["redemption", "line_index"], name="voucher_redemption_line_unique"),
            models.CheckConstraint(
                condition=Q(subsidy_minor__gte=0, subsidy_minor__lte=F("amount_minor")),
                name="voucher_redemption_line_within_amount",
            ),
        ]
        ordering = ["line_index"]

    def __str__(self) -> str:
        return f"line {self.line_index}: {self.subsidy_minor}"


class RedemptionRelease(models.Model):
    """A void or credit note that gave back (part of) a redemption. Unique per reference: a retry changes nothing."""

    redemption = models.ForeignKey(Redemption, on_delete=models.PROTECT, related_name="releases")
    reference = models.CharField(max_length=100)
    amount_minor = models.BigIntegerField()
    reason = models.TextField(blank=True)
    released_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["redemption", "reference"], name="voucher_release_once_per_reference"),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="voucher_release_amount_positive"),
        ]
        ordering = ["released_at"]

    def __str__(self) -> str:
        return f"{self.reference}: {self.amount_minor}"


class LineRefusal(models.Model):
    """An invoice line a grant refused for a reason a reviewer should see (related party, provider not listed,
    stacking, ...). Kept whether or not the rest of the invoice was subsidised: an invoice refused outright
    leaves no redemption, and it is the case a reviewer most needs to see. Unique per (grant, invoice, line,
    reason): asking for the invoice's subsidy again stores nothing twice."""

    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="refusals")
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="refusals")
    buyer = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    invoice_reference = models.CharField(max_length=100)
    line_index = models.PositiveIntegerField()
    code = models.CharField(max_length=40)
    provider = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    amount_minor = models.BigIntegerField()
    refused_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["grant", "invoice_reference", "line_index", "code"], name="voucher_line_refusal_once"
            ),
        ]
        indexes = [models.Index(fields=["program", "refused_at"])]
        ordering = ["-refused_at", "-id"]

    def __str__(self) -> str:
        return f"{self.invoice_reference} line {self.line_index}: {self.code}"

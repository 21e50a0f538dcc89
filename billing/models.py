"""Models of the billing app (DESIGN.md §4.5): ledger, invoices, payments, webhooks, payouts, reconciliation.

The database holds the money invariants, not the services:
- every journal entry balances per currency (a deferred constraint trigger checks it at commit);
- postings and entries are append-only (UPDATE and DELETE are refused by a trigger);
- an account's cached balance moves only through the posting trigger, and a guarded account's CHECK refuses a
  negative balance, so concurrent postings that would overdraw it fail whatever the services did;
- a finalized invoice's lines cannot change; finalized numbers are unique per series and gap-free (the series
  counter is taken under a row lock in the finalizing transaction);
- one open payment attempt per invoice, one Stripe event applied once, one payout per (invoice, owner).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from core.ids import PublicIdModel
from core.money import CURRENCY_CHOICES, DEFAULT_CURRENCY, RATE_DECIMAL_PLACES, RATE_MAX_DIGITS


class AccountKind(models.TextChoices):
    BUYER_RECEIVABLE = "buyer_receivable", _("Buyer receivable")
    VOUCHER_RECEIVABLE = "voucher_receivable", _("Voucher issuer receivable")
    PROVIDER_PENDING = "provider_pending", _("Provider payable (awaiting payment)")
    PROVIDER_PAYABLE = "provider_payable", _("Provider payable (available)")
    # A credit note on an invoice whose payout was already transferred: the provider owes it back, and it is
    # taken from their next payouts.
    PROVIDER_RECEIVABLE = "provider_receivable", _("Provider receivable (credited after payout)")
    PLATFORM_FEE = "platform_fee", _("Platform fee revenue")
    VAT_PAYABLE = "vat_payable", _("VAT payable")
    STRIPE_CASH = "stripe_cash", _("Cash at Stripe")
    BANK_CASH = "bank_cash", _("Cash at bank")


# Debit-normal accounts (assets) show debits as positive balances; the others are credit-normal.
DEBIT_NORMAL = frozenset(
    {
        AccountKind.BUYER_RECEIVABLE,
        AccountKind.VOUCHER_RECEIVABLE,
        AccountKind.PROVIDER_RECEIVABLE,
        AccountKind.STRIPE_CASH,
        AccountKind.BANK_CASH,
    }
)
# Balances that must never go below zero: we never pay a provider more than is available to them.
GUARDED = frozenset({AccountKind.PROVIDER_PENDING, AccountKind.PROVIDER_PAYABLE})


class LedgerAccount(models.Model):
    """One account per (kind, organisation or platform, currency). ``balance_minor`` is kept by the posting
    trigger, signed so that the account's normal side is positive."""

    kind = models.CharField(_("kind"), max_length=24, choices=AccountKind.choices)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_accounts"
    )
    currency = models.CharField(_("currency"), max_length=3, choices=CURRENCY_CHOICES, default=DEFAULT_CURRENCY)
    debit_normal = models.BooleanField()
    guard_non_negative = models.BooleanField(default=False)
    balance_minor = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "organization", "currency"], name="ledger_account_unique", nulls_distinct=False
            ),
            models.CheckConstraint(
                condition=Q(guard_non_negative=False) | Q(balance_minor__gte=0), name="ledger_guarded_non_negative"
            ),
        ]
        ordering = ["kind", "organization_id", "currency"]
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")

    def __str__(self) -> str:
        owner = self.organization.name if self.organization is not None else "platform"
        return f"{self.get_kind_display()} · {owner} · {self.currency}"


class JournalEntry(PublicIdModel):
    """One money movement. ``idempotency_key`` makes every posting service safe to retry."""

    kind = models.CharField(max_length=40)
    idempotency_key = models.CharField(max_length=200, unique=True)
    memo = models.CharField(max_length=300, blank=True)
    reverses = models.OneToOneField("self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversed_by")
    invoice = models.ForeignKey("Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="entries")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("journal entry")
        verbose_name_plural = _("journal entries")

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}"


class Posting(models.Model):
    """A signed amount on one account: debit positive, credit negative. Append-only."""

    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="postings")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="postings")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    amount_minor = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(amount_minor=0), name="posting_not_zero")]
        ordering = ["id"]
        verbose_name = _("posting")
        verbose_name_plural = _("postings")

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount_minor:+d} {self.currency}"


class LedgerCheck(models.Model):
    """The nightly proof: every balance recomputed from postings, every entry re-summed."""

    ran_at = models.DateTimeField(auto_now_add=True, db_index=True)
    accounts_checked = models.PositiveIntegerField()
    entries_checked = models.PositiveIntegerField()
    mismatches = models.JSONField(default=list)

    class Meta:
        ordering = ["-ran_at"]
        verbose_name = _("ledger check")
        verbose_name_plural = _("ledger checks")

    def __str__(self) -> str:
        return f"{self.ran_at:%Y-%m-%d %H:%M} ({len(self.mismatches)} mismatches)"


class BillingProfile(models.Model):
    """Per-organisation billing settings: the provider's platform fee, the buyer's invoicing preferences."""

    organization = models.OneToOneField("accounts.Organization", on_delete=models.CASCADE, related_name="billing")
    platform_fee_rate = models.DecimalField(
        _("platform fee rate"), max_digits=RATE_MAX_DIGITS, decimal_places=RATE_DECIMAL_PLACES, null=True, blank=True
    )
    invoice_at_lease_end = models.BooleanField(_("also invoice at the end of each lease"), default=False)
    invoice_language = models.CharField(
        _("invoice language"), max_length=8, choices=[("zh-hans", "中文"), ("en", "English")], default="zh-hans"
    )
    stripe_account_id = models.CharField(_("Stripe connected account"), max_length=64, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(platform_fee_rate__isnull=True) | Q(platform_fee_rate__gte=0, platform_fee_rate__lt=1),
                name="billing_fee_rate_range",
            )
        ]
        verbose_name = _("billing profile")
        verbose_name_plural = _("billing profiles")

    def __str__(self) -> str:
        return str(self.organization)


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", pgettext_lazy("invoice status", "Draft")
    FINALIZED = "finalized", pgettext_lazy("invoice status", "Open")
    PAID = "paid", pgettext_lazy("invoice status", "Paid")
    VOID = "void", pgettext_lazy("invoice status", "Void")


class InvoiceSeries(models.Model):
    """A gap-free number series (e.g. SL-2026 for invoices, CN-2026 for credit notes)."""

    code = models.CharField(max_length=20, unique=True)
    next_number = models.PositiveIntegerField(default=1)

    class Meta:
        verbose_name = _("number series")
        verbose_name_plural = _("number series")

    def __str__(self) -> str:
        return f"{self.code} (next {self.next_number})"


class Invoice(PublicIdModel):
    buyer = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="invoices")
    currency = models.CharField(_("currency"), max_length=3, choices=CURRENCY_CHOICES, default=DEFAULT_CURRENCY)
    period_start = models.DateTimeField(_("period from"))
    period_end = models.DateTimeField(_("period until"))
    # A lease-end invoice covers one lease; the monthly invoice of the same period then skips that lease.
    lease_public_id = models.UUIDField(null=True, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    series = models.ForeignKey(InvoiceSeries, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    number = models.PositiveIntegerField(null=True, blank=True)
    number_display = models.CharField(_("number"), max_length=40, blank=True)
    subtotal_minor = models.BigIntegerField(default=0)
    vat_rate = models.DecimalField(max_digits=6, decimal_places=4)
    vat_minor = models.BigIntegerField(default=0)
    total_minor = models.BigIntegerField(default=0)
    subsidy_minor = models.BigIntegerField(default=0)  # deducted from the amount due
    subsidy_reimbursed_minor = models.BigIntegerField(default=0)  # paid back to the buyer later by the issuer
    amount_due_minor = models.BigIntegerField(default=0)
    amount_paid_minor = models.BigIntegerField(default=0)
    amount_credited_minor = models.BigIntegerField(default=0)
    energy_wh = models.BigIntegerField(default=0)
    seller_details = models.JSONField(default=dict, blank=True)
    buyer_details = models.JSONField(default=dict, blank=True)
    payouts_released = models.BooleanField(default=False)
    computed_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "currency", "period_start", "lease_public_id"],
                condition=~Q(status="void"),
                name="invoice_one_per_buyer_period",
                nulls_distinct=False,
            ),
            models.UniqueConstraint(fields=["series", "number"], name="invoice_number_unique"),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="invoice_period_order"),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(number__isnull=False, finalized_at__isnull=False),
                name="invoice_finalized_has_number",
            ),
            models.CheckConstraint(condition=Q(total_minor=F("subtotal_minor") + F("vat_minor")), name="invoice_total"),
            models.CheckConstraint(
                condition=Q(amount_due_minor=F("total_minor") - F("subsidy_minor")), name="invoice_amount_due"
            ),
            models.CheckConstraint(condition=Q(amount_paid_minor__gte=0), name="invoice_paid_non_negative"),
        ]
        indexes = [models.Index(fields=["buyer", "status"]), models.Index(fields=["status", "period_end"])]
        verbose_name = _("invoice")
        verbose_name_plural = _("invoices")

    def __str__(self) -> str:
        return self.number_display or f"draft {self.period_start:%Y-%m}"

    @property
    def period_last_day(self) -> datetime:
        """The period's last day, for display (the period itself is half-open)."""
        return self.period_end - timedelta(days=1)

    @property
    def outstanding_minor(self) -> int:
        return self.amount_due_minor - self.amount_paid_minor - self.amount_credited_minor


class LineKind(models.TextChoices):
    CAPACITY = "capacity", _("Reserved capacity")
    SLA_CREDIT = "sla_credit", _("SLA credit")
    DISPUTE_CREDIT = "dispute_credit", _("Dispute credit")
    TOKENS_IN = "tokens_in", _("Input tokens")
    TOKENS_OUT = "tokens_out", _("Output tokens")
    ADJUSTMENT = "adjustment", _("Adjustment for late usage")
    SUBSIDY = "subsidy", _("Compute voucher subsidy")


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=LineKind.choices)
    description = models.CharField(max_length=300)
    subject_public_id = models.UUIDField(null=True, blank=True)  # the lease or token contract
    provider = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, null=True, related_name="+")
    pool = models.ForeignKey("marketplace.Pool", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    quantity = models.DecimalField(max_digits=24, decimal_places=6)
    unit = models.CharField(max_length=20)
    unit_price = models.DecimalField(max_digits=RATE_MAX_DIGITS, decimal_places=RATE_DECIMAL_PLACES)
    amount_minor = models.BigIntegerField()
    accelerator_hours = models.DecimalField(max_digits=24, decimal_places=6, default=0)
    scu_hours = models.DecimalField(max_digits=24, decimal_places=6, default=0)
    energy_wh = models.BigIntegerField(default=0)
    chip_domestic = models.BooleanField(default=False)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["invoice_id", "position"]
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position_unique")]
        verbose_name = _("invoice line")
        verbose_name_plural = _("invoice lines")

    def __str__(self) -> str:
        return f"{self.position}. {self.description}"


class CreditNote(PublicIdModel):
    """A correction in the buyer's favour (a dispute, a late credit). Numbered in its own gap-free series."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    series = models.ForeignKey(InvoiceSeries, on_delete=models.PROTECT, related_name="+")
    number = models.PositiveIntegerField()
    number_display = models.CharField(max_length=40)
    idempotency_key = models.CharField(max_length=200, unique=True)
    net_minor = models.BigIntegerField()
    vat_minor = models.BigIntegerField()
    total_minor = models.BigIntegerField()
    # The part of the credit the voucher had paid (given back to the grant), and the buyer's part of it.
    subsidy_released_minor = models.BigIntegerField(default=0)
    buyer_credit_minor = models.BigIntegerField()
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["series", "number"], name="credit_note_number_unique"),
            models.CheckConstraint(
                condition=Q(buyer_credit_minor=F("total_minor") - F("subsidy_released_minor")),
                name="credit_note_buyer_part",
            ),
            models.CheckConstraint(condition=Q(net_minor__gt=0, vat_minor__gte=0), name="credit_note_positive"),
            models.CheckConstraint(condition=Q(total_minor=F("net_minor") + F("vat_minor")), name="credit_note_total"),
        ]
        verbose_name = _("credit note")
        verbose_name_plural = _("credit notes")

    def __str__(self) -> str:
        return self.number_display


class PaymentStatus(models.TextChoices):
    STARTED = "started", _("Started")
    REQUIRES_PAYMENT = "requires_payment", _("Waiting for the card")
    PROCESSING = "processing", _("Processing")
    SUCCEEDED = "succeeded", _("Paid")
    FAILED = "failed", _("Failed")
    CANCELED = "canceled", _("Cancelled")


OPEN_PAYMENT_STATUSES = (PaymentStatus.STARTED, PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.PROCESSING)


class Payment(PublicIdModel):
    """One payment attempt: a Stripe PaymentIntent created with ``idempotency_key``.

    The row is committed before Stripe is called, so a worker killed between the call and the next commit
    retries with the same key and Stripe returns the same intent: one charge."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    attempt = models.PositiveIntegerField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    stripe_payment_intent_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    client_secret = models.CharField(max_length=200, blank=True)
    amount_minor = models.BigIntegerField()
    amount_refunded_minor = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.STARTED)
    failure_message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "attempt"], name="payment_attempt_unique"),
            models.UniqueConstraint(
                fields=["invoice"], condition=Q(status__in=OPEN_PAYMENT_STATUSES), name="payment_one_open_per_invoice"
            ),
            models.UniqueConstraint(
                fields=["invoice"], condition=Q(status="succeeded"), name="payment_one_success_per_invoice"
            ),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_refunded_minor__gte=0, amount_refunded_minor__lte=F("amount_minor")),
                name="payment_refund_range",
            ),
        ]
        verbose_name = _("payment")
        verbose_name_plural = _("payments")

    def __str__(self) -> str:
        return f"{self.invoice} #{self.attempt} {self.status}"


class Refund(models.Model):
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    stripe_refund_id = models.CharField(max_length=64, unique=True)
    amount_minor = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount_minor__gt=0), name="refund_amount_positive")]
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")

    def __str__(self) -> str:
        return self.stripe_refund_id


class StripeEvent(models.Model):
    """A verified webhook, stored once by its Stripe id (replays are no-ops) and applied by a task."""

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=100, blank=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("Stripe event")
        verbose_name_plural = _("Stripe events")

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class WebhookRejection(models.Model):
    """A webhook refused for its signature or timestamp: logged for staff, never applied."""

    received_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=200)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    body_sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("rejected webhook")
        verbose_name_plural = _("rejected webhooks")

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M} {self.reason}"


class PayoutStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    PAID = "paid", _("Transferred")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled (invoice voided)")


class Payout(PublicIdModel):
    """One revenue-share owner's part of one paid invoice, sent as a Stripe Connect transfer."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payouts")
    owner = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="payouts")
    idempotency_key = models.CharField(max_length=200, unique=True)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    gross_minor = models.BigIntegerField()  # the owner's share of the invoice lines, before the fee
    fee_minor = models.BigIntegerField()
    amount_minor = models.BigIntegerField()  # the owner's net: gross - fee
    # Taken back from this payout for credit notes on earlier invoices already transferred (the owner's provider
    # receivable); decided under lock before the transfer, which sends amount - clawback. Null: not decided yet.
    clawback_minor = models.BigIntegerField(null=True, blank=True)
    breakdown = models.JSONField(default=list)  # per pool: line amounts, share %, fee rate
    status = models.CharField(max_length=10, choices=PayoutStatus.choices, default=PayoutStatus.PENDING)
    stripe_transfer_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    failure_message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "owner"], name="payout_once_per_invoice_owner"),
            models.CheckConstraint(condition=Q(amount_minor=F("gross_minor") - F("fee_minor")), name="payout_net"),
            models.CheckConstraint(condition=Q(amount_minor__gte=0, fee_minor__gte=0), name="payout_non_negative"),
            models.CheckConstraint(
                condition=Q(clawback_minor__isnull=True)
                | Q(clawback_minor__gte=0, clawback_minor__lte=F("amount_minor")),
                name="payout_clawback_within_amount",
            ),
        ]
        verbose_name = _("payout")
        verbose_name_plural = _("payouts")

    def __str__(self) -> str:
        return f"{self.owner} {self.amount_minor} {self.currency}"

    @property
    def transfer_minor(self) -> int:
        """What is (or will be) sent to the owner."""
        return self.amount_minor - (self.clawback_minor or 0)


class ReconciliationRun(models.Model):
    ran_at = models.DateTimeField(auto_now_add=True, db_index=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    checked = models.JSONField(default=dict)  # counts per kind of object compared
    differences = models.JSONField(default=list)  # [{kind, cause, stripe_id, reference, stripe_minor, ours_minor}]

    class Meta:
        ordering = ["-ran_at"]
        verbose_name = _("reconciliation run")
        verbose_name_plural = _("reconciliation runs")

    def __str__(self) -> str:
        return f"{self.ran_at:%Y-%m-%d %H:%M} ({len(self.differences)} differences)"

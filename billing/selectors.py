"""Reads of billing: what rating needs (from marketplace and metering), invoices, payouts, the ledger."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.http import Http404

from accounts.models import Organization
from billing import rating
from billing.models import (
    BillingProfile,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    JournalEntry,
    LedgerAccount,
    LedgerCheck,
    Payment,
    Payout,
    Posting,
    ReconciliationRun,
)
from core.timeutils import Window
from marketplace import selectors as market
from metering import selectors as metering


@dataclass(frozen=True)
class Owner:
    organization_id: int
    share_pct: Decimal


def pool_owners(pool_ids: Iterable[int]) -> dict[int, list[Owner]]:
    """Each pool's revenue-share owners (合作分成); a pool without shares belongs wholly to its provider."""
    shares = market.pool_shares(pool_ids=list(pool_ids))
    return {pool_id: [Owner(org, pct) for org, pct in owners] for pool_id, owners in shares.items()}


def fee_rates(provider_ids: Iterable[int]) -> dict[int, Decimal]:
    default = Decimal(settings.BILLING_DEFAULT_FEE_RATE)
    ids = list(provider_ids)
    rates: dict[int, Decimal] = dict.fromkeys(ids, default)
    for org_id, rate in BillingProfile.objects.filter(
        organization_id__in=ids, platform_fee_rate__isnull=False
    ).values_list("organization_id", "platform_fee_rate"):
        rates[org_id] = rate if rate is not None else default
    return rates


@dataclass
class BuyerCharges:
    leases: list[rating.LeaseCharge] = field(default_factory=list)
    tokens: list[rating.TokenCharge] = field(default_factory=list)


def period_charges(
    *, window: Window, buyer_ids: Collection[int] | None = None, lease_public_ids: Collection[UUID] | None = None
) -> dict[tuple[int, str], BuyerCharges]:
    """What every buyer (or the given ones) is charged for in ``window``, keyed by (buyer id, currency).

    A few set-based reads whatever the number of leases and contracts: their terms, and metering's period usage
    (SLA credit, dispute credit, energy; metered tokens) for all of them at once. Leases invoiced on their own at
    their end are left out of the monthly invoices; ``lease_public_ids`` asks for just those leases."""
    span = (window.start, window.end)
    if lease_public_ids is not None:
        leases = market.lease_billing_terms(window=span, public_ids=lease_public_ids)
        contracts = []
    else:
        leases = market.lease_billing_terms(
            window=span, buyer_ids=buyer_ids, exclude_public_ids=leases_invoiced_alone()
        )
        contracts = market.token_contract_billing_terms(window=span, buyer_ids=buyer_ids)
    usage = metering.lease_period_usage(lease_public_ids=[lease.public_id for lease in leases], window=window)
    tokens = metering.contract_period_usage(contract_public_ids=[c.public_id for c in contracts], window=window)
    charges: dict[tuple[int, str], BuyerCharges] = defaultdict(BuyerCharges)
    for lease in leases:
        used = usage.get(lease.public_id)
        overlap = Window(max(lease.start, window.start), min(lease.end, window.end))
        charges[(lease.buyer_id, lease.currency)].leases.append(
            rating.LeaseCharge(
                lease_public_id=lease.public_id,
                provider_id=lease.provider_id,
                pool_id=lease.pool_id,
                pool_name=lease.pool_name,
                accelerator_model=lease.accelerator_model,
                chip_domestic=lease.chip_domestic,
                currency=lease.currency,
                price_per_accelerator_hour=lease.price,
                scu_per_accelerator_hour=lease.scu_per_accelerator_hour,
                contracted_accelerator_seconds=lease.accelerators * overlap.seconds,
                sla_credit_ratio=used.sla_credit_ratio if used else Decimal(0),
                dispute_credit_accelerator_seconds=used.dispute_credit_accelerator_seconds if used else 0,
                energy_wh=used.energy_wh if used else 0,
                availability=used.availability if used else None,
            )
        )
    for contract in contracts:
        metered = tokens.get(contract.public_id)
        if metered is None or not (metered.tokens_in or metered.tokens_out):
            continue
        charges[(contract.buyer_id, contract.currency)].tokens.append(
            rating.TokenCharge(
                contract_public_id=contract.public_id,
                provider_id=contract.provider_id,
                pool_id=contract.pool_id,
                model_name=contract.model_name,
                chip_domestic=contract.chip_domestic,
                currency=contract.currency,
                price_per_million_in=contract.price_input,
                price_per_million_out=contract.price_output,
                tokens_in=metered.tokens_in,
                tokens_out=metered.tokens_out,
            )
        )
    return charges


def lease_terms_for_invoice(public_id: UUID) -> market.LeaseBillingTerms | None:
    whenever = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
    found = market.lease_billing_terms(window=whenever, public_ids=[public_id])
    return found[0] if found else None


def leases_invoiced_alone() -> list[UUID]:
    invoiced = Invoice.objects.filter(lease_public_id__isnull=False).exclude(status=InvoiceStatus.VOID)
    return [public_id for public_id in invoiced.values_list("lease_public_id", flat=True) if public_id]


def lease_end_invoicing_due(*, ended_before: datetime) -> list[tuple[UUID, int]]:
    """Leases that ended, of buyers who asked for an invoice at each lease's end, not invoiced alone yet."""
    buyers = BillingProfile.objects.filter(invoice_at_lease_end=True).values_list("organization_id", flat=True)
    done = set(leases_invoiced_alone())
    return [
        (public_id, buyer_id)
        for public_id, buyer_id in market.leases_ended_for_billing(ended_before=ended_before, buyer_ids=buyers)
        if public_id not in done
    ]


def lease_invoice_start(*, buyer_id: int, currency: str, lease_start: datetime) -> datetime:
    """Where a lease-end invoice starts: after the last monthly invoice already issued that covered the lease."""
    issued_until = (
        Invoice.objects.filter(
            buyer_id=buyer_id,
            currency=currency,
            lease_public_id__isnull=True,
            status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAID],
            period_end__gt=lease_start,
        )
        .order_by("-period_end")
        .values_list("period_end", flat=True)
        .first()
    )
    return max(lease_start, issued_until) if issued_until else lease_start


@dataclass(frozen=True)
class InvoicedSubject:
    provider_id: int | None
    pool_id: int | None
    chip_domestic: bool
    amount_minor: int  # on the invoice itself plus adjustments of it on later finalized invoices


def invoiced_by_subject(invoices: list[Invoice]) -> dict[tuple[int, UUID], InvoicedSubject]:
    """What was invoiced per (invoice, lease or contract), counting adjustments of those invoices that later
    finalized invoices carry; two queries."""
    issued = [InvoiceStatus.FINALIZED, InvoiceStatus.PAID]
    by_public_id = {str(invoice.public_id): invoice.pk for invoice in invoices}
    totals: dict[tuple[int, UUID], InvoicedSubject] = {}

    def add(
        invoice_id: int, subject: UUID | None, provider: int | None, pool: int | None, domestic: bool, amount: int
    ) -> None:
        if subject is None:
            return
        known = totals.get((invoice_id, subject))
        total = amount + (known.amount_minor if known else 0)
        totals[(invoice_id, subject)] = InvoicedSubject(provider, pool, domestic, total)

    rows = (
        InvoiceLine.objects.filter(invoice__in=invoices, subject_public_id__isnull=False)
        .exclude(kind__in=["subsidy", "adjustment"])
        .values_list("invoice_id", "subject_public_id", "provider_id", "pool_id", "chip_domestic", "amount_minor")
    )
    for invoice_id, subject, provider, pool, domestic, amount in rows:
        add(invoice_id, subject, provider, pool, domestic, amount)
    later = InvoiceLine.objects.filter(
        kind="adjustment", invoice__status__in=issued, details__adjusts__in=list(by_public_id)
    ).values_list("details", "subject_public_id", "provider_id", "pool_id", "chip_domestic", "amount_minor")
    for details, subject, provider, pool, domestic, amount in later:
        add(by_public_id[details["adjusts"]], subject, provider, pool, domestic, amount)
    return totals


def invoices_issued_before(*, before: datetime, since: datetime, buyer_ids: Collection[int] | None) -> list[Invoice]:
    """Monthly invoices issued for periods inside [since, before), which late usage may adjust."""
    invoices = Invoice.objects.filter(
        status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAID],
        lease_public_id__isnull=True,
        period_start__gte=since,
        period_end__lte=before,
    )
    if buyer_ids is not None:
        invoices = invoices.filter(buyer_id__in=buyer_ids)
    return list(invoices.order_by("period_start", "id"))


# --- Invoices ------------------------------------------------------------------------------------------

INVOICE_SORTS = {
    "period": "period_start",
    "-period": "-period_start",
    "amount": "total_minor",
    "-amount": "-total_minor",
    "number": "number_display",
    "-number": "-number_display",
}


def invoice_list(buyer: Organization, *, status: str | None = None, sort: str = "-period") -> QuerySet[Invoice]:
    invoices = Invoice.objects.filter(buyer=buyer).exclude(status=InvoiceStatus.VOID, number__isnull=True)
    if status:
        invoices = invoices.filter(status=status)
    return invoices.order_by(INVOICE_SORTS.get(sort, "-period_start"), "-id")


def invoice_get(buyer: Organization, public_id: UUID | str) -> Invoice:
    try:
        return Invoice.objects.prefetch_related("lines", "payments", "credit_notes").get(
            buyer=buyer, public_id=public_id
        )
    except (Invoice.DoesNotExist, ValueError, TypeError):
        raise Http404 from None


def invoice_get_any(public_id: UUID | str) -> Invoice:
    try:
        return Invoice.objects.get(public_id=public_id)
    except (Invoice.DoesNotExist, ValueError, TypeError):
        raise Http404 from None


def billing_profile(organization: Organization) -> BillingProfile:
    """The organisation's billing settings (unsaved defaults when it has none)."""
    return BillingProfile.objects.filter(organization=organization).first() or BillingProfile(organization=organization)


def payment_get(buyer: Organization, public_id: UUID | str) -> Payment:
    try:
        return Payment.objects.select_related("invoice").get(invoice__buyer=buyer, public_id=public_id)
    except (Payment.DoesNotExist, ValueError, TypeError):
        raise Http404 from None


def spend_by_month(buyer: Organization) -> dict[str, list[Any]]:
    """Finalized spend per month (total incl. VAT, and the subsidy), for the buyer's chart."""
    rows = (
        Invoice.objects.filter(buyer=buyer, status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAID])
        .annotate(month=TruncMonth("period_start"))
        .values("month")
        .annotate(total=Sum("total_minor"), subsidy=Sum("subsidy_minor"))
        .order_by("month")
    )
    return {
        "months": [f"{row['month']:%Y-%m}" for row in rows],
        "total_minor": [row["total"] for row in rows],
        "subsidy_minor": [row["subsidy"] for row in rows],
    }


def spend_by_provider(buyer: Organization) -> list[dict[str, Any]]:
    rows = (
        Invoice.objects.filter(buyer=buyer, status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAID])
        .values("lines__provider__name")
        .annotate(amount=Sum("lines__amount_minor", filter=~Q(lines__kind="subsidy")))
        .order_by("-amount")
    )
    return [{"provider": row["lines__provider__name"], "amount_minor": row["amount"]} for row in rows if row["amount"]]


# --- Provider side -------------------------------------------------------------------------------------


def payout_list(owner: Organization) -> QuerySet[Payout]:
    return Payout.objects.filter(owner=owner).select_related("invoice").order_by("-created_at", "-id")


def fee_statement(owner: Organization) -> list[Any]:
    """Per month of the invoices' periods: gross share, platform fee and net, with counts."""
    rows = (
        Payout.objects.filter(owner=owner)
        .exclude(status="cancelled")
        .annotate(month=TruncMonth("invoice__period_start"))
        .values("month", "currency")
        .annotate(gross=Sum("gross_minor"), fee=Sum("fee_minor"), net=Sum("amount_minor"), invoices=Count("id"))
        .order_by("-month")
    )
    return list(rows)


def revenue_share_breakdown(owner: Organization) -> list[dict[str, Any]]:
    """Per pool: the owner's gross share across payouts (from each payout's stored breakdown)."""
    totals: dict[str, dict[str, Any]] = {}
    for breakdown in Payout.objects.filter(owner=owner).exclude(status="cancelled").values_list("breakdown", flat=True):
        for part in breakdown:
            row = totals.setdefault(
                part["pool"], {"pool": part["pool"], "share_pct": part["share_pct"], "gross_minor": 0, "fee_minor": 0}
            )
            row["gross_minor"] += part["gross_minor"]
            row["fee_minor"] += part["fee_minor"]
    return sorted(totals.values(), key=lambda row: -row["gross_minor"])


def provider_balances(owner: Organization) -> dict[str, int]:
    balances = dict(
        LedgerAccount.objects.filter(organization=owner, kind__in=["provider_pending", "provider_payable"]).values_list(
            "kind", "balance_minor"
        )
    )
    return {
        "pending_minor": balances.get("provider_pending", 0),
        "available_minor": balances.get("provider_payable", 0),
    }


# --- Staff ---------------------------------------------------------------------------------------------


def ledger_accounts() -> QuerySet[LedgerAccount]:
    return LedgerAccount.objects.select_related("organization").order_by("kind", "organization__name", "currency")


def ledger_account_get(pk: int) -> LedgerAccount:
    try:
        return LedgerAccount.objects.select_related("organization").get(pk=pk)
    except (LedgerAccount.DoesNotExist, ValueError):
        raise Http404 from None


def account_postings(account: LedgerAccount) -> QuerySet[Posting]:
    return account.postings.select_related("entry").order_by("-entry__created_at", "-id")


def entry_list() -> QuerySet[JournalEntry]:
    return JournalEntry.objects.prefetch_related("postings__account__organization").order_by("-created_at", "-id")


def ledger_check_latest() -> LedgerCheck | None:
    return LedgerCheck.objects.order_by("-ran_at").first()


def reconciliation_latest() -> ReconciliationRun | None:
    return ReconciliationRun.objects.order_by("-ran_at").first()


def invoice_period_open(at: datetime) -> Window:
    return Window.month(at.year, at.month)


def receivables_by_buyer() -> dict[int, tuple[int, int, str]]:
    """Per buyer: (ledger receivable balance, what their finalized invoices still owe, name)."""
    owed = dict(
        Invoice.objects.filter(status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAID])
        .values("buyer_id")
        .annotate(owed=Sum(F("amount_due_minor") - F("amount_paid_minor") - F("amount_credited_minor")))
        .values_list("buyer_id", "owed")
    )
    ledger = dict(
        LedgerAccount.objects.filter(kind="buyer_receivable", organization__isnull=False).values_list(
            "organization_id", "balance_minor"
        )
    )
    names = dict(Organization.objects.filter(pk__in=set(owed) | set(ledger)).values_list("pk", "name"))
    return {pk: (ledger.get(pk, 0), owed.get(pk, 0), names.get(pk, "")) for pk in sorted(set(owed) | set(ledger))}

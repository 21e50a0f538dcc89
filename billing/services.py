"""Billing writes: invoice drafts and finalization, voids and credit notes, payments, webhooks, payouts,
reconciliation. Each service owns its transaction; money moves only through ``billing.ledger``.

Ledger entries (amounts in the invoice's currency, D = debit, C = credit):
- finalize: D buyer receivable (amount due), D voucher receivable of each issuer (subsidy deducted at
  checkout), C VAT payable, C provider pending of each revenue-share owner (share net of fee), C platform fee;
- payment received: D cash at Stripe, C buyer receivable;
- invoice settled (paid in full): D provider pending, C provider payable, per owner (payouts may go);
- payout transferred: D provider payable, C cash at Stripe;
- refund: D buyer receivable, C cash at Stripe;
- voucher settled by the issuer: D cash at bank, C voucher receivable;
- void and credit note: the finalize entry reversed (whole or in proportion).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from billing import rating, selectors
from billing import stripe_gateway as gateway
from billing.ledger import Leg, credit, debit, ledger_post
from billing.models import (
    OPEN_PAYMENT_STATUSES,
    AccountKind,
    BillingProfile,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceSeries,
    InvoiceStatus,
    JournalEntry,
    LedgerAccount,
    Payment,
    PaymentStatus,
    Payout,
    PayoutStatus,
    ReconciliationRun,
    Refund,
    StripeEvent,
    WebhookRejection,
)
from core.audit import audit_record
from core.errors import ApplicationError, Conflict
from core.money import allocate_minor
from core.outbox import outbox_enqueue
from core.timeutils import Window, ensure_utc, utcnow
from vouchers import selectors as voucher_selectors
from vouchers import services as vouchers
from vouchers.rules import PRODUCT_COMPUTE, PRODUCT_MODEL, EligibleLine

logger = logging.getLogger(__name__)

SUBSIDY_DEDUCTED_MODES = frozenset({"deduct_at_checkout", "pay_provider"})


# --- Drafts ----------------------------------------------------------------------------------------------


def _vat_rate() -> Decimal:
    return Decimal(settings.BILLING_VAT_RATE)


def _line_rows(invoice: Invoice, lines: list[rating.RatedLine]) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=line.kind,
            description=_describe(line),
            subject_public_id=line.subject_public_id,
            provider_id=line.provider_id,
            pool_id=line.pool_id,
            quantity=line.quantity,
            unit=line.unit,
            unit_price=line.unit_price,
            amount_minor=line.amount_minor,
            accelerator_hours=line.accelerator_hours,
            scu_hours=line.scu_hours,
            energy_wh=line.energy_wh,
            chip_domestic=line.chip_domestic,
            details={**line.details, "params": line.description_params},
        )
        for position, line in enumerate(lines, start=1)
    ]


def _describe(line: rating.RatedLine) -> str:
    """The line's text as stored (English, neutral); pages and PDFs translate by ``kind`` and ``params``."""
    params = line.description_params
    match line.kind:
        case "capacity":
            return f"{params.get('model', '')} · {params.get('pool', '')}"[:300]
        case "sla_credit":
            return f"SLA credit {params.get('ratio_pct', '')}% (availability {params.get('availability_pct', '')}%)"
        case "tokens_in" | "tokens_out":
            return f"{params.get('model', '')} {line.kind.replace('_', ' ')}"
        case "adjustment":
            return f"Adjustment to {params.get('reference', '')}"
        case _:
            return str(params.get("text", line.kind))[:300]


def invoice_run(*, window: Window, buyer_ids: list[int] | None = None, at: datetime | None = None) -> list[Invoice]:
    """Rate every buyer's usage of ``window`` and write their draft invoices, set-based: a handful of statements
    whatever the number of buyers (the monthly run covers them all at once).

    Idempotent: drafts are recomputed in place; an invoice already finalized for the period is left as issued
    (late usage reaches the buyer as an adjustment on a later invoice). The drafts are locked in id order for the
    rewrite, so concurrent runs and finalizations queue instead of interleaving."""
    at = ensure_utc(at or utcnow())
    charges = selectors.period_charges(window=window, buyer_ids=buyer_ids)
    adjustments = _late_usage_adjustments(window=window, buyer_ids=buyer_ids)
    rated = {
        key: rating.rate_period(
            charges[key].leases if key in charges else [],
            charges[key].tokens if key in charges else [],
            adjustments.get(key, []),
        )
        for key in charges.keys() | adjustments.keys()
    }
    period = Invoice.objects.filter(period_start=window.start, lease_public_id__isnull=True).exclude(
        status=InvoiceStatus.VOID
    )
    if buyer_ids is not None:
        period = period.filter(buyer_id__in=buyer_ids)
    vat_rate = _vat_rate()
    with transaction.atomic():
        Invoice.objects.bulk_create(
            [
                Invoice(
                    buyer_id=buyer_id,
                    currency=currency,
                    period_start=window.start,
                    period_end=window.end,
                    vat_rate=vat_rate,
                )
                for buyer_id, currency in sorted(rated)
            ],
            ignore_conflicts=True,  # the period's invoice exists already (unique per buyer, currency, period)
        )
        invoices = list(period.select_for_update().order_by("id"))
        _drafts_rewrite(invoices, rated, at=at)
    return invoices


ADJUSTMENT_LOOKBACK = timedelta(days=100)  # how far back late usage still adjusts issued invoices


def _late_usage_adjustments(
    *, window: Window, buyer_ids: list[int] | None
) -> dict[tuple[int, str], list[rating.Adjustment]]:
    """Usage that arrived after an invoice was issued (late records, disputes resolved later): each issued monthly
    invoice of the last ``ADJUSTMENT_LOOKBACK`` is re-rated, and what differs per lease or contract from what was
    invoiced for it (counting earlier adjustments) becomes an adjustment line on this period's draft."""
    issued = selectors.invoices_issued_before(
        before=window.start, since=window.start - ADJUSTMENT_LOOKBACK, buyer_ids=buyer_ids
    )
    if not issued:
        return {}
    invoiced = selectors.invoiced_by_subject(issued)
    found: dict[tuple[int, str], list[rating.Adjustment]] = defaultdict(list)
    by_period: dict[tuple[datetime, datetime], list[Invoice]] = defaultdict(list)
    for invoice in issued:
        by_period[(invoice.period_start, invoice.period_end)].append(invoice)
    for (start, end), invoices in by_period.items():
        charges = selectors.period_charges(window=Window(start, end), buyer_ids=[i.buyer_id for i in invoices])
        for invoice in invoices:
            key = (invoice.buyer_id, invoice.currency)
            rerated: dict[UUID, int] = defaultdict(int)
            meta: dict[UUID, selectors.InvoicedSubject] = {}
            if key in charges:
                for line in rating.rate_period(charges[key].leases, charges[key].tokens):
                    if line.subject_public_id is not None:
                        rerated[line.subject_public_id] += line.amount_minor
                        meta[line.subject_public_id] = selectors.InvoicedSubject(
                            line.provider_id, line.pool_id, line.chip_domestic, 0
                        )
            subjects = set(rerated) | {subject for (pk, subject) in invoiced if pk == invoice.pk}
            for subject in sorted(subjects, key=str):
                before = invoiced.get((invoice.pk, subject))
                difference = rerated.get(subject, 0) - (before.amount_minor if before else 0)
                facts = meta.get(subject) or before
                if difference and facts is not None and facts.provider_id is not None:
                    found[key].append(
                        rating.Adjustment(
                            subject_public_id=subject,
                            provider_id=facts.provider_id,
                            pool_id=facts.pool_id,
                            chip_domestic=facts.chip_domestic,
                            currency=invoice.currency,
                            amount_minor=difference,
                            reference=invoice.number_display,
                            adjusts=str(invoice.public_id),
                        )
                    )
    return found


def _drafts_rewrite(
    invoices: list[Invoice], rated: dict[tuple[int, str], list[rating.RatedLine]], *, at: datetime
) -> None:
    """Replace the lines and totals of the locked draft invoices (others are left as issued)."""
    drafts = [invoice for invoice in invoices if invoice.status == InvoiceStatus.DRAFT]
    InvoiceLine.objects.filter(invoice__in=drafts).delete()
    rows: list[InvoiceLine] = []
    for invoice in drafts:
        lines = rated.get((invoice.buyer_id, invoice.currency), [])  # no usage left: an empty draft
        totals = rating.invoice_totals(lines, vat_rate=invoice.vat_rate, currency=invoice.currency)
        invoice.subtotal_minor = totals.subtotal_minor
        invoice.vat_minor = totals.vat_minor
        invoice.total_minor = totals.total_minor
        invoice.subsidy_minor = 0
        invoice.amount_due_minor = totals.total_minor
        invoice.energy_wh = sum(line.energy_wh for line in lines)
        invoice.computed_at = at
        rows.extend(_line_rows(invoice, lines))
    InvoiceLine.objects.bulk_create(rows, batch_size=5_000)
    fields = ["subtotal_minor", "vat_minor", "total_minor", "subsidy_minor", "amount_due_minor", "energy_wh"]
    Invoice.objects.bulk_update(drafts, [*fields, "computed_at"], batch_size=1_000)


def invoice_lease_end(*, lease_public_id: UUID, at: datetime | None = None) -> Invoice | None:
    """An invoice for one lease at its end (for buyers who ask for it), from the end of the last monthly invoice
    that already covered part of it. The monthly invoices leave the lease out from then on. Idempotent."""
    at = ensure_utc(at or utcnow())
    terms = selectors.lease_terms_for_invoice(lease_public_id)
    if terms is None:
        return None
    start = selectors.lease_invoice_start(buyer_id=terms.buyer_id, currency=terms.currency, lease_start=terms.start)
    if start >= terms.end:
        return None  # the monthly invoices covered all of it
    window = Window(start, terms.end)
    key = (terms.buyer_id, terms.currency)
    charges = selectors.period_charges(window=window, lease_public_ids=[lease_public_id]).get(key)
    lines = rating.rate_period(charges.leases) if charges else []
    with transaction.atomic():
        invoice, _created = Invoice.objects.get_or_create(
            buyer_id=terms.buyer_id,
            currency=terms.currency,
            period_start=window.start,
            lease_public_id=lease_public_id,
            status__in=[InvoiceStatus.DRAFT, InvoiceStatus.FINALIZED, InvoiceStatus.PAID],
            defaults={"period_end": window.end, "vat_rate": _vat_rate(), "status": InvoiceStatus.DRAFT},
        )
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        _drafts_rewrite([invoice], {key: lines}, at=at)
        if invoice.status == InvoiceStatus.DRAFT and lines:
            return _finalize_locked(invoice.pk, actor=None, at=at)
    return invoice


def invoice_lease_end_due(*, at: datetime | None = None) -> int:
    """Invoice every lease that ended (plus the margin) whose buyer asked for an invoice at each lease's end."""
    at = ensure_utc(at or utcnow())
    due = selectors.lease_end_invoicing_due(ended_before=at - settings.BILLING_FINALIZE_AFTER)
    return sum(1 for public_id, _buyer in due if invoice_lease_end(lease_public_id=public_id, at=at) is not None)


def invoice_draft_refresh(*, invoice: Invoice, at: datetime | None = None) -> Invoice:
    if invoice.status != InvoiceStatus.DRAFT:
        return invoice
    invoice_run(window=Window(invoice.period_start, invoice.period_end), buyer_ids=[invoice.buyer_id], at=at)
    invoice.refresh_from_db()
    return invoice


# --- Finalization ------------------------------------------------------------------------------------------


def _next_number(code: str) -> tuple[InvoiceSeries, int]:
    """The series' next number under a row lock held to the end of the caller's transaction: a rollback gives
    the number back, so numbers are gap-free and unique."""
    InvoiceSeries.objects.get_or_create(code=code)
    series = InvoiceSeries.objects.select_for_update().get(code=code)
    number = series.next_number
    InvoiceSeries.objects.filter(pk=series.pk).update(next_number=F("next_number") + 1)
    return series, number


def _seller_details() -> dict[str, str]:
    return dict(settings.BILLING_SELLER)


def _buyer_details(buyer: Organization) -> dict[str, str]:
    profile = getattr(buyer, "company_profile", None)
    details = {"name": buyer.name}
    if profile is not None:
        for field in ("legal_name", "uscc", "registered_city"):
            value = getattr(profile, field, "")
            if value:
                details[field] = str(value)
    return details


@dataclass(frozen=True)
class OwnerShare:
    owner_id: int
    pool_id: int
    pool_name: str
    share_pct: Decimal
    gross_minor: int
    fee_minor: int
    fee_rate: Decimal


def _owner_shares(invoice: Invoice, lines: list[InvoiceLine]) -> list[OwnerShare]:
    """Each revenue-share owner's part of each pool's lines, then the platform fee on it (rounded once each)."""
    by_pool: dict[int, int] = defaultdict(int)
    provider_of_pool: dict[int, int] = {}
    pool_names: dict[int, str] = {}
    for line in lines:
        if line.kind == "subsidy" or line.pool_id is None:
            continue
        by_pool[line.pool_id] += line.amount_minor
        provider_of_pool[line.pool_id] = line.provider_id  # type: ignore[assignment]
        pool_names[line.pool_id] = str(line.details.get("params", {}).get("pool", ""))
    owners = selectors.pool_owners(by_pool)
    rates = selectors.fee_rates(set(provider_of_pool.values()))
    shares = []
    for pool_id in sorted(by_pool):
        pool_owners = owners[pool_id]
        parts = allocate_minor(by_pool[pool_id], [owner.share_pct for owner in pool_owners])
        rate = rates[provider_of_pool[pool_id]]
        for owner, gross in zip(pool_owners, parts, strict=True):
            fee, _net = rating.fee_split(gross, rate, invoice.currency)
            shares.append(
                OwnerShare(owner.organization_id, pool_id, pool_names[pool_id], owner.share_pct, gross, fee, rate)
            )
    return shares


def _eligible_lines(lines: list[InvoiceLine]) -> list[EligibleLine]:
    """What a voucher may subsidise: per provider, chip origin and product (capacity, or model/API tokens), the
    net positive amount, with the leases and contracts behind it as evidence."""
    totals: dict[tuple[int, bool, str], int] = defaultdict(int)
    evidence: dict[tuple[int, bool, str], set[str]] = defaultdict(set)
    currency = lines[0].invoice.currency if lines else ""
    # The invoice's period: with the subjects, a reviewer finds the signed usage behind the amount.
    period = [lines[0].invoice.period_start.isoformat(), lines[0].invoice.period_end.isoformat()] if lines else []
    for line in lines:
        if line.kind == "subsidy" or line.provider_id is None:
            continue
        product = PRODUCT_MODEL if line.kind in ("tokens_in", "tokens_out") else PRODUCT_COMPUTE
        key = (line.provider_id, line.chip_domestic, product)
        totals[key] += line.amount_minor
        if line.subject_public_id:
            evidence[key].add(str(line.subject_public_id))
    return [
        EligibleLine(
            amount_minor=amount,
            currency=currency,
            provider_id=provider_id,
            chip_domestic=domestic,
            compute_only=True,
            product=product,
            evidence={"subjects": sorted(evidence[(provider_id, domestic, product)]), "period": period},
        )
        for (provider_id, domestic, product), amount in sorted(totals.items())
        if amount > 0
    ]


def invoice_finalize(
    *, invoice: Invoice, actor: Any = None, at: datetime | None = None, recompute: bool = True
) -> Invoice:
    """Draft -> finalized: recompute, reserve the voucher subsidy, number it, post the ledger entry.

    Concurrent calls on one invoice serialise on its row lock; the second finds it finalized and returns it
    (one number). The voucher reservation joins this transaction, so a failure anywhere rolls both back."""
    at = ensure_utc(at or utcnow())
    if recompute:  # the monthly run passes False for drafts it has just computed
        invoice = invoice_draft_refresh(invoice=invoice, at=at)
    with transaction.atomic():
        return _finalize_locked(invoice.pk, actor=actor, at=at)


def invoice_finalize_many(*, invoices: list[Invoice], at: datetime, chunk_size: int = 100) -> int:
    """Finalize the period's drafts, ``chunk_size`` to a transaction (one commit per chunk, not per invoice), each
    in its own savepoint so that one refused invoice does not hold back the others. Returns how many."""
    at = ensure_utc(at)
    done = 0
    ids = sorted(invoice.pk for invoice in invoices if invoice.status == InvoiceStatus.DRAFT)
    for offset in range(0, len(ids), chunk_size):
        with transaction.atomic():
            for pk in ids[offset : offset + chunk_size]:
                try:
                    with transaction.atomic():
                        if _finalize_locked(pk, actor=None, at=at).finalized_at == at:
                            done += 1
                except ApplicationError as exc:
                    logger.warning("invoice %s not finalized: %s", pk, exc)
    return done


def _finalize_locked(pk: int, *, actor: Any, at: datetime) -> Invoice:
    """The finalization itself, inside the caller's transaction."""
    invoice = Invoice.objects.select_for_update().select_related("buyer").get(pk=pk)
    if invoice.status != InvoiceStatus.DRAFT:
        return invoice
    lines = list(InvoiceLine.objects.filter(invoice=invoice).select_related("invoice").order_by("position"))
    if not lines:
        raise ApplicationError("invoice_empty", _("There is nothing to invoice in this period."))
    redemptions = vouchers.voucher_subsidy_reserve(
        buyer=invoice.buyer, invoice_reference=str(invoice.public_id), lines=_eligible_lines(lines), at=at
    )
    position = len(lines)
    subsidy_rows, deducted, reimbursed = [], 0, 0
    issuer_amounts: dict[int, int] = defaultdict(int)
    for redemption in redemptions:
        if redemption.amount_minor <= 0:
            continue
        position += 1
        is_deducted = redemption.settlement_mode in SUBSIDY_DEDUCTED_MODES
        if is_deducted:
            deducted += redemption.amount_minor
            issuer_amounts[redemption.program.issuer_id] += redemption.amount_minor
        else:
            reimbursed += redemption.amount_minor
        subsidy_rows.append(
            InvoiceLine(
                invoice=invoice,
                position=position,
                kind="subsidy",
                description=f"{redemption.program.name}"[:300],
                quantity=Decimal(1),
                unit="voucher",
                unit_price=Decimal(-redemption.amount_minor),
                amount_minor=-redemption.amount_minor if is_deducted else 0,
                details={
                    "redemption": str(redemption.public_id),
                    "program": redemption.program.name,
                    "settlement_mode": redemption.settlement_mode,
                    "subsidy_minor": redemption.amount_minor,
                },
            )
        )
    InvoiceLine.objects.bulk_create(subsidy_rows)
    totals = rating.invoice_totals(
        lines,
        vat_rate=invoice.vat_rate,
        currency=invoice.currency,
        subsidy_deducted_minor=min(deducted, max(invoice.total_minor, 0)),
    )
    series, number = _next_number(f"{settings.BILLING_INVOICE_SERIES}-{at:%Y}")
    shares = _owner_shares(invoice, lines)
    figures: dict[str, Any] = {
        "status": InvoiceStatus.FINALIZED,
        "series": series,
        "number": number,
        "number_display": f"{series.code}-{number:06d}",
        "subtotal_minor": totals.subtotal_minor,
        "vat_minor": totals.vat_minor,
        "total_minor": totals.total_minor,
        "subsidy_minor": totals.subsidy_minor,
        "subsidy_reimbursed_minor": reimbursed,
        "amount_due_minor": totals.amount_due_minor,
        "seller_details": _seller_details(),
        "buyer_details": _buyer_details(invoice.buyer),
        "finalized_at": at,
    }
    Invoice.objects.filter(pk=invoice.pk).update(**figures)
    for name, value in figures.items():
        setattr(invoice, name, value)
    legs = [
        debit(AccountKind.BUYER_RECEIVABLE, invoice.buyer_id, totals.amount_due_minor),
        credit(AccountKind.VAT_PAYABLE, None, totals.vat_minor),
        *(debit(AccountKind.VOUCHER_RECEIVABLE, issuer, amount) for issuer, amount in issuer_amounts.items()),
        *(credit(AccountKind.PROVIDER_PENDING, s.owner_id, s.gross_minor - s.fee_minor) for s in shares),
        credit(AccountKind.PLATFORM_FEE, None, sum(s.fee_minor for s in shares)),
    ]
    if any(leg.amount_minor for leg in legs):
        ledger_post(
            kind="invoice_finalized",
            idempotency_key=f"invoice-finalized-{invoice.public_id}",
            currency=invoice.currency,
            legs=legs,
            memo=invoice.number_display,
            invoice=invoice,
        )
    _payouts_plan(invoice, shares)
    audit_record(
        action="billing.invoice_finalized",
        target=invoice,
        actor=actor,
        organization=invoice.buyer,
        after={
            "number": invoice.number_display,
            "total_minor": invoice.total_minor,
            "subsidy_minor": invoice.subsidy_minor,
            "amount_due_minor": invoice.amount_due_minor,
        },
    )
    if invoice.amount_due_minor <= 0:
        _invoice_settle(invoice, at=at)
    return invoice


def _payouts_plan(invoice: Invoice, shares: list[OwnerShare]) -> None:
    """One pending payout per owner of the invoice, with its breakdown by pool (paid once the invoice is)."""
    by_owner: dict[int, list[OwnerShare]] = defaultdict(list)
    for share in shares:
        by_owner[share.owner_id].append(share)
    Payout.objects.bulk_create(
        [
            Payout(
                invoice=invoice,
                owner_id=owner_id,
                idempotency_key=f"payout-{invoice.public_id}-{owner_id}",
                currency=invoice.currency,
                gross_minor=sum(s.gross_minor for s in parts),
                fee_minor=sum(s.fee_minor for s in parts),
                amount_minor=sum(s.gross_minor - s.fee_minor for s in parts),
                breakdown=[
                    {
                        "pool": s.pool_name,
                        "share_pct": str(s.share_pct),
                        "gross_minor": s.gross_minor,
                        "fee_minor": s.fee_minor,
                        "fee_rate": str(s.fee_rate),
                    }
                    for s in parts
                ],
            )
            for owner_id, parts in sorted(by_owner.items())
        ]
    )


def _invoice_settle(invoice: Invoice, *, at: datetime) -> None:
    """Paid in full: mark it paid and make the owners' shares available for payout (once)."""
    updated = Invoice.objects.filter(pk=invoice.pk, status=InvoiceStatus.FINALIZED).update(
        status=InvoiceStatus.PAID, paid_at=at, payouts_released=True
    )
    if not updated:
        return
    payouts = list(Payout.objects.filter(invoice=invoice, status=PayoutStatus.PENDING))
    legs = [leg for p in payouts if p.amount_minor for leg in (
        debit(AccountKind.PROVIDER_PENDING, p.owner_id, p.amount_minor),
        credit(AccountKind.PROVIDER_PAYABLE, p.owner_id, p.amount_minor),
    )]  # fmt: skip
    if legs:
        ledger_post(
            kind="payouts_released",
            idempotency_key=f"payouts-released-{invoice.public_id}",
            currency=invoice.currency,
            legs=legs,
            memo=invoice.number_display,
            invoice=invoice,
        )
    for payout in payouts:
        outbox_enqueue("billing.tasks.payout_execute", kwargs={"payout_public_id": str(payout.public_id)})


def invoice_void(*, invoice: Invoice, actor: Any = None, reason: str, at: datetime | None = None) -> Invoice:
    """Cancel a finalized, unpaid invoice: its entry is reversed, its subsidy returned, its number kept."""
    at = ensure_utc(at or utcnow())
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.status == InvoiceStatus.VOID:
            return invoice
        if invoice.status != InvoiceStatus.FINALIZED or invoice.amount_paid_minor:
            raise Conflict("invoice_not_voidable", _("Only an open invoice with no payment can be voided."))
        if Payment.objects.filter(invoice=invoice, status__in=OPEN_PAYMENT_STATUSES).exists():
            raise Conflict("payment_in_progress", _("A payment of this invoice is in progress."))
        entry = JournalEntry.objects.filter(idempotency_key=f"invoice-finalized-{invoice.public_id}").first()
        if entry is not None:
            from billing.ledger import ledger_reverse

            ledger_reverse(entry=entry, idempotency_key=f"invoice-void-{invoice.public_id}", memo=reason)
        vouchers.voucher_subsidy_release(
            buyer=invoice.buyer, invoice_reference=str(invoice.public_id), at=at, reference="void", reason=reason
        )
        Payout.objects.filter(invoice=invoice, status=PayoutStatus.PENDING).update(status=PayoutStatus.CANCELLED)
        Invoice.objects.filter(pk=invoice.pk).update(status=InvoiceStatus.VOID, voided_at=at)
        invoice.refresh_from_db()
        audit_record(
            action="billing.invoice_voided", target=invoice, actor=actor, organization=invoice.buyer,
            after={"reason": reason},
        )  # fmt: skip
    return invoice


def credit_note_issue(
    *, invoice: Invoice, net_minor: int, reason: str, idempotency_key: str, actor: Any = None
) -> CreditNote:
    """A correction in the buyer's favour of ``net_minor`` before VAT, taken back from the owners and the
    platform fee in proportion to the invoice. Before payment it lowers what is due; after payment the credit is
    refunded to the card (a task)."""
    if isinstance(net_minor, bool) or not isinstance(net_minor, int) or net_minor <= 0:
        raise ApplicationError("amount_not_positive", _("Enter an amount greater than zero."), field="net_minor")
    if not reason.strip():
        raise ApplicationError("required", _("Give the reason for the credit note."), field="reason")
    existing = CreditNote.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID):
            raise Conflict("invoice_not_creditable", _("Only a finalized invoice can be credited."))
        credited_net = sum(invoice.credit_notes.values_list("net_minor", flat=True))
        if net_minor > invoice.subtotal_minor - credited_net:
            raise ApplicationError(
                "credit_too_large", _("The credit is larger than what is left of the invoice."), field="net_minor"
            )
        vat = rating.vat_minor(net_minor, invoice.vat_rate, invoice.currency)
        series, number = _next_number(f"{settings.BILLING_CREDIT_NOTE_SERIES}-{utcnow():%Y}")
        number_display = f"{series.code}-{number:06d}"
        # The voucher paid part of the invoice: the same part of the credit goes back to the grant.
        released = []
        subsidy = invoice.subsidy_minor + invoice.subsidy_reimbursed_minor
        if subsidy and invoice.subtotal_minor > 0:
            vouchers.voucher_subsidy_release(
                buyer=invoice.buyer,
                invoice_reference=str(invoice.public_id),
                at=utcnow(),
                reference=number_display,
                amount_minor=max(1, subsidy * net_minor // invoice.subtotal_minor),
                reason=reason,
            )
            released = voucher_selectors.releases_for_reference(
                buyer=invoice.buyer, invoice_reference=str(invoice.public_id), reference=number_display
            )
        voucher_part = sum(r.amount_minor for r in released if r.settlement_mode in SUBSIDY_DEDUCTED_MODES)
        note = CreditNote.objects.create(
            invoice=invoice,
            series=series,
            number=number,
            number_display=number_display,
            idempotency_key=idempotency_key,
            net_minor=net_minor,
            vat_minor=vat,
            total_minor=net_minor + vat,
            subsidy_released_minor=voucher_part,
            buyer_credit_minor=net_minor + vat - voucher_part,
            reason=reason,
        )
        legs = [
            credit(AccountKind.BUYER_RECEIVABLE, invoice.buyer_id, note.buyer_credit_minor),
            *(
                credit(AccountKind.VOUCHER_RECEIVABLE, r.issuer_id, r.amount_minor)
                for r in released
                if r.settlement_mode in SUBSIDY_DEDUCTED_MODES
            ),
            debit(AccountKind.VAT_PAYABLE, None, vat),
            *_credit_note_owner_legs(invoice, net_minor),
        ]
        ledger_post(
            kind="credit_note",
            idempotency_key=f"credit-note-{note.public_id}",
            currency=invoice.currency,
            legs=legs,
            memo=f"{note.number_display} for {invoice.number_display}",
            invoice=invoice,
        )
        Invoice.objects.filter(pk=invoice.pk).update(
            amount_credited_minor=F("amount_credited_minor") + note.buyer_credit_minor
        )
        audit_record(
            action="billing.credit_note_issued", target=note, actor=actor, organization=invoice.buyer,
            after={"invoice": invoice.number_display, "total_minor": note.total_minor, "reason": reason},
        )  # fmt: skip
        if invoice.status == InvoiceStatus.PAID:
            outbox_enqueue("billing.tasks.credit_note_refund", kwargs={"credit_note_public_id": str(note.public_id)})
    return note


def _credit_note_owner_legs(invoice: Invoice, net_minor: int) -> list[Leg]:
    """Take a credit back from the owners and the platform fee in proportion to their parts of the invoice.

    An owner's part comes off their payout while it is not transferred (the payout shrinks, so the transfer
    matches what they are owed); once transferred, the owner owes it back (provider receivable), and it is taken
    from their next payouts. Either way no guarded payable balance goes below zero."""
    payouts = list(
        Payout.objects.select_for_update().filter(invoice=invoice).exclude(status=PayoutStatus.CANCELLED).order_by("id")
    )
    weights = [p.amount_minor for p in payouts] + [p.fee_minor for p in payouts]
    parts = allocate_minor(net_minor, weights) if sum(weights) > 0 else [0] * len(weights)
    owner_parts, fee_parts = parts[: len(payouts)], parts[len(payouts) :]
    owner_account = AccountKind.PROVIDER_PAYABLE if invoice.payouts_released else AccountKind.PROVIDER_PENDING
    legs = [debit(AccountKind.PLATFORM_FEE, None, sum(fee_parts))]
    for payout, owner_part, fee_part in zip(payouts, owner_parts, fee_parts, strict=True):
        from_payout = min(owner_part, payout.amount_minor) if payout.status == PayoutStatus.PENDING else 0
        if payout.status == PayoutStatus.PENDING and (from_payout or fee_part):
            fee_cut = min(fee_part, payout.fee_minor)
            Payout.objects.filter(pk=payout.pk).update(
                amount_minor=F("amount_minor") - from_payout,
                fee_minor=F("fee_minor") - fee_cut,
                gross_minor=F("gross_minor") - from_payout - fee_cut,
                breakdown=_breakdown_reduced(payout.breakdown, gross_cut=from_payout + fee_cut, fee_cut=fee_cut),
            )
        legs.append(debit(owner_account, payout.owner_id, from_payout))
        legs.append(debit(AccountKind.PROVIDER_RECEIVABLE, payout.owner_id, owner_part - from_payout))
    return legs


def _breakdown_reduced(breakdown: list[dict[str, Any]], *, gross_cut: int, fee_cut: int) -> list[dict[str, Any]]:
    """A payout's per-pool parts after a credit note took ``gross_cut`` (of which ``fee_cut`` platform fee) off
    it, spread over the pools in proportion to their gross and fee, so the parts still add up to the payout."""
    if not breakdown or sum(part["gross_minor"] for part in breakdown) <= 0:
        return breakdown
    gross_cuts = allocate_minor(gross_cut, [part["gross_minor"] for part in breakdown])
    fee_weights = [part["fee_minor"] for part in breakdown]
    fee_cuts = allocate_minor(fee_cut, fee_weights) if sum(fee_weights) > 0 else [0] * len(breakdown)
    return [
        {**part, "gross_minor": part["gross_minor"] - g, "fee_minor": part["fee_minor"] - f}
        for part, g, f in zip(breakdown, gross_cuts, fee_cuts, strict=True)
    ]


def _payout_clawback_decide(payout: Payout) -> Payout:
    """Before the transfer: take what the owner owes back (provider receivable) from this payout, once, under
    the owner's receivable account lock so that two payouts never take the same debt."""
    with transaction.atomic():
        locked = Payout.objects.select_for_update().select_related("invoice", "owner").get(pk=payout.pk)
        if locked.status != PayoutStatus.PENDING or locked.clawback_minor is not None:
            return locked
        receivable = (
            LedgerAccount.objects.select_for_update()
            .filter(kind=AccountKind.PROVIDER_RECEIVABLE, organization_id=locked.owner_id, currency=locked.currency)
            .first()
        )
        owed = max(receivable.balance_minor, 0) if receivable else 0
        locked.clawback_minor = min(owed, locked.amount_minor)
        if locked.clawback_minor:
            ledger_post(
                kind="payout_clawback",
                idempotency_key=f"payout-clawback-{locked.public_id}",
                currency=locked.currency,
                legs=[
                    debit(AccountKind.PROVIDER_PAYABLE, locked.owner_id, locked.clawback_minor),
                    credit(AccountKind.PROVIDER_RECEIVABLE, locked.owner_id, locked.clawback_minor),
                ],
                memo=f"{locked.invoice.number_display}: credit notes on earlier invoices",
                invoice=locked.invoice,
            )
        locked.save(update_fields=["clawback_minor"])
    return locked


# --- Payments -------------------------------------------------------------------------------------------------


def payment_start(*, invoice: Invoice, actor: Any = None) -> Payment:
    """The buyer's "pay" click: one open attempt per invoice (a partial unique index), created with its
    idempotency key and committed before Stripe is called; Stripe is then asked with that key, so concurrent
    clicks and retries after a crash all get the same PaymentIntent."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.status == InvoiceStatus.PAID or invoice.outstanding_minor <= 0:
            raise Conflict("invoice_already_paid", _("This invoice is already paid."))
        if invoice.status != InvoiceStatus.FINALIZED:
            raise Conflict("invoice_not_payable", _("Only a finalized invoice can be paid."))
        payment = Payment.objects.filter(invoice=invoice, status__in=OPEN_PAYMENT_STATUSES).first()
        if payment is None:
            attempt = (Payment.objects.filter(invoice=invoice).aggregate(n=Max("attempt"))["n"] or 0) + 1
            payment = Payment.objects.create(
                invoice=invoice,
                attempt=attempt,
                idempotency_key=f"pay-{invoice.public_id}-{attempt}",
                amount_minor=invoice.outstanding_minor,
                currency=invoice.currency,
            )
            audit_record(
                action="billing.payment_started", target=payment, actor=actor, organization=invoice.buyer,
                after={"amount_minor": payment.amount_minor, "attempt": attempt},
            )  # fmt: skip
    if payment.stripe_payment_intent_id:
        return payment
    intent = gateway.payment_intent_create(
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        idempotency_key=payment.idempotency_key,
        metadata={
            "invoice": str(invoice.public_id),
            "payment": str(payment.public_id),
            "number": invoice.number_display,
        },
    )
    Payment.objects.filter(pk=payment.pk, stripe_payment_intent_id__isnull=True).update(
        stripe_payment_intent_id=intent.id, client_secret=intent.client_secret, status=PaymentStatus.REQUIRES_PAYMENT
    )
    payment.refresh_from_db()
    return payment


_STRIPE_STATUS = {
    "requires_payment_method": PaymentStatus.REQUIRES_PAYMENT,
    "requires_confirmation": PaymentStatus.REQUIRES_PAYMENT,
    "requires_action": PaymentStatus.REQUIRES_PAYMENT,
    "processing": PaymentStatus.PROCESSING,
    "requires_capture": PaymentStatus.PROCESSING,
    "succeeded": PaymentStatus.SUCCEEDED,
    "canceled": PaymentStatus.CANCELED,
}


def payment_sync(*, payment_intent_id: str, at: datetime | None = None) -> Payment | None:
    """Bring our payment to the PaymentIntent's current state at Stripe (fetched, not taken from the event):
    whatever order webhooks arrive in, the last sync sees the final state, and every ledger effect is keyed so
    that it happens once."""
    at = ensure_utc(at or utcnow())
    intent = gateway.payment_intent_retrieve(payment_intent_id=payment_intent_id)
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(stripe_payment_intent_id=payment_intent_id).first()
        if payment is None and intent.metadata.get("payment"):
            # A worker died after Stripe created the intent and before we stored its id.
            payment = Payment.objects.select_for_update().filter(public_id=intent.metadata["payment"]).first()
            if payment is not None and not payment.stripe_payment_intent_id:
                payment.stripe_payment_intent_id = intent.id
                payment.save(update_fields=["stripe_payment_intent_id", "updated_at"])
        if payment is None:
            logger.warning("payment intent %s is not ours", payment_intent_id)
            return None
        invoice = Invoice.objects.select_for_update().get(pk=payment.invoice_id)
        new_status = _STRIPE_STATUS.get(intent.status, payment.status)
        if intent.status == "requires_payment_method" and intent.last_error_code:
            new_status = PaymentStatus.FAILED
        if payment.status == PaymentStatus.SUCCEEDED:
            new_status = PaymentStatus.SUCCEEDED  # a success is final; refunds are tracked separately
        if new_status == PaymentStatus.SUCCEEDED and payment.status != PaymentStatus.SUCCEEDED:
            ledger_post(
                kind="payment_received",
                idempotency_key=f"payment-{intent.id}",
                currency=payment.currency,
                legs=[
                    debit(AccountKind.STRIPE_CASH, None, intent.amount_minor),
                    credit(AccountKind.BUYER_RECEIVABLE, invoice.buyer_id, intent.amount_minor),
                ],
                memo=invoice.number_display,
                invoice=invoice,
            )
            Invoice.objects.filter(pk=invoice.pk).update(amount_paid_minor=F("amount_paid_minor") + intent.amount_minor)
            payment.succeeded_at = at
            audit_record(
                action="billing.payment_succeeded", target=payment, actor_label="system:stripe",
                organization=invoice.buyer, before={"status": payment.status},
                after={"status": PaymentStatus.SUCCEEDED, "amount_minor": intent.amount_minor, "intent": intent.id},
            )  # fmt: skip
            invoice.refresh_from_db()
            if invoice.outstanding_minor <= 0:
                _invoice_settle(invoice, at=at)
        payment.status = new_status
        payment.failure_message = (intent.last_error_code or "")[:300] if new_status == PaymentStatus.FAILED else ""
        payment.save(update_fields=["status", "failure_message", "succeeded_at", "updated_at"])
    return payment


def _refund_record(payment: Payment, invoice: Invoice, *, refund_id: str, amount_minor: int) -> None:
    """Book a refund once (its Stripe id is unique). Refunds made outside Suanli (Stripe's dashboard) are not
    booked here: the reconciliation job lists them as ``missing_refund`` for staff."""
    try:
        with transaction.atomic():
            Refund.objects.create(payment=payment, stripe_refund_id=refund_id, amount_minor=amount_minor)
    except IntegrityError:
        return  # recorded already
    ledger_post(
        kind="refund",
        idempotency_key=f"refund-{refund_id}",
        currency=payment.currency,
        legs=[
            debit(AccountKind.BUYER_RECEIVABLE, invoice.buyer_id, amount_minor),
            credit(AccountKind.STRIPE_CASH, None, amount_minor),
        ],
        memo=invoice.number_display,
        invoice=invoice,
    )
    Payment.objects.filter(pk=payment.pk).update(amount_refunded_minor=F("amount_refunded_minor") + amount_minor)
    Invoice.objects.filter(pk=invoice.pk).update(amount_paid_minor=F("amount_paid_minor") - amount_minor)
    audit_record(
        action="billing.refund_recorded", target=payment, actor_label="system:stripe", organization=invoice.buyer,
        after={"refund": refund_id, "amount_minor": amount_minor, "invoice": invoice.number_display},
    )  # fmt: skip


def credit_note_refund(*, credit_note: CreditNote) -> None:
    """Refund a credit note of a paid invoice to the card it was paid with (once, by the note's key)."""
    payment = Payment.objects.filter(invoice=credit_note.invoice, status=PaymentStatus.SUCCEEDED).first()
    if payment is None or not payment.stripe_payment_intent_id:
        return
    amount = min(credit_note.buyer_credit_minor, payment.amount_minor - payment.amount_refunded_minor)
    if amount <= 0:
        return
    refund = gateway.refund_create(
        payment_intent_id=payment.stripe_payment_intent_id,
        amount_minor=amount,
        idempotency_key=f"refund-{credit_note.idempotency_key}",
        metadata={"credit_note": credit_note.number_display},
    )
    with transaction.atomic():
        _refund_record(payment, credit_note.invoice, refund_id=refund.id, amount_minor=refund.amount_minor)


# --- Webhooks --------------------------------------------------------------------------------------------------


class WebhookRefused(ApplicationError):
    status_code = 400


def stripe_webhook_receive(*, payload: bytes, signature_header: str, remote_addr: str | None) -> StripeEvent | None:
    """Verify and store one webhook (once per Stripe event id) and queue its processing. A bad signature or
    a timestamp outside the tolerance is refused and logged."""
    try:
        event = gateway.webhook_event_construct(payload=payload, signature_header=signature_header)
    except gateway.WebhookSignatureInvalid as exc:
        WebhookRejection.objects.create(
            reason=str(exc)[:200], remote_addr=remote_addr, body_sha256=hashlib.sha256(payload).hexdigest()
        )
        logger.warning("stripe webhook refused: %s", exc)
        raise WebhookRefused("webhook_signature", _("The webhook signature is not valid.")) from exc
    data_object = event.get("data", {}).get("object", {})
    with transaction.atomic():
        stored, created = StripeEvent.objects.get_or_create(
            event_id=event["id"],
            defaults={"type": event.get("type", ""), "object_id": data_object.get("id", ""), "payload": event},
        )
        if created:
            outbox_enqueue("billing.tasks.stripe_event_process", kwargs={"event_id": stored.event_id})
    return stored


def stripe_event_process(*, event_id: str) -> bool:
    """Apply a stored event once. Payment events re-read the intent from Stripe (``payment_sync``)."""
    event = StripeEvent.objects.filter(event_id=event_id).first()
    if event is None or event.processed_at is not None:
        return False
    data_object = event.payload.get("data", {}).get("object", {})
    kind = event.type
    if kind.startswith("payment_intent."):
        payment_sync(payment_intent_id=data_object["id"])
    elif kind.startswith("charge.") and data_object.get("payment_intent"):
        payment_sync(payment_intent_id=data_object["payment_intent"])
    updated = StripeEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(processed_at=utcnow())
    return bool(updated)


# --- Payouts -----------------------------------------------------------------------------------------------------


def _connected_account(owner: Organization) -> str:
    profile, _created = BillingProfile.objects.get_or_create(organization=owner)
    if profile.stripe_account_id:
        return profile.stripe_account_id
    account = gateway.connected_account_create(
        idempotency_key=f"acct-{owner.public_id}",
        email=f"payouts+{owner.public_id}@suanli.invalid",
        country="CN",
        metadata={"organization": str(owner.public_id), "name": owner.name},
    )
    BillingProfile.objects.filter(pk=profile.pk, stripe_account_id="").update(stripe_account_id=account.id)
    profile.refresh_from_db()
    return profile.stripe_account_id


def payout_execute(*, payout: Payout, at: datetime | None = None) -> Payout:
    """Transfer one released payout to the owner's connected account (the transfer's idempotency key is the
    payout's, so a retry after a crash makes no second transfer), then book it."""
    at = ensure_utc(at or utcnow())
    payout = Payout.objects.select_related("invoice", "owner").get(pk=payout.pk)
    if payout.status != PayoutStatus.PENDING or not payout.invoice.payouts_released:
        return payout
    payout = _payout_clawback_decide(payout)
    if payout.status != PayoutStatus.PENDING:
        return payout
    transfer_id = None
    if payout.transfer_minor > 0:
        destination = _connected_account(payout.owner)
        transfer = gateway.transfer_create(
            amount_minor=payout.transfer_minor,
            currency=payout.currency,
            destination=destination,
            transfer_group=payout.invoice.number_display,
            idempotency_key=payout.idempotency_key,
            metadata={"payout": str(payout.public_id), "invoice": payout.invoice.number_display},
        )
        transfer_id = transfer.id
    with transaction.atomic():
        locked = Payout.objects.select_for_update().get(pk=payout.pk)
        if locked.status != PayoutStatus.PENDING:
            return locked
        if payout.transfer_minor > 0:
            ledger_post(
                kind="payout",
                idempotency_key=f"payout-{payout.public_id}",
                currency=payout.currency,
                legs=[
                    debit(AccountKind.PROVIDER_PAYABLE, payout.owner_id, payout.transfer_minor),
                    credit(AccountKind.STRIPE_CASH, None, payout.transfer_minor),
                ],
                memo=payout.invoice.number_display,
                invoice=payout.invoice,
            )
        locked.status = PayoutStatus.PAID
        locked.stripe_transfer_id = transfer_id
        locked.paid_at = at
        locked.save(update_fields=["status", "stripe_transfer_id", "paid_at"])
        audit_record(
            action="billing.payout_paid", target=locked, organization=payout.owner,
            after={"amount_minor": payout.transfer_minor, "clawback_minor": payout.clawback_minor,
                   "transfer": transfer_id},
        )  # fmt: skip
    return locked


# --- Vouchers settled by their issuers -----------------------------------------------------------------------


def voucher_settlements_post() -> int:
    """Book every subsidy its issuer has paid (voucher console, with a fiscal reference) and that was deducted
    from an invoice: D cash at bank, C voucher receivable. Keyed per redemption, so it runs any number of times."""
    posted = 0
    for row in voucher_selectors.redemptions_settled_for_billing():
        if row.settlement_mode not in SUBSIDY_DEDUCTED_MODES:
            continue
        amount = row.amount_minor - row.released_minor
        if amount <= 0:
            continue
        key = f"voucher-settled-{row.public_id}"
        if JournalEntry.objects.filter(idempotency_key=key).exists():
            continue
        with transaction.atomic():
            entry = ledger_post(
                kind="voucher_settled",
                idempotency_key=key,
                currency=row.currency,
                legs=[
                    debit(AccountKind.BANK_CASH, None, amount),
                    credit(AccountKind.VOUCHER_RECEIVABLE, row.issuer_id, amount),
                ],
                memo=row.fiscal_reference,
            )
            audit_record(
                action="billing.voucher_settlement_posted", target=entry, actor_label="system:billing",
                organization=Organization.objects.get(pk=row.issuer_id),
                after={"redemption": str(row.public_id), "amount_minor": amount, "reference": row.fiscal_reference},
            )  # fmt: skip
        posted += 1
    return posted


# --- Reconciliation -------------------------------------------------------------------------------------------


def _difference(
    kind: str, cause: str, stripe_id: str, reference: str, stripe_minor: int | None, ours_minor: int | None
) -> dict[str, Any]:
    return {
        "kind": kind,
        "cause": cause,
        "stripe_id": stripe_id,
        "reference": reference,
        "stripe_minor": stripe_minor,
        "ours_minor": ours_minor,
    }


def reconciliation_run(*, window: Window) -> ReconciliationRun:
    """Compare Stripe's charges, refunds and transfers of ``window`` with our payments, refunds and payouts, and
    our invoices with the ledger. Every difference is stored with its cause for staff."""
    differences: list[dict[str, Any]] = []
    charges = list(gateway.charge_list(created_gte=window.start, created_lt=window.end))
    ours = {
        p.stripe_payment_intent_id: p
        for p in Payment.objects.filter(
            status=PaymentStatus.SUCCEEDED, stripe_payment_intent_id__isnull=False
        ).select_related("invoice")
    }
    seen: set[str] = set()
    for charge in charges:
        if charge.status != "succeeded" or not charge.payment_intent_id:
            continue
        seen.add(charge.payment_intent_id)
        payment = ours.get(charge.payment_intent_id)
        if payment is None:
            differences.append(
                _difference("charge", "missing_payment", charge.id, charge.payment_intent_id, charge.amount_minor, None)
            )
        elif payment.amount_minor != charge.amount_minor:
            differences.append(
                _difference(
                    "charge",
                    "amount_differs",
                    charge.id,
                    payment.invoice.number_display,
                    charge.amount_minor,
                    payment.amount_minor,
                )
            )
    for intent_id, payment in ours.items():
        if intent_id not in seen and payment.succeeded_at and window.contains(payment.succeeded_at):
            differences.append(
                _difference(
                    "charge", "missing_at_stripe", "", payment.invoice.number_display, None, payment.amount_minor
                )
            )
    refunds = list(gateway.refund_list(created_gte=window.start, created_lt=window.end))
    our_refunds = set(Refund.objects.values_list("stripe_refund_id", flat=True))
    for refund in refunds:
        if refund.id not in our_refunds:
            differences.append(
                _difference(
                    "refund", "missing_refund", refund.id, refund.payment_intent_id or "", refund.amount_minor, None
                )
            )
    transfers = {t.id: t for t in gateway.transfer_list(created_gte=window.start, created_lt=window.end)}
    our_payouts: dict[str | None, Payout] = {
        p.stripe_transfer_id: p
        for p in Payout.objects.filter(stripe_transfer_id__isnull=False).select_related("invoice")
    }
    for transfer_id, transfer in transfers.items():
        payout = our_payouts.get(transfer_id)
        if payout is None:
            differences.append(
                _difference(
                    "transfer",
                    "missing_payout",
                    transfer_id,
                    transfer.transfer_group or "",
                    transfer.amount_minor,
                    None,
                )
            )
        elif payout.transfer_minor != transfer.amount_minor:
            differences.append(
                _difference(
                    "transfer",
                    "amount_differs",
                    transfer_id,
                    payout.invoice.number_display,
                    transfer.amount_minor,
                    payout.transfer_minor,
                )
            )
    for paid_transfer_id, payout in our_payouts.items():
        if paid_transfer_id not in transfers and payout.paid_at and window.contains(payout.paid_at):
            differences.append(
                _difference(
                    "transfer", "missing_at_stripe", "", payout.invoice.number_display, None, payout.amount_minor
                )
            )
    # Invoices against the ledger: each buyer's receivable is what their open invoices still owe.
    receivables = selectors.receivables_by_buyer()
    for ledger_minor, invoices_minor, name in receivables.values():
        if ledger_minor != invoices_minor:
            differences.append(_difference("ledger", "receivable_differs", "", name, invoices_minor, ledger_minor))
    run = ReconciliationRun.objects.create(
        window_start=window.start,
        window_end=window.end,
        checked={
            "charges": len(charges),
            "refunds": len(refunds),
            "transfers": len(transfers),
            "buyers": len(receivables),
        },
        differences=differences,
    )
    return run


def reconciliation_run_recent(*, days: int = 35) -> ReconciliationRun:
    now = utcnow()
    return reconciliation_run(window=Window(now - timedelta(days=days), now))


# --- Schedules ---------------------------------------------------------------------------------------------------


def payouts_due() -> int:
    done = 0
    for payout in Payout.objects.filter(status=PayoutStatus.PENDING, invoice__payouts_released=True).order_by("id"):
        try:
            if payout_execute(payout=payout).status == PayoutStatus.PAID:
                done += 1
        except gateway.PaymentProviderUnavailable:
            logger.warning("payout %s: Stripe unavailable, retried later", payout.public_id)
    return done


def invoice_run_due(*, at: datetime | None = None) -> dict[str, int]:
    """The hourly invoicing schedule: this month's drafts are recomputed as usage arrives; last month's are
    recomputed a final time and finalized once the period has closed plus ``BILLING_FINALIZE_AFTER``."""
    at = ensure_utc(at or utcnow())
    current = Window.month(at.year, at.month)
    invoice_lease_end_due(at=at)
    drafts = invoice_run(window=current, at=at)
    previous_end = current.start
    previous = Window.month((previous_end - timedelta(days=1)).year, (previous_end - timedelta(days=1)).month)
    finalized = 0
    if at >= previous.end + settings.BILLING_FINALIZE_AFTER:
        finalized = invoice_finalize_many(invoices=invoice_run(window=previous, at=at), at=at)
    return {"drafts": len(drafts), "finalized": finalized}


def billing_checks_run() -> ReconciliationRun:
    """What staff run on demand: the ledger proof, then the reconciliation with Stripe."""
    from billing.ledger import ledger_verify

    ledger_verify()
    return reconciliation_run_recent()


def billing_preferences_update(
    *, organization: Organization, invoice_at_lease_end: bool, invoice_language: str, actor: Any = None
) -> BillingProfile:
    """The buyer's invoicing preferences: also an invoice at each lease's end; the language of the PDFs."""
    if invoice_language not in ("zh-hans", "en"):
        raise ApplicationError("invalid_choice", _("Choose Chinese or English."), field="invoice_language")
    with transaction.atomic():
        profile, _created = BillingProfile.objects.select_for_update().get_or_create(organization=organization)
        before = {"invoice_at_lease_end": profile.invoice_at_lease_end, "invoice_language": profile.invoice_language}
        profile.invoice_at_lease_end = invoice_at_lease_end
        profile.invoice_language = invoice_language
        profile.save(update_fields=["invoice_at_lease_end", "invoice_language"])
        audit_record(
            action="billing.preferences_updated", target=profile, actor=actor, organization=organization,
            before=before, after={"invoice_at_lease_end": invoice_at_lease_end, "invoice_language": invoice_language},
        )  # fmt: skip
    return profile

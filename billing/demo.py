"""The demo's billing history (part of ``manage.py seed_demo``): two closed months of leases for the demo buyers,
their metered usage, and invoices in every state: September finalized and paid by card (through the local Stripe
that ``make run`` starts) with the providers' payouts split among the pools' revenue-share owners, October
finalized and open (with a compute-voucher subsidy where the buyer holds a grant), November a live draft.

Idempotent: a second run finds September's invoices and changes nothing.

The past leases are written directly (``marketplace.demo.backdated_lease``: the market only sells current and
future hours); everything after them goes through the real services: rating, finalization, vouchers, the ledger,
Stripe and payouts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from accounts.models import Organization
from billing import services
from billing import stripe_gateway as gateway
from billing.models import Invoice
from core.timeutils import Window, utcnow
from marketplace import demo as market_demo
from marketplace.models import Lease, Pool
from metering import demo as metering_demo

logger = logging.getLogger(__name__)

# (buyer e-mail domain, pool name, accelerators, start day, days, price per accelerator-hour, hours missing)
HISTORY = [
    ("bj-robotics.demo", "B栋 昇腾 910B", 64, 3, 10, "9.80", 0),
    ("bj-robotics.demo", "H20 推理池", 16, 15, 12, "7.20", 0),
    ("hz-precision.demo", "H800 训练池", 16, 8, 7, "17.50", 9),
    ("sz-vision.demo", "H20 推理池", 32, 1, 14, "7.00", 0),
    ("cd-ailab.demo", "A栋 H100 集群", 8, 20, 5, "18.90", 30),
]
MONTHS = [(2026, 9), (2026, 10)]


def _buyer(domain: str) -> Organization | None:
    return Organization.objects.filter(memberships__user__email__endswith=f"@{domain}").distinct().first()


def _usage(lease: Lease, missing_hours: int, now: datetime) -> None:
    """Signed usage through the real ingest (the issuers' evidence pages link its batches), with an outage of
    ``missing_hours`` from a third of the lease on (an SLA credit)."""
    hours = int((lease.end - lease.start).total_seconds() // 3600)
    outage = range(hours // 3, hours // 3 + missing_hours)
    metering_demo.signed_usage(lease, now=now, skip_hours=outage)


def _pay(invoice: Invoice) -> bool:
    if not settings.STRIPE_API_BASE:
        return False  # no local Stripe: the invoice stays open
    try:
        payment = services.payment_start(invoice=invoice)
        gateway.payment_intent_confirm(
            payment_intent_id=payment.stripe_payment_intent_id or "",
            payment_method="pm_card_visa",
            idempotency_key=f"demo-confirm-{payment.public_id}",
        )
        services.payment_sync(payment_intent_id=payment.stripe_payment_intent_id or "")
    except gateway.PaymentProviderUnavailable:
        logger.warning("demo: Stripe is not reachable; invoice %s stays open", invoice.number_display)
        return False
    return True


def seed() -> None:
    buyers = {domain: _buyer(domain) for domain, *_rest in HISTORY}
    if any(b is None for b in buyers.values()):
        return  # the accounts demo has not run
    september = Window.month(*MONTHS[0])
    if Invoice.objects.filter(buyer__in=[b for b in buyers.values() if b], period_start=september.start).exists():
        return
    now = utcnow()
    with transaction.atomic():
        for year, month in MONTHS:
            for domain, pool_name, accelerators, day, days, price, missing in HISTORY:
                pool = Pool.objects.filter(name=pool_name).select_related("accelerator_model").first()
                buyer = buyers[domain]
                if pool is None or buyer is None:
                    continue
                start = datetime(year, month, day, tzinfo=UTC)
                lease = market_demo.backdated_lease(
                    buyer=buyer,
                    pool=pool,
                    accelerators=accelerators,
                    start=start,
                    end=start + timedelta(days=days),
                    price=Decimal(price),
                    now=now,
                )
                _usage(lease, missing if month == 10 else 0, now)
    for index, (year, month) in enumerate(MONTHS):
        window = Window.month(year, month)
        drafts = services.invoice_run(window=window, buyer_ids=[b.pk for b in buyers.values() if b], at=now)
        services.invoice_finalize_many(invoices=drafts, at=window.end + timedelta(hours=7))
        if index == 0:
            for invoice in Invoice.objects.filter(pk__in=[d.pk for d in drafts]):
                _pay(invoice)
    services.payouts_due()
    services.invoice_run(window=Window.month(now.year, now.month), at=now)  # this month's live drafts

"""Celery tasks of billing. Each is safe to run twice (acks_late, outbox redelivery): every effect is keyed."""

from __future__ import annotations

from celery import shared_task

from billing import services
from billing.models import CreditNote, Payout


@shared_task(name="billing.tasks.invoice_run_due")
def invoice_run_due() -> dict[str, int]:
    """Refresh this month's drafts; finalize the last month's once its period has closed plus the margin."""
    return services.invoice_run_due()


@shared_task(name="billing.tasks.stripe_event_process")
def stripe_event_process(event_id: str) -> bool:
    return services.stripe_event_process(event_id=event_id)


@shared_task(name="billing.tasks.payout_execute")
def payout_execute(payout_public_id: str) -> str:
    payout = Payout.objects.get(public_id=payout_public_id)
    return services.payout_execute(payout=payout).status


@shared_task(name="billing.tasks.payouts_due")
def payouts_due() -> int:
    """Retry every released payout still pending (a transfer that failed or a worker that died)."""
    return services.payouts_due()


@shared_task(name="billing.tasks.credit_note_refund")
def credit_note_refund(credit_note_public_id: str) -> None:
    services.credit_note_refund(credit_note=CreditNote.objects.get(public_id=credit_note_public_id))


@shared_task(name="billing.tasks.voucher_settlements_post")
def voucher_settlements_post() -> int:
    return services.voucher_settlements_post()


@shared_task(name="billing.tasks.ledger_verify")
def ledger_verify() -> int:
    from billing.ledger import ledger_verify as verify

    return len(verify().mismatches)


@shared_task(name="billing.tasks.reconciliation_run")
def reconciliation_run() -> int:
    return len(services.reconciliation_run_recent().differences)

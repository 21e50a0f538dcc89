"""Celery tasks of the vouchers app. Safe to run twice (acks_late): each only acts on what is still due."""

from __future__ import annotations

from celery import shared_task

from vouchers import services


@shared_task(name="vouchers.tasks.grant_expire_due")
def grant_expire_due() -> int:
    """Expire grants whose expiry has come and return their unused amounts to the programmes' budgets."""
    return services.grant_expire_due()

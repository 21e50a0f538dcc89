"""Celery tasks of the green app. Safe to run twice or at once (acks_late, outbox redelivery): the allocation
job serialises per month on an advisory lock and allocates only what is still uncovered."""

from __future__ import annotations

from datetime import date

from celery import shared_task

from green import services


@shared_task(name="green.tasks.allocation_due")
def allocation_due() -> list[str]:
    """Beat (hourly): allocate every recent closed month that has lease usage and no completed run."""
    return [f"{m:%Y-%m}" for m in services.allocation_due()]


@shared_task(name="green.tasks.allocation_month")
def allocation_month(month: str, force: bool = False) -> int:
    """On demand: allocate one closed month ("YYYY-MM"), again if ``force``. Returns the month's green Wh."""
    period = services.allocation_month_run(month=date.fromisoformat(f"{month}-01"), force=force)
    return period.allocated_wh

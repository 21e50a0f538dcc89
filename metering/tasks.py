from celery import shared_task

from metering.services import usage_partitions_ensure


@shared_task(name="metering.tasks.usage_partitions_ensure", ignore_result=True)
def ensure_usage_partitions() -> list[str]:
    """Keep monthly partitions of usage records two months ahead (idempotent)."""
    return usage_partitions_ensure(months_ahead=2)


@shared_task(name="metering.tasks.usage_rollup", ignore_result=True)
def usage_rollup(hours_by_subject: dict[str, list[str]]) -> int:
    """Recompute the hourly rollups a batch touched, then re-reconcile those lease-hours if they are closed
    (idempotent: safe to run twice or late)."""
    from core.timeutils import HOUR, Window, parse_rfc3339
    from metering.services import lease_hours_reconcile, usage_rollup_hours

    total = 0
    touched: list[tuple[str, list]] = []
    for subject, hours in hours_by_subject.items():
        parsed = [parse_rfc3339(h) for h in hours]
        total += usage_rollup_hours(subject_id=subject, hours=parsed)
        if parsed:
            touched.append((subject, parsed))
    for subject, parsed in touched:
        lease_hours_reconcile(window=Window(min(parsed), max(parsed) + HOUR), lease_public_ids=[subject])
    return total


@shared_task(name="metering.tasks.usage_rollup_dirty", ignore_result=True)
def usage_rollup_dirty() -> int:
    """Recompute the hourly rollups (and reconciliation) of the hours ingests marked since the last run."""
    from metering.services import usage_rollup_dirty as rollup_dirty

    total = 0
    while consumed := rollup_dirty():  # drain a backlog in bounded transactions
        total += consumed
    return total


@shared_task(name="metering.tasks.lease_hours_reconcile_due", ignore_result=True)
def lease_hours_reconcile_due() -> int:
    """Reconcile closed lease-hours since the last run, including hours with no usage at all (idempotent)."""
    from metering.services import lease_hours_reconcile_due as reconcile_due

    return reconcile_due()

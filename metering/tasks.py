from celery import shared_task

from metering.services import usage_partitions_ensure


@shared_task(name="metering.tasks.usage_partitions_ensure", ignore_result=True)
def ensure_usage_partitions() -> list[str]:
    """Keep monthly partitions of usage records two months ahead (idempotent)."""
    return usage_partitions_ensure(months_ahead=2)


@shared_task(name="metering.tasks.usage_rollup", ignore_result=True)
def usage_rollup(hours_by_subject: dict[str, list[str]]) -> int:
    """Recompute the hourly rollups a batch touched (idempotent: safe to run twice or late)."""
    from core.timeutils import parse_rfc3339
    from metering.services import usage_rollup_hours

    return sum(
        usage_rollup_hours(subject_id=subject, hours=[parse_rfc3339(h) for h in hours])
        for subject, hours in hours_by_subject.items()
    )

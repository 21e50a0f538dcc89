from celery import shared_task

from metering.services import usage_partitions_ensure


@shared_task(name="metering.tasks.usage_partitions_ensure", ignore_result=True)
def ensure_usage_partitions() -> list[str]:
    """Keep monthly partitions of usage records two months ahead (idempotent)."""
    return usage_partitions_ensure(months_ahead=2)

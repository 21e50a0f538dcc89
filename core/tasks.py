from celery import shared_task

from core.outbox import outbox_relay as relay_pending


@shared_task(name="core.tasks.outbox_relay", ignore_result=True)
def outbox_relay() -> int:
    """Publish outbox rows that could not be published at commit time (broker down, process killed)."""
    return relay_pending()

"""The Celery application. Tasks are autodiscovered from each app's tasks.py."""

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("suanli")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _create_filesystem_broker_folders(sender: Celery, source: Any, **_kwargs: object) -> None:
    """kombu's filesystem transport (the embedded default) needs its folders to exist before any publish.

    ``on_after_configure`` hands over the loaded configuration; reading ``sender.conf`` from ``on_configure``
    would load it again, recursively.
    """
    if str(source.broker_url).startswith("filesystem"):
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            folder = (source.broker_transport_options or {}).get(key)
            if folder:
                Path(folder).mkdir(parents=True, exist_ok=True)


@task_postrun.connect
def _complete_outbox_message(
    sender: Any = None, task_id: str | None = None, state: str | None = None, **_kwargs: Any
) -> None:
    """A task published from the outbox has run (succeeded or failed for good): it is not to be published again.

    A retry (state RETRY) is not the end: Celery publishes the retry itself, and if that is lost the outbox
    redelivers it. Errors here are logged, never raised into the worker.
    """
    if not task_id or state not in ("SUCCESS", "FAILURE"):
        return
    try:
        from core.outbox import outbox_complete

        outbox_complete(task_id)
    except Exception:
        logging.getLogger(__name__).exception("outbox: could not mark task %s completed", task_id)

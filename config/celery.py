"""The Celery application. Tasks are autodiscovered from each app's tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("suanli")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

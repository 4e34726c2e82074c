"""The Celery app of the project, as Celery's "First steps with Django" describes it."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")

app = Celery("shopsite")
# Every CELERY_* setting of Django's settings (shopsite/settings.py).
app.config_from_object("django.conf:settings", namespace="CELERY")
# The tasks of the installed apps (shop/tasks.py).
app.autodiscover_tasks()

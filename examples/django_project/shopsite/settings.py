"""Settings of the example project: what differs between hosts comes from the
environment, which the celery_workers role writes into its environment file
(celery_workers_environment; CELERY_BROKER_URL and the broker's TLS settings
are the role's own)."""

import os
import ssl

SECRET_KEY = os.environ.get("SHOPSITE_SECRET_KEY", "not-a-secret-only-workers-run-here")
DEBUG = False
ALLOWED_HOSTS: list[str] = []
INSTALLED_APPS = ["django.contrib.contenttypes", "shop"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# SQLite in the workers' state directory (their only writable path).
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOPSITE_DB", "/var/lib/celery/shopsite.sqlite3"),
        "OPTIONS": {"timeout": 20},
    }
}

# Celery (namespace CELERY_ in shopsite/celery.py).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "rpc://")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ROUTES = {"shop.tasks.*": {"queue": "shop"}}
if (CELERY_BROKER_URL or "").startswith("amqps://"):
    # The role's TLS settings (celery_workers_broker_tls): verified, with a client certificate if given.
    CELERY_BROKER_USE_SSL = {
        "ca_certs": os.environ.get("CELERY_BROKER_TLS_CA") or None,
        "certfile": os.environ.get("CELERY_BROKER_TLS_CERT") or None,
        "keyfile": os.environ.get("CELERY_BROKER_TLS_KEY") or None,
        "cert_reqs": ssl.CERT_REQUIRED if os.environ.get("CELERY_BROKER_TLS_VERIFY", "1") != "0" else ssl.CERT_NONE,
        "server_hostname": os.environ.get("CELERY_BROKER_TLS_SERVER_NAME") or None,
    }

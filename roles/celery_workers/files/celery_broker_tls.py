"""Celery configuration module of the roles' own tools: broker TLS only.

The health check (celery_workers) and Flower (celery_flower, started as
``celery --config=celery_broker_tls flower``) load it; the application sets
the same ``broker_use_ssl`` itself (files/celery_app.py). It reads what the
roles write to the environment file: CELERY_BROKER_URL and, for an
``amqps://`` URL, CELERY_BROKER_TLS_CA, _CERT, _KEY, _SERVER_NAME, _VERIFY.
Deployed by the celery_workers role, which owns this file, and by the
celery_flower role from here.
"""

import os
import ssl


def tls_options(environ):
    """broker_use_ssl for the environment: False for a plain amqp:// URL."""
    if not environ.get("CELERY_BROKER_URL", "").lower().startswith("amqps://"):
        return False
    options = {
        "ca_certs": environ.get("CELERY_BROKER_TLS_CA") or None,
        "certfile": environ.get("CELERY_BROKER_TLS_CERT") or None,
        "keyfile": environ.get("CELERY_BROKER_TLS_KEY") or None,
    }
    if environ.get("CELERY_BROKER_TLS_VERIFY", "1") == "0":
        return dict(options, cert_reqs=ssl.CERT_NONE)
    # server_hostname None: kombu puts the URL's host there, and the name is checked.
    return dict(options, cert_reqs=ssl.CERT_REQUIRED, server_hostname=environ.get("CELERY_BROKER_TLS_SERVER_NAME") or None)


broker_use_ssl = tls_options(os.environ)

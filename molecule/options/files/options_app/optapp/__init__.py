"""Test application of the ``options`` scenario (deployed as a directory).

Configured from the environment only, like the role's default app:

``CELERY_BROKER_URL``      broker URL (required)
``CELERY_RESULT_BACKEND``  result backend, default ``rpc://``
``CELERY_BROKER_TLS_*``    broker TLS (CA, client certificate and key), read as the
                           role documents them; this scenario's broker URL is amqps://
``OPTAPP_TICK_SECONDS``    period of the ``optapp.tick`` task sent by beat; 0 (default): none
``OPTAPP_TICK_QUEUE``      queue of ``optapp.tick``, default ``opt-periodic``

Every worker of the scenario consumes queues of its own; the tests send each
task with ``apply_async(queue=...)`` to the one worker whose option they
check.  The prefetch multiplier is left at 1 here, so a worker reserves more
only when its ``--prefetch-multiplier`` says so.
"""

from __future__ import annotations

import os
import ssl

from celery import Celery

TICK_SECONDS = float(os.environ.get("OPTAPP_TICK_SECONDS", "0"))
TICK_QUEUE = os.environ.get("OPTAPP_TICK_QUEUE", "opt-periodic")


def _broker_use_ssl():
    """The contract of celery_workers_broker_tls, as an application of one's own reads it."""
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("amqps://"):
        return False
    return {"ca_certs": os.environ.get("CELERY_BROKER_TLS_CA") or None, "certfile": os.environ.get("CELERY_BROKER_TLS_CERT") or None,
            "keyfile": os.environ.get("CELERY_BROKER_TLS_KEY") or None, "cert_reqs": ssl.CERT_REQUIRED,
            "server_hostname": os.environ.get("CELERY_BROKER_TLS_SERVER_NAME") or None}


app = Celery("optapp", include=["optapp.tasks"])
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL"),
    broker_use_ssl=_broker_use_ssl(),
    result_backend=os.environ.get("CELERY_RESULT_BACKEND", "rpc://"),
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    task_default_queue="opt-default",
    # Unknown queues (one per worker) are declared on first use.
    task_create_missing_queues=True,
    # Acknowledge after the task: a busy worker holds at most its prefetch
    # count of unacknowledged messages (running and reserved together).
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    beat_schedule=(
        {"tick": {"task": "optapp.tick", "schedule": TICK_SECONDS, "options": {"queue": TICK_QUEUE}}}
        if TICK_SECONDS > 0 else {}
    ),
)

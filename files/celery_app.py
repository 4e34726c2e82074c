"""Default Celery application deployed by the ``celery_workers`` role.

Everything that differs between environments comes from the process
environment, which systemd loads from the role's environment file
(``EnvironmentFile=``), never from this file or a command line:

``CELERY_BROKER_URL``       broker URL, e.g. ``amqp://user:pass@host:5672/vhost`` (required)
``CELERY_RESULT_BACKEND``   result backend, default ``rpc://``
``CELERY_DEFAULT_QUEUE``    name of the default queue, default ``default``
``CELERY_BROKER_TLS_CA``    with an ``amqps://`` URL: CA bundle the broker's certificate must chain
                            to (default: the system's CA store); ``_CERT`` and ``_KEY``: client
                            certificate and key; ``_SERVER_NAME``: name to verify (default: the
                            URL's host); ``_VERIFY=0`` accepts any certificate (role:
                            ``celery_workers_broker_tls``, which writes these)
``CELERY_HEARTBEAT_SECONDS`` period of the ``heartbeat`` task that ``celery beat``
                            sends (role: ``celery_workers_beat_enabled``), default 60; 0: none

Queues: ``default`` plus ``other`` and ``reports``, each on a direct exchange
of its own name with a routing key equal to the queue name.  ``TASK_ROUTES``
sends ``celery_app.other_*`` tasks to ``other``; ``report`` names its queue in
its decorator; ``apply_async(queue=...)`` wins over both.  Every message is
published to the direct exchange of its queue (Celery would otherwise use the
anonymous exchange).  A worker may consume a queue that is not declared here:
it is created on a direct exchange of the same name (``task_create_missing_queues``).
"""

from __future__ import annotations

import fnmatch
import os
import socket
import ssl
import time

from celery import Celery
from kombu import Exchange, Queue

DEFAULT_QUEUE = os.environ.get("CELERY_DEFAULT_QUEUE", "default")
HEARTBEAT_SECONDS = float(os.environ.get("CELERY_HEARTBEAT_SECONDS", "60"))


#: Task routes: task name pattern -> queue.
TASK_ROUTES = {
    "celery_app.other_*": "other",
}


def _queue(name: str) -> Queue:
    """A queue bound to a direct exchange of the same name."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def route_task(name, args, kwargs, options, task=None, **kw):  # pylint: disable=unused-argument
    """Pick the queue of a task and publish to that queue's direct exchange.

    A queue given by the caller or the task's decorator wins, then the first
    TASK_ROUTES pattern that matches, then the default queue.
    """
    queue = options.get("queue")
    if queue is None:
        queue = next((q for pattern, q in TASK_ROUTES.items() if fnmatch.fnmatchcase(name, pattern)), DEFAULT_QUEUE)
    qname = getattr(queue, "name", queue)
    return {"queue": qname, "exchange": qname, "routing_key": qname}


def broker_use_ssl(environ=None):
    """TLS options of an ``amqps://`` broker connection (False for ``amqp://``).

    The certificate is always required and checked against the CA and the
    server name, unless CELERY_BROKER_TLS_VERIFY=0.  ``rpc://`` results
    travel over this same connection.
    """
    environ = os.environ if environ is None else environ
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


app = Celery("celery_app")
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL"),
    broker_use_ssl=broker_use_ssl(),
    result_backend=os.environ.get("CELERY_RESULT_BACKEND", "rpc://"),
    broker_connection_retry_on_startup=True,
    # Messages.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    # Queues and routing: each queue on its own direct exchange.
    task_default_queue=DEFAULT_QUEUE,
    task_default_exchange=DEFAULT_QUEUE,
    task_default_exchange_type="direct",
    task_default_routing_key=DEFAULT_QUEUE,
    task_queues=(_queue(DEFAULT_QUEUE), _queue("other"), _queue("reports")),
    task_create_missing_queues=True,
    task_routes=(route_task,),
    # A task is acknowledged only once it has finished, so a worker killed in
    # the middle of it (OOM, kill -9, host loss) leaves the message on the
    # broker to be redelivered; with prefetch 1 a worker holds only one
    # unacknowledged message per pool process.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Let Flower and `celery inspect` see what was sent and where.
    task_send_sent_event=True,
    worker_send_task_events=True,
    # Periodic tasks, sent by `celery beat` (one scheduler for the fleet).
    beat_schedule=(
        {"heartbeat": {"task": "celery_app.heartbeat", "schedule": HEARTBEAT_SECONDS}}
        if HEARTBEAT_SECONDS > 0 else {}
    ),
)


def _where(task) -> dict:
    info = task.request.delivery_info or {}
    return {
        "worker": task.request.hostname,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "queue": info.get("routing_key"),
        "exchange": info.get("exchange"),
    }


@app.task(bind=True, name="celery_app.whoami")
def whoami(self) -> dict:
    """Default queue: tell which worker ran it."""
    return _where(self)


@app.task(bind=True, name="celery_app.other_whoami")
def other_whoami(self) -> dict:
    """Routed to ``other`` by ``task_routes``."""
    return _where(self)


@app.task(bind=True, name="celery_app.report", queue="reports")
def report(self, title: str = "report") -> dict:
    """Sent to ``reports`` by the ``queue=`` of its decorator."""
    return dict(_where(self), title=title)


@app.task(bind=True, name="celery_app.sleep")
def sleep(self, seconds: float = 1.0, token: str | None = None) -> dict:
    """Sleep, then report when it started; ``token`` shows up in the worker's journal."""
    started = time.time()
    time.sleep(float(seconds))
    if token is not None:
        print(f"celery_app.sleep done token={token}", flush=True)
    return dict(_where(self), token=token, started=started)


@app.task(bind=True, name="celery_app.heartbeat", ignore_result=True)
def heartbeat(self) -> None:
    """Periodic (beat): log which worker is alive, in the default queue."""
    print(f"celery_app.heartbeat worker={self.request.hostname}", flush=True)


@app.task(name="celery_app.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="celery_app.noop", ignore_result=True)
def noop() -> None:
    """Does nothing: for throughput measurements."""
    return None

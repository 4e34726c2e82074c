"""Diagnostic tasks: each returns what the tests need to see from outside."""

from __future__ import annotations

import logging
import os
import resource
import socket
import sys
import threading
import time

from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from optapp import app

logger = get_task_logger(__name__)


def _patched() -> dict:
    """Which green library, if any, monkey-patched ``socket`` in this process."""
    out = {"gevent": False, "eventlet": False}
    if "gevent.monkey" in sys.modules:
        out["gevent"] = bool(sys.modules["gevent.monkey"].is_module_patched("socket"))
    if "eventlet.patcher" in sys.modules:
        out["eventlet"] = bool(sys.modules["eventlet.patcher"].is_monkey_patched("socket"))
    return out


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _where(task) -> dict:
    return {
        "worker": task.request.hostname,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "thread": threading.current_thread().name,
        "patched": _patched(),
        "maxrss_kib": _maxrss_kib(),
    }


@app.task(bind=True, name="optapp.where")
def where(self) -> dict:
    """Which process (and thread) ran the task."""
    return _where(self)


@app.task(bind=True, name="optapp.getenv")
def getenv(self, name: str) -> dict:
    """The value of an environment variable in the worker (None: unset)."""
    return dict(_where(self), name=name, value=os.environ.get(name))


@app.task(bind=True, name="optapp.extras")
def extras(self) -> dict:
    """The version of optextras, the package the role installed from a git repository (opt-worker1)."""
    import optextras  # pylint: disable=import-outside-toplevel

    return dict(_where(self), version=optextras.VERSION, file=optextras.__file__)


@app.task(bind=True, name="optapp.sleep")
def sleep(self, seconds: float = 1.0) -> dict:
    """Sleep; report when it started and ended (wall clock), to tell overlapping runs."""
    started = time.time()
    time.sleep(float(seconds))
    return dict(_where(self), started=started, ended=time.time())


@app.task(bind=True, name="optapp.grow")
def grow(self, mib: int) -> dict:
    """Hold mib MiB of touched memory for the task's duration; report the peak RSS."""
    before = _maxrss_kib()
    block = b"\x01" * (int(mib) * 1024 * 1024)  # written, so resident
    after = _maxrss_kib()
    del block
    return dict(_where(self), maxrss_before_kib=before, maxrss_after_kib=after)


@app.task(bind=True, name="optapp.soft_catch")
def soft_catch(self, seconds: float) -> dict:
    """Sleep; return the marker soft-limit-caught if the soft time limit interrupts it."""
    start = time.monotonic()
    try:
        time.sleep(float(seconds))
    except SoftTimeLimitExceeded:
        return dict(_where(self), marker="soft-limit-caught", elapsed=round(time.monotonic() - start, 3))
    return dict(_where(self), marker="completed", elapsed=round(time.monotonic() - start, 3))


@app.task(bind=True, name="optapp.ignore_soft")
def ignore_soft(self, seconds: float) -> dict:
    """Sleep for seconds whatever the soft time limit says (only a hard limit stops it)."""
    start = time.monotonic()
    caught = 0
    while (left := float(seconds) - (time.monotonic() - start)) > 0:
        try:
            time.sleep(min(left, 0.5))
        except SoftTimeLimitExceeded:
            caught += 1
    return dict(_where(self), marker="survived", soft_caught=caught, elapsed=round(time.monotonic() - start, 3))


@app.task(bind=True, name="optapp.log")
def log(self, level: str, message: str) -> dict:
    """Log message at level (debug, info, warning, ...) with the task logger."""
    logger.log(getattr(logging, level.upper()), message)
    return _where(self)


@app.task(bind=True, name="optapp.tick", ignore_result=True)
def tick(self) -> None:
    """Periodic (beat): one journal line per run."""
    logger.warning("optapp.tick ran on %s pid=%s", self.request.hostname, os.getpid())

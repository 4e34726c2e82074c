"""The options scenario's helpers; the shared ones are molecule/shared/fleet.py.

Every option is checked from outside the worker: through the broker (a
Celery client on the controller that loads the scenario's own application,
files/options_app/, with the scenario's broker URL; ``rabbitmqctl`` on the
broker host), systemd (``systemctl show``), the journal and /proc of the
worker host (testinfra's podman backend). Expected values come from the
scenario's inventory (the files the converge used), never from the tests.
Each test sends a fixed number of tasks; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import sys
import time

import pytest

os.environ.setdefault("MOLECULE_SCENARIO_DIRECTORY", str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))

# pylint: disable=wrong-import-position,unused-import
import fleet  # noqa: E402
from fleet import BROKER, GROUP_VARS, SCENARIO, deadline, main_pid, pytest_configure, rabbitmqctl, report, wait_for  # noqa: E402,F401

APP_DIR = SCENARIO / "files" / "options_app"
# The host of one worker per option.
WORKER_HOST = "opt-worker1"
HOST_VARS = fleet.HOST_VARS[WORKER_HOST]


def setting(name: str):
    """A role variable as the scenario sets it for the worker host (host_vars, group_vars, the role's default)."""
    return fleet.setting(name, WORKER_HOST)


def worker(name: str) -> dict:
    """The worker `name` of the worker host, as it should run (overrides applied, sizes resolved)."""
    found = [w for w in all_workers() if w["name"] == name]
    assert found, f"worker {name} is not in {WORKER_HOST}'s host_vars"
    return found[0]


def all_workers() -> list[dict]:
    return fleet.workers_of(WORKER_HOST)


def node(name: str = WORKER_HOST):
    return fleet.node(name)


def unit_props(unit: str, *props: str) -> dict[str, str]:
    return fleet.unit_props(WORKER_HOST, unit, *props)


def children_of(pid: int) -> set[int]:
    return fleet.children_of(WORKER_HOST, pid)


def journal_messages(w: dict, since: float) -> list[str]:
    """Messages the worker logged since a time (its SyslogIdentifier celery-worker-NAME)."""
    return [e["MESSAGE"] for e in fleet.journal(WORKER_HOST, f"-t celery-worker-{w['name']}", since=since)]


# ---------------------------------------------------------------------------
# Broker and Celery client
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def optapp():
    """The deployed application package, loaded on the controller against the scenario's broker."""
    os.environ["CELERY_BROKER_URL"] = fleet.broker_url()
    os.environ["CELERY_RESULT_BACKEND"] = "rpc://"
    os.environ.pop("OPTAPP_TICK_SECONDS", None)  # the controller never schedules
    sys.path.insert(0, str(APP_DIR))
    try:
        package = importlib.import_module("optapp")
        tasks = importlib.import_module("optapp.tasks")
    finally:
        sys.path.remove(str(APP_DIR))
    yield tasks
    package.app.close()


def inspect(optapp, w: dict, timeout: float = 3.0):
    return optapp.app.control.inspect(destination=[w["node"]], timeout=timeout)


def stats(optapp, w: dict) -> dict:
    """celery inspect stats of one worker (fails if it does not answer)."""
    got = (inspect(optapp, w).stats() or {}).get(w["node"])
    assert got, f"{w['node']} did not answer inspect stats"
    return got


def call(optapp, w: dict, task: str, *args, timeout: float = 30, **kwargs):
    """Run one task on the worker w (its first queue) and return its result."""
    result = getattr(optapp, task).apply_async(args, kwargs, queue=w["queue"])
    return result.get(timeout=timeout)


def queue_counts(queue: str) -> tuple[int, int]:
    """(messages ready, messages unacknowledged) of a queue, as RabbitMQ counts them."""
    for line in rabbitmqctl("list_queues", "name", "messages_ready", "messages_unacknowledged").splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == queue:
            return int(fields[1]), int(fields[2])
    raise AssertionError(f"queue {queue} not found on the broker")


@contextlib.contextmanager
def drained(results, timeout: float):
    """Yield, then wait (bounded) for every result, so that no test leaves work behind."""
    try:
        yield results
    finally:
        end = time.monotonic() + timeout
        for r in results:
            with contextlib.suppress(Exception):
                r.get(timeout=max(0.5, end - time.monotonic()), propagate=False)

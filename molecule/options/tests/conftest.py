"""Shared helpers of the options scenario's tests.

Every option is checked from outside the worker: through the broker (a
Celery client on the controller that loads the scenario's own application,
files/options_app/, with the scenario's broker URL; ``rabbitmqctl`` on the
broker host), systemd (``systemctl show``), the journal and /proc of the
worker host (testinfra's podman backend). Expected values come from the
scenario's inventory (the files the converge used), never from the tests.

Everything is bounded: each test has a hard deadline (SIGALRM, mark
``deadline``), every result a timeout, every wait loop a deadline, and each
test sends a fixed number of tasks.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import pathlib
import signal
import sys
import time

import pytest
import testinfra
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]
INVENTORY = SCENARIO / "inventory"
APP_DIR = SCENARIO / "files" / "options_app"
ROLE_DEFAULTS = yaml.safe_load((PROJECT / "roles" / "celery_workers" / "defaults" / "main.yml").read_text())

BROKER = "opt-broker"
WORKER_HOST = "opt-worker1"
UNIT_PREFIX = "celery-worker-"


def _vars(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text()) if path.exists() else {}


GROUP_VARS = {**_vars(INVENTORY / "group_vars" / "all.yml"), **_vars(INVENTORY / "group_vars" / "celery_workers.yml")}
HOST_VARS = _vars(INVENTORY / "host_vars" / f"{WORKER_HOST}.yml")


def setting(name: str):
    """A role variable as the scenario sets it (host_vars, group_vars, then the role's default)."""
    for source in (HOST_VARS, GROUP_VARS, ROLE_DEFAULTS):
        if name in source:
            return source[name]
    raise KeyError(name)


@functools.cache
def host_cpus() -> int:
    """What `nproc` says on the worker host: the CPUs relative sizes are resolved against."""
    return int(testinfra.get_host(f"podman://{WORKER_HOST}").check_output("nproc"))


def resolve(size) -> int:
    """A size of the inventory as a number, from the documented rule (per_cpu x CPUs
    rounded down, at least min (default 1), at most max), not from the role's filter."""
    if not isinstance(size, dict):
        return int(size)
    return min(max(int(float(size["per_cpu"]) * host_cpus()), int(size.get("min", 1))), int(size.get("max", 10**9)))


def worker(name: str) -> dict:
    """The inventory entry of worker name as the host should run it: its
    celery_workers_overrides applied, sizes resolved, normalised (queues, node,
    unit, pool, concurrency)."""
    for entry in HOST_VARS["celery_workers"]:
        if entry["name"] == name:
            out = {**entry, **HOST_VARS.get("celery_workers_overrides", {}).get(name, {})}
            if "autoscale" in out:
                out["autoscale"] = {bound: resolve(size) for bound, size in out["autoscale"].items()}
            out["queues"] = list(entry["queues"] if "queues" in entry else [entry["queue"]])
            out["queue"] = out["queues"][0]
            out["node"] = f"{name}@{WORKER_HOST}"
            out["unit"] = f"{UNIT_PREFIX}{name}.service"
            out.setdefault("pool", setting("celery_workers_pool"))
            out.setdefault("loglevel", setting("celery_workers_loglevel"))
            if "autoscale" not in entry:
                out.setdefault("concurrency", setting("celery_workers_concurrency"))
            return out
    raise KeyError(f"worker {name} is not in {WORKER_HOST}'s host_vars")


def all_workers() -> list[dict]:
    return [worker(e["name"]) for e in HOST_VARS["celery_workers"]]


# ---------------------------------------------------------------------------
# Deadlines and bounded waits
# ---------------------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line("markers", "deadline(seconds): hard time limit of the test (SIGALRM)")


class DeadlineExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def deadline(request):
    """Fail a test that runs longer than its deadline(seconds) mark (default 90 s)."""
    mark = request.node.get_closest_marker("deadline")
    seconds = int(mark.args[0]) if mark else 90

    def _expired(signum, frame):
        raise DeadlineExceeded(f"{request.node.name}: hard deadline of {seconds}s exceeded")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(seconds)
    try:
        yield seconds
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    """Call check() until it returns a true value (returned); fail after timeout seconds."""
    end = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = check()
        except Exception as exc:  # pylint: disable=broad-except
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= end:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def report(what: str, **values) -> None:
    """Print what a test observed (molecule runs pytest with -s)."""
    print(f"\n  [{what}] " + ", ".join(f"{k}={v}" for k, v in values.items()), flush=True)


# ---------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------

def node(name: str = WORKER_HOST):
    """A testinfra host for a container of the scenario (podman exec)."""
    return testinfra.get_host(f"podman://{name}")


def unit_props(unit: str, *props: str, hostname: str = WORKER_HOST) -> dict[str, str]:
    out = node(hostname).check_output(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def main_pid(w: dict) -> int:
    pid = int(unit_props(w["unit"], "MainPID")["MainPID"])
    assert pid > 0, f"{w['unit']} has no main process"
    return pid


def children_of(pid: int) -> set[int]:
    out = node().run(f"pgrep -P {pid}").stdout
    return {int(p) for p in out.split()}


def journal_messages(w: dict, since: float) -> list[str]:
    """Messages the worker's unit logged since a time (its SyslogIdentifier)."""
    out = node().check_output(
        f"journalctl --no-pager -o json --output-fields=MESSAGE -t {UNIT_PREFIX}{w['name']} --since=@{since:.0f}")
    messages = []
    for line in out.splitlines():
        message = json.loads(line).get("MESSAGE", "")
        if isinstance(message, list):  # non-UTF-8 message: bytes
            message = bytes(message).decode("utf-8", "replace")
        messages.append(message)
    return messages


# ---------------------------------------------------------------------------
# Broker and Celery client
# ---------------------------------------------------------------------------

def broker_password() -> str:
    return (PROJECT / ".lab" / "options_broker_password").read_text().split()[0]


def broker_url() -> str:
    return "amqp://{user}:{pw}@127.0.0.1:{port}/{vhost}".format(
        user=GROUP_VARS["lab_broker_user"], pw=broker_password(),
        port=GROUP_VARS["lab_broker_amqp_port"], vhost=GROUP_VARS["lab_broker_vhost"])


@pytest.fixture(scope="session")
def optapp():
    """The deployed application package, loaded on the controller against the scenario's broker."""
    os.environ["CELERY_BROKER_URL"] = broker_url()
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


def rabbitmqctl(*args: str) -> str:
    vhost = GROUP_VARS["lab_broker_vhost"]
    return node(BROKER).check_output("rabbitmqctl -q --no-table-headers -p %s %s" % (vhost, " ".join(args)))


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

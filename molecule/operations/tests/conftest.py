"""Shared helpers of the operations scenario's tests.

Everything is bounded: each test has a hard deadline (SIGALRM, see
``deadline``), every subprocess a timeout, every wait loop a deadline, and
the number of tasks sent is fixed by the test. Traffic goes only to the
scenario's containers and to its broker on 127.0.0.1.

The hosts are driven with ``podman exec`` (testinfra's podman backend), the
broker with a Celery client on the controller that loads the role's
application (files/celery_app.py) with the scenario's
broker URL, and the role itself with ``ansible-playbook playbooks/site.yml``
against molecule's inventory plus, when a test changes variables, a second
inventory source whose host_vars override those of the scenario (what an
operator editing host_vars would do).
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
import testinfra
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]
INVENTORY = SCENARIO / "inventory"
APP_FILE = PROJECT / "files" / "celery_app.py"
PLAYBOOK = PROJECT / "playbooks" / "site.yml"
ROLE_DEFAULTS = yaml.safe_load((PROJECT / "roles" / "celery_workers" / "defaults" / "main.yml").read_text())

BROKER = "ops-broker"
HOST_IMAGE = "localhost/celery-lab-host:bookworm"
UNIT_PREFIX = "celery-worker-"
BEAT_UNIT = "celery-beat.service"
BEAT_SCHEDULE = "/var/lib/celery/beat/celerybeat-schedule"


def _vars(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text()) if path.exists() else {}


GROUP_VARS = {**_vars(INVENTORY / "group_vars" / "all.yml"), **_vars(INVENTORY / "group_vars" / "celery_workers.yml")}
HOST_VARS = {p.stem: _vars(p) for p in sorted((INVENTORY / "host_vars").glob("*.yml"))}
WORKER_HOSTS = sorted(h for h, v in HOST_VARS.items() if "celery_workers" in v)
BEAT_HOSTS = sorted(h for h, v in HOST_VARS.items() if v.get("celery_workers_beat_enabled"))


def queues_of(entry: dict) -> list[str]:
    return list(entry["queues"] if "queues" in entry else [entry["queue"]])


def workers_of(hostname: str) -> list[dict]:
    """The host's workers as the inventory gives them, normalised."""
    out = []
    for entry in HOST_VARS[hostname]["celery_workers"]:
        worker = dict(entry, queues=queues_of(entry), host=hostname, node=f"{entry['name']}@{hostname}")
        worker.setdefault("concurrency", ROLE_DEFAULTS["celery_workers_concurrency"])
        out.append(worker)
    return out


def all_workers() -> list[dict]:
    return [w for h in WORKER_HOSTS for w in workers_of(h)]


def consumers_of(queue: str) -> list[dict]:
    return [w for w in all_workers() if queue in w["queues"]]


# ---------------------------------------------------------------------------
# Deadlines
# ---------------------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line("markers", "deadline(seconds): hard time limit of the test (SIGALRM)")


class DeadlineExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def deadline(request):
    """Fail a test that runs longer than its deadline(seconds) mark (default 120 s)."""
    mark = request.node.get_closest_marker("deadline")
    seconds = int(mark.args[0]) if mark else 120

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


# ---------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------

def node(name: str):
    """A testinfra host for a container of the scenario (podman exec)."""
    return testinfra.get_host(f"podman://{name}")


def unit_props(hostname: str, unit: str, *props: str) -> dict[str, str]:
    out = node(hostname).check_output(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def worker_unit(name: str) -> str:
    return f"{UNIT_PREFIX}{name}.service"


def fleet_state() -> dict[tuple[str, str], dict[str, str]]:
    """(host, worker) -> MainPID, NRestarts, ActiveState, UnitFileState, pool children."""
    state = {}
    for w in all_workers():
        props = unit_props(w["host"], worker_unit(w["name"]), "MainPID", "NRestarts", "ActiveState", "UnitFileState")
        props["children"] = children_of(w["host"], props["MainPID"])
        state[(w["host"], w["name"])] = props
    for h in BEAT_HOSTS:
        state[(h, "beat")] = unit_props(h, BEAT_UNIT, "MainPID", "NRestarts", "ActiveState", "UnitFileState")
    return state


def children_of(hostname: str, pid: str) -> set[int]:
    if pid in ("", "0"):
        return set()
    out = node(hostname).run(f"pgrep -P {pid}").stdout
    return {int(p) for p in out.split()}


def journal(hostname: str, *args: str, since: float | None = None, grep: str | None = None) -> list[dict]:
    """Journal entries of a host as dicts (json output), optionally filtered with grep -F."""
    cmd = "journalctl --no-pager -o json --output-fields=MESSAGE,_PID,_SYSTEMD_UNIT,UNIT,SYSLOG_IDENTIFIER"
    if since is not None:
        cmd += f" --since=@{since:.0f}"
    cmd += " " + " ".join(args)
    if grep is not None:
        cmd += f" | grep -F -- {grep!r} || true"
    out = node(hostname).check_output(cmd)
    entries = []
    for line in out.splitlines():
        entry = json.loads(line)
        if isinstance(entry.get("MESSAGE"), list):  # non-UTF-8 message: bytes
            entry["MESSAGE"] = bytes(entry["MESSAGE"]).decode("utf-8", "replace")
        entry["ts"] = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        entries.append(entry)
    return entries


TOKEN_RE = re.compile(r"celery_app\.sleep done token=(\S+)")


def executed_tokens(prefix: str, since: float) -> collections.Counter:
    """How many times each task token starting with prefix ran, from the journals of all worker hosts."""
    seen = collections.Counter()
    for h in WORKER_HOSTS:
        for entry in journal(h, f"-u '{UNIT_PREFIX}*'", since=since, grep=f"token={prefix}"):
            match = TOKEN_RE.search(entry["MESSAGE"])
            if match:
                seen[match.group(1)] += 1
    return seen


def wait_for_tokens(prefix: str, since: float, expected: set[str], timeout: float = 30) -> collections.Counter:
    """executed_tokens(prefix, since) once every expected token is in the journals.

    A task's result can reach the client before journald has stored the line
    the task printed: read until all are there (bounded), then read once more
    after a short pause so that a late duplicate is counted too.
    """
    wait_for(f"{len(expected)} tokens {prefix}* in the journals",
             lambda: expected <= set(executed_tokens(prefix, since)), timeout=timeout, interval=1)
    time.sleep(1)
    return executed_tokens(prefix, since)


def token_entries(prefix: str, since: float) -> dict[str, list[dict]]:
    """token -> journal entries of its completion (host, unit, pid, time)."""
    found = collections.defaultdict(list)
    for h in WORKER_HOSTS:
        for entry in journal(h, f"-u '{UNIT_PREFIX}*'", since=since, grep=f"token={prefix}"):
            match = TOKEN_RE.search(entry["MESSAGE"])
            if match:
                found[match.group(1)].append(dict(entry, host=h))
    return found


def unit_events(hostname: str, unit: str, since: float) -> list[tuple[float, str]]:
    """systemd's own messages about a unit: (time, 'Stopping'|'Stopped'|'Starting'|'Started'|...)."""
    events = []
    for entry in journal(hostname, f"-u {unit}", since=since):
        if entry.get("_PID") == "1":
            events.append((entry["ts"], entry["MESSAGE"].split(" ", 1)[0], entry["MESSAGE"]))
    return events


def restart_windows(hostname: str, names: list[str], since: float) -> list[tuple[float, float, float, str]]:
    """(Stopping, Started, ready, name) of each worker restarted once since `since`, sorted by Stopping.

    `ready` is when the new process logged "<node> ready." (Celery: consuming).
    Fails unless each worker was stopped and started exactly once.
    """
    windows = []
    for name in names:
        unit = worker_unit(name)
        events = unit_events(hostname, unit, since)
        stopping = [ts for ts, word, _ in events if word == "Stopping"]
        started = [ts for ts, word, _ in events if word == "Started"]
        assert len(stopping) == 1 and len(started) == 1, (name, events)
        ready = wait_for(f"{name}@{hostname} to log ready", lambda: [
            e["ts"] for e in journal(hostname, f"-u {unit}", since=since, grep=f"{name}@{hostname} ready.")
            if e["ts"] > started[0] - 1], timeout=30)
        windows.append((stopping[0], started[0], ready[0], name))
    return sorted(windows)


def assert_rolling(windows: list[tuple[float, float, float, str]]) -> None:
    """Not two workers down at once: each was stopped only after the previous one was back and ready."""
    for (_, started, ready, first), (stopping, _, _, second) in zip(windows, windows[1:]):
        assert stopping > started and stopping > ready, f"{second} was stopped before {first} was back"


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]


# ---------------------------------------------------------------------------
# Broker and Celery client
# ---------------------------------------------------------------------------

def broker_password() -> str:
    return (PROJECT / ".lab" / "operations_broker_password").read_text().split()[0]


def broker_url() -> str:
    return "amqp://{user}:{pw}@127.0.0.1:{port}/{vhost}".format(
        user=GROUP_VARS["lab_broker_user"], pw=broker_password(),
        port=GROUP_VARS["lab_broker_amqp_port"], vhost=GROUP_VARS["lab_broker_vhost"])


@contextlib.contextmanager
def celery_client():
    """A fresh instance of the deployed application, pointed at the scenario's broker.

    Fresh on each use: a broker restart must not leave a test with a dead
    connection of an earlier one.
    """
    os.environ["CELERY_BROKER_URL"] = broker_url()
    os.environ["CELERY_RESULT_BACKEND"] = "rpc://"
    spec = importlib.util.spec_from_file_location(f"celery_app_{uuid.uuid4().hex}", APP_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        module.app.close()


def fleet_answers(app, workers: list[dict] | None = None) -> bool:
    """True when every worker answers a ping and consumes exactly its queues."""
    workers = all_workers() if workers is None else workers
    inspect = app.control.inspect(destination=[w["node"] for w in workers], timeout=2.0)
    active = inspect.active_queues() or {}
    return all(sorted(q["name"] for q in active.get(w["node"], [])) == sorted(w["queues"]) for w in workers)


def run_tasks(app, queue: str, count: int, prefix: str, timeout: float) -> list[dict]:
    """Send count quick sleep tasks to queue and return their results (all must come back)."""
    results = [app.sleep.apply_async((0.01,), {"token": f"{prefix}-{i}"}, queue=queue) for i in range(count)]
    end = time.monotonic() + timeout
    return [r.get(timeout=max(1.0, end - time.monotonic())) for r in results]


# ---------------------------------------------------------------------------
# ansible-playbook
# ---------------------------------------------------------------------------

def molecule_inventory() -> pathlib.Path:
    """Molecule's inventory of this scenario (ansible_inventory.yml + links to our group/host_vars)."""
    if os.environ.get("MOLECULE_INVENTORY_FILE"):
        return pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    if os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY"):
        return pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
    found = sorted(pathlib.Path.home().glob(f".ansible/tmp/molecule.*.{SCENARIO.name}/inventory"),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        pytest.fail("no molecule inventory of the scenario: run `molecule converge -s operations` first")
    return found[-1]


def write_override(directory: pathlib.Path, host_vars: dict[str, dict]) -> pathlib.Path:
    """A second inventory source whose host_vars win over the scenario's (later source wins)."""
    (directory / "host_vars").mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {h: {} for h in host_vars}}}))
    for hostname, values in host_vars.items():
        (directory / "host_vars" / f"{hostname}.yml").write_text(yaml.safe_dump(values, sort_keys=False))
    return directory


def playbook_command(override: pathlib.Path | None = None, *args: str) -> list[str]:
    cmd = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), str(PLAYBOOK), "-i", str(molecule_inventory())]
    if override is not None:
        cmd += ["-i", str(override)]
    return cmd + list(args)


def playbook_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(ANSIBLE_ROLES_PATH=str(PROJECT / "roles"), MOLECULE_PROJECT_DIRECTORY=str(PROJECT),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PYTHONUNBUFFERED="1",
               # Time stamps in the logs kept by the tests.
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks")
    return env


def start_playbook(log: pathlib.Path, override: pathlib.Path | None = None, *args: str) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(playbook_command(override, *args), cwd=PROJECT, env=playbook_env(),
                                stdout=out, stderr=subprocess.STDOUT)


def run_playbook(log: pathlib.Path, override: pathlib.Path | None = None, *args: str,
                 timeout: float = 300) -> tuple[int, str]:
    proc = start_playbook(log, override, *args)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"ansible-playbook did not finish in {timeout}s:\n{log.read_text()[-3000:]}")
    return rc, log.read_text()


RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host (summed over serial batches)."""
    out = collections.defaultdict(lambda: collections.Counter())
    for host, ok, changed, unreachable, failed in RECAP_RE.findall(output):
        out[host].update(ok=int(ok), changed=int(changed), unreachable=int(unreachable), failed=int(failed))
    return {h: dict(c) for h, c in out.items()}

"""Shared by the tests of every molecule scenario: each scenario's conftest.py
puts this directory on sys.path and imports what it needs from here.

What the scenario is comes from its own files (molecule.yml's platforms, its
inventory); what the role does comes from the role (vars/main.yml for unit
names, plugins/plugin_utils/_systemd.py for the sandbox), so that no rule is
written a second time here. Sizes relative to the CPUs are resolved here from
the documented rule, on purpose: an oracle independent of the role's filter.

Everything is bounded: each test has a hard deadline (SIGALRM, mark
``deadline``), every subprocess a timeout, every wait loop a deadline. Traffic
goes only to the scenario's containers and to its broker on 127.0.0.1.

The role runs with ``ansible-playbook`` under molecule's own ansible.cfg and
inventory of the scenario (its ephemeral directory), plus, when a test changes
variables, a second inventory source whose host_vars win (what an operator
editing host_vars would do).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib.util
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import testinfra
import yaml

SCENARIO = pathlib.Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]).resolve()
NAME = SCENARIO.name
PROJECT = SCENARIO.parents[1]
INVENTORY = SCENARIO / "inventory"
ROLE = PROJECT / "roles" / "celery_workers"
APP_FILE = PROJECT / "files" / "celery_app.py"
SITE = PROJECT / "site.yml"
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"

sys.path.insert(0, str(PROJECT / "collections"))
from ansible_collections.celery_fleet.celery.plugins.plugin_utils._systemd import HARDENING  # noqa: E402  pylint: disable=wrong-import-position


def _yaml(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


ROLE_DEFAULTS = _yaml(ROLE / "defaults" / "main.yml")
ROLE_VARS = _yaml(ROLE / "vars" / "main.yml")
# The unit of worker NAME: UNIT_FORMAT % NAME (celery-worker@NAME.service).
UNIT_FORMAT = ROLE_VARS["__celery_workers_unit_format"]
# 1.x's unit of worker NAME, replaced on upgrade.
LEGACY_FORMAT = ROLE_VARS["__celery_workers_legacy_format"]
TARGET = ROLE_VARS["__celery_workers_target"]
BEAT_UNIT = ROLE_VARS["__celery_workers_beat_unit"]
# The sandbox of every unit, as "Directive=value" lines.
HARDENING_PROPS = dict(line.split("=", 1) for line in HARDENING)

PLATFORMS = _yaml(SCENARIO / "molecule.yml")["platforms"]
GROUP_VARS = {**_yaml(INVENTORY / "group_vars" / "all.yml"), **_yaml(INVENTORY / "group_vars" / "celery_workers.yml")}
HOST_VARS = {p["name"]: _yaml(INVENTORY / "host_vars" / f"{p['name']}.yml") for p in PLATFORMS}
BROKER = next(p["name"] for p in PLATFORMS if "broker" in p["groups"])
WORKER_HOSTS = [p["name"] for p in PLATFORMS if "celery_workers" in p["groups"]]
FLOWER_HOSTS = [p["name"] for p in PLATFORMS if "celery_flower" in p.get("groups", [])]
BEAT_HOSTS = [h for h in WORKER_HOSTS if HOST_VARS[h].get("celery_workers_beat_enabled")]
# Flower's settings in the scenarios that deploy it, and its unit (the role's vars).
FLOWER_VARS = _yaml(INVENTORY / "group_vars" / "celery_flower.yml")
FLOWER_UNIT = _yaml(PROJECT / "roles" / "celery_flower" / "vars" / "main.yml")["__celery_flower_unit"]


def setting(name: str, hostname: str | None = None):
    """A role variable as the scenario sets it: host_vars, group_vars, then the role's default."""
    for source in ([HOST_VARS[hostname]] if hostname else []) + [GROUP_VARS, ROLE_DEFAULTS]:
        if name in source:
            return source[name]
    raise KeyError(name)


def unit(name: str) -> str:
    return UNIT_FORMAT % name


# ---------------------------------------------------------------------------
# The fleet the inventory describes
# ---------------------------------------------------------------------------

def queues_of(entry: dict) -> list[str]:
    return list(entry["queues"] if "queues" in entry else [entry["queue"]])


@functools.cache
def cpus_of(hostname: str) -> int:
    """What `nproc` says on the host: the CPUs relative sizes are resolved against."""
    return int(node(hostname).check_output("nproc"))


def resolve(size, cpus: int) -> int:
    """A size of the inventory as a number, from the documented rule (per_cpu x CPUs rounded
    down, at least min (default 1), at most max), not from the role's filter."""
    if not isinstance(size, dict):
        return int(size)
    return min(max(int(float(size["per_cpu"]) * cpus), int(size.get("min", 1))), int(size.get("max", 10**9)))


def workers_of(hostname: str) -> list[dict]:
    """The host's workers as it should run them: its celery_workers_overrides applied, sizes
    resolved, normalised (queues, host, node, unit, pool, loglevel, concurrency or autoscale)."""
    overrides = setting("celery_workers_overrides", hostname)
    out = []
    for entry in setting("celery_workers", hostname):
        fields = overrides.get(entry["name"], {})
        if fields.get("present", True) is False:
            continue
        worker = {k: v for k, v in entry.items() if not ({"concurrency", "autoscale"} & set(fields) and k in ("concurrency", "autoscale"))}
        worker.update({k: v for k, v in fields.items() if k != "present"})
        worker["queues"] = queues_of(entry)
        worker["queue"] = worker["queues"][0]
        worker.update(host=hostname, node=f"{entry['name']}@{hostname}", unit=unit(entry["name"]))
        worker.setdefault("pool", setting("celery_workers_pool", hostname))
        worker.setdefault("loglevel", setting("celery_workers_loglevel", hostname))
        if "autoscale" in worker:
            worker["autoscale"] = {bound: resolve(size, cpus_of(hostname)) for bound, size in worker["autoscale"].items()}
        else:
            worker["concurrency"] = resolve(worker.get("concurrency", setting("celery_workers_concurrency", hostname)), cpus_of(hostname))
        out.append(worker)
    return out


def all_workers() -> list[dict]:
    return [w for h in WORKER_HOSTS for w in workers_of(h)]


def consumers_of(queue: str) -> list[dict]:
    return [w for w in all_workers() if queue in w["queues"]]


# ---------------------------------------------------------------------------
# Deadlines and bounded waits (conftest.py imports pytest_configure and deadline)
# ---------------------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line("markers", "deadline(seconds): hard time limit of the test (SIGALRM)")


class DeadlineExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def deadline(request):
    """Fail a test that runs longer than its deadline(seconds) mark (default 180 s)."""
    mark = request.node.get_closest_marker("deadline")
    seconds = int(mark.args[0]) if mark else 180

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
    """Print what a test observed (the verifier runs pytest with -s)."""
    print(f"\n  [{what}] " + ", ".join(f"{k}={v}" for k, v in values.items()), flush=True)


# ---------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------

def listeners(port: int) -> list[str]:
    """The local addresses of the TCP sockets listening on port (the containers share the host network)."""
    out = subprocess.run(["ss", "-H", "-l", "-t", "-n", f"sport = :{port}"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def node(name: str):
    """A testinfra host for a container of the scenario (podman exec)."""
    return testinfra.get_host(f"podman://{name}")


def unit_props(hostname: str, unit_name: str, *props: str) -> dict[str, str]:
    out = node(hostname).check_output(f"systemctl show {unit_name} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def main_pid(w: dict) -> int:
    pid = int(unit_props(w["host"], w["unit"], "MainPID")["MainPID"])
    assert pid > 0, f"{w['unit']} on {w['host']} has no main process"
    return pid


def children_of(hostname: str, pid) -> set[int]:
    if str(pid) in ("", "0"):
        return set()
    return {int(p) for p in node(hostname).run(f"pgrep -P {pid}").stdout.split()}


def fleet_state() -> dict[tuple[str, str], dict[str, str]]:
    """(host, worker) -> MainPID, NRestarts, ActiveState, UnitFileState, pool children; beat too."""
    state = {}
    for w in all_workers():
        props = unit_props(w["host"], w["unit"], "MainPID", "NRestarts", "ActiveState", "UnitFileState")
        props["children"] = children_of(w["host"], props["MainPID"])
        state[(w["host"], w["name"])] = props
    for h in BEAT_HOSTS:
        state[(h, "beat")] = unit_props(h, BEAT_UNIT, "MainPID", "NRestarts", "ActiveState", "UnitFileState")
    return state


def journal(hostname: str, *args: str, since: float | None = None, grep: str | None = None) -> list[dict]:
    """Journal entries of a host as dicts (json output), optionally filtered with grep -F."""
    cmd = "journalctl --no-pager -o json --output-fields=MESSAGE,_PID,_SYSTEMD_UNIT,UNIT,SYSLOG_IDENTIFIER"
    if since is not None:
        cmd += f" --since=@{since:.0f}"
    cmd += " " + " ".join(args)
    if grep is not None:
        cmd += f" | grep -F -- {grep!r} || true"
    entries = []
    for line in node(hostname).check_output(cmd).splitlines():
        entry = json.loads(line)
        if isinstance(entry.get("MESSAGE"), list):  # non-UTF-8 message: bytes
            entry["MESSAGE"] = bytes(entry["MESSAGE"]).decode("utf-8", "replace")
        entry["ts"] = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        entries.append(entry)
    return entries


TOKEN_RE = re.compile(r"celery_app\.sleep done token=(\S+)")


def token_entries(prefix: str, since: float) -> dict[str, list[dict]]:
    """token -> journal entries of its completion (host, unit, pid, time), from every worker host."""
    found = collections.defaultdict(list)
    for h in WORKER_HOSTS:
        # The whole journal: a worker's unit may have been the 1.x one (upgrade), its identifier is the same.
        for entry in journal(h, since=since, grep=f"token={prefix}"):
            match = TOKEN_RE.search(entry["MESSAGE"])
            if match:
                found[match.group(1)].append(dict(entry, host=h))
    return found


def executed_tokens(prefix: str, since: float) -> collections.Counter:
    """How many times each task token starting with prefix ran (duplicates counted)."""
    return collections.Counter({token: len(entries) for token, entries in token_entries(prefix, since).items()})


def wait_for_tokens(prefix: str, since: float, expected: set[str], timeout: float = 30) -> collections.Counter:
    """executed_tokens once every expected token is in the journals.

    A task's result can reach the client before journald has stored the line
    the task printed: read until all are there (bounded), then once more after
    a short pause so that a late duplicate is counted too.
    """
    wait_for(f"{len(expected)} tokens {prefix}* in the journals",
             lambda: expected <= set(executed_tokens(prefix, since)), timeout=timeout, interval=1)
    time.sleep(1)
    return executed_tokens(prefix, since)


def unit_events(hostname: str, unit_name: str, since: float) -> list[tuple[float, str, str]]:
    """systemd's own messages about a unit: (time, 'Stopping'|'Stopped'|'Starting'|'Started'|..., message)."""
    return [(e["ts"], e["MESSAGE"].split(" ", 1)[0], e["MESSAGE"])
            for e in journal(hostname, f"-u {unit_name}", since=since) if e.get("_PID") == "1"]


def restart_windows(pairs: list[tuple[str, str]], since: float) -> list[tuple[float, float, float, str]]:
    """(Stopping, Started, ready, host/unit) of each (host, unit) stopped and started once since `since`,
    sorted by Stopping. `ready` is when the new process logged "<node> ready." (Celery: consuming)."""
    windows = []
    for hostname, unit_name in pairs:
        events = unit_events(hostname, unit_name, since)
        stopping = [ts for ts, word, _ in events if word == "Stopping"]
        started = [ts for ts, word, _ in events if word == "Started"]
        assert len(stopping) == 1 and len(started) == 1, (hostname, unit_name, events)
        name = re.sub(r"^celery-worker[@-](.*)\.service$", r"\1", unit_name)
        ready = wait_for(f"{name}@{hostname} to log ready", lambda: [
            e["ts"] for e in journal(hostname, since=since, grep=f"{name}@{hostname} ready.") if e["ts"] > started[0] - 1], timeout=30)
        windows.append((stopping[0], started[0], ready[0], f"{hostname}/{unit_name}"))
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
    return (PROJECT / ".lab" / f"{NAME}_broker_password").read_text().split()[0]


def broker_url() -> str:
    """The tests' own clients use the broker's plain port on loopback."""
    return "amqp://{user}:{pw}@127.0.0.1:{port}/{vhost}".format(
        user=GROUP_VARS["lab_broker_user"], pw=broker_password(), port=GROUP_VARS["lab_broker_amqp_port"], vhost=GROUP_VARS["lab_broker_vhost"])


def hosts_broker_url(password: str | None = None, user: str | None = None) -> str:
    """The URL the hosts use: amqps to the TLS port."""
    return "amqps://{user}:{pw}@127.0.0.1:{port}/{vhost}".format(
        user=user or GROUP_VARS["lab_broker_user"], pw=password or broker_password(),
        port=GROUP_VARS["lab_broker_amqps_port"], vhost=GROUP_VARS["lab_broker_vhost"])


# This run's TLS material (lab/tls.sh, made by molecule/shared/create.yml).
TLS_DIR = PROJECT / ".lab" / "tls" / NAME


@contextlib.contextmanager
def celery_client(app_file: pathlib.Path = APP_FILE):
    """A fresh instance of an application module, pointed at the scenario's broker.

    Fresh on each use: a broker restart must not leave a test with a dead
    connection of an earlier one.
    """
    os.environ["CELERY_BROKER_URL"] = broker_url()
    os.environ["CELERY_RESULT_BACKEND"] = "rpc://"
    spec = importlib.util.spec_from_file_location(f"celery_app_{uuid.uuid4().hex}", app_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        module.app.close()


def fleet_answers(app, workers: list[dict] | None = None) -> bool:
    """True when every worker answers and consumes exactly its queues."""
    workers = all_workers() if workers is None else workers
    active = app.control.inspect(destination=[w["node"] for w in workers], timeout=2.0).active_queues() or {}
    return all(sorted(q["name"] for q in active.get(w["node"], [])) == sorted(w["queues"]) for w in workers)


def rabbitmqctl(*args: str) -> str:
    return node(BROKER).check_output("rabbitmqctl -q --no-table-headers -p %s %s" % (GROUP_VARS["lab_broker_vhost"], " ".join(args)))


# ---------------------------------------------------------------------------
# ansible-playbook, as molecule runs it
# ---------------------------------------------------------------------------

def _ephemeral() -> pathlib.Path:
    if os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY"):
        return pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    found = sorted(pathlib.Path.home().glob(f".ansible/tmp/molecule.*.{NAME}"), key=lambda p: p.stat().st_mtime)
    if not found:
        pytest.fail(f"no molecule state of scenario {NAME}: run `molecule converge -s {NAME}` first")
    return found[-1]


def _provisioner_env() -> dict[str, str]:
    """The provisioner env of .config/molecule/config.yml and the scenario's molecule.yml."""
    env = {}
    for path in (PROJECT / ".config" / "molecule" / "config.yml", SCENARIO / "molecule.yml"):
        env.update((_yaml(path).get("provisioner") or {}).get("env") or {})
    return {k: str(v).replace("${MOLECULE_PROJECT_DIRECTORY}", str(PROJECT)) for k, v in env.items()}


def playbook_env(json_output: bool = False) -> dict[str, str]:
    env = {**os.environ, **_provisioner_env(),
           "ANSIBLE_CONFIG": str(_ephemeral() / "ansible.cfg"),
           "MOLECULE_PROJECT_DIRECTORY": str(PROJECT), "MOLECULE_SCENARIO_NAME": NAME,
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PYTHONUNBUFFERED": "1"}
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    else:
        # Time stamps in the logs the tests keep.
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
    return env


def write_override(directory: pathlib.Path, host_vars: dict[str, dict]) -> pathlib.Path:
    """A second inventory source whose host_vars win over the scenario's (later source wins)."""
    (directory / "host_vars").mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {h: {} for h in host_vars}}}))
    for hostname, values in host_vars.items():
        (directory / "host_vars" / f"{hostname}.yml").write_text(yaml.safe_dump(values, sort_keys=False))
    return directory


def playbook_command(override: pathlib.Path | None, *args: str, playbook: pathlib.Path = SITE) -> list[str]:
    cmd = [str(ANSIBLE_PLAYBOOK), str(playbook), "-i", str(_ephemeral() / "inventory")]
    if override is not None:
        cmd += ["-i", str(override)]
    return cmd + list(args)


def start_playbook(log: pathlib.Path, override: pathlib.Path | None = None, *args: str, env: dict | None = None) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(playbook_command(override, *args), cwd=PROJECT, env=env or playbook_env(),
                                stdout=out, stderr=subprocess.STDOUT)


def run_playbook(log: pathlib.Path, override: pathlib.Path | None = None, *args: str, timeout: float = 300) -> tuple[int, str]:
    proc = start_playbook(log, override, *args)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"ansible-playbook did not finish in {timeout}s:\n{log.read_text()[-3000:]}")
    return rc, log.read_text()


def run_site(args: list[str], host_vars: dict[str, dict] | None = None, json_output: bool = False,
             timeout: int = 600) -> subprocess.CompletedProcess:
    """site.yml with the scenario's inventory (plus host_vars per host, when given), output captured.

    The default callback's output is one stream, in order (stdout; ansible-core
    prints failed results on stderr); the JSON callback's stdout is JSON alone.
    """
    with tempfile.TemporaryDirectory(prefix=f"celery-{NAME}-") as tmp:
        override = write_override(pathlib.Path(tmp), host_vars) if host_vars else None
        return subprocess.run(playbook_command(override, *args), cwd=PROJECT, env=playbook_env(json_output),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE if json_output else subprocess.STDOUT,
                              text=True, timeout=timeout, check=False)


def results_by_host(stdout: str) -> dict[str, list[tuple[str, dict]]]:
    """(task name, result) of each host, in order, from the ansible.posix.json callback's output."""
    out: dict[str, list[tuple[str, dict]]] = {}
    for play in json.loads(stdout)["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                out.setdefault(host, []).append((task["task"]["name"], result))
    return out


RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host (summed over serial batches)."""
    out = collections.defaultdict(collections.Counter)
    for host, ok, changed, unreachable, failed in RECAP_RE.findall(output):
        out[host].update(ok=int(ok), changed=int(changed), unreachable=int(unreachable), failed=int(failed))
    return {h: dict(c) for h, c in out.items()}


# ---------------------------------------------------------------------------
# Load while a playbook runs
# ---------------------------------------------------------------------------

class Stream:
    """Short tasks (celery_app.sleep, 10 ms, each with a unique token) sent to queues in turn
    at a rate, from the test's own loop, while a playbook runs: at most max_count, bounded in
    time. Then every result is awaited (none may be lost), the journals count how many times
    each token ran (duplicates counted, at-least-once), and the wait of each task (from its
    sending to its start on a worker: the containers share the machine's clock) is measured."""

    def __init__(self, app, queues: list[str], rate: float, max_count: int, prefix: str | None = None):
        self.app, self.queues, self.rate, self.max_count = app, queues, rate, max_count
        self.prefix = prefix or new_run_id()
        self.sent: dict[str, tuple[str, float, object]] = {}  # token -> (queue, sent at, AsyncResult)
        self.since = time.time() - 1

    def send(self, token: str, seconds: float, queue: str):
        self.sent[token] = (queue, time.time(), self.app.sleep.apply_async((seconds,), {"token": token}, queue=queue))

    def run_while(self, proc: subprocess.Popen, timeout: float, also=None) -> None:
        """Send until proc ends (or max_count, or timeout); also(now) is called on every round."""
        start = next_at = time.monotonic()
        count = 0
        while proc.poll() is None and time.monotonic() - start < timeout:
            now = time.monotonic()
            if also is not None:
                also(now)
            if now >= next_at and count < self.max_count:
                self.send(f"{self.prefix}-s{count}", 0.01, self.queues[count % len(self.queues)])
                count += 1
                next_at += 1.0 / self.rate
            time.sleep(max(0.0, min(next_at, now + 0.2) - time.monotonic()))

    def results(self, timeout: float) -> dict[str, dict]:
        """Every task's result (fails on one that does not come back: a lost task)."""
        end = time.monotonic() + timeout
        return {token: r.get(timeout=max(1.0, end - time.monotonic())) for token, (_, _, r) in self.sent.items()}

    def summary(self, results: dict[str, dict], short_only: bool = True) -> dict:
        executed = wait_for_tokens(self.prefix, self.since, set(self.sent), timeout=60)
        # (An application older than `started`, e.g. the released 1.0.0's, reports no start.)
        waits = sorted(results[t]["started"] - sent_at for t, (_, sent_at, _) in self.sent.items()
                       if (not short_only or t.startswith(f"{self.prefix}-s")) and "started" in results[t])
        return {"sent": len(self.sent), "done": len(results), "lost": len(set(self.sent) - set(results)),
                "executed": sum(executed.values()), "duplicated": sum(n - 1 for n in executed.values()),
                "max_wait": round(waits[-1], 2) if waits else None,
                "p99_wait": round(waits[int(0.99 * (len(waits) - 1))], 2) if waits else None,
                "missing_in_journals": sorted(set(self.sent) - set(executed))}

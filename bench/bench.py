"""Benchmark of the celery_workers role against the classic recipe and the released 1.0.0 (bench/run).

See bench/README.md. Prints a markdown report that leads with the targets
table, writes bench/results/<stamp>/{results.json,RESULTS.md,bench.png,logs/}.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib.util
import json
import math
import os
import platform
import re
import resource
import secrets
import string
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VENV_BIN = ROOT / ".venv" / "bin"
HOST_IMAGE = os.environ.get("LAB_HOST_IMAGE", "localhost/celery-lab-host:bookworm")
BROKER_IMAGE = os.environ.get("LAB_BROKER_IMAGE", "localhost/celery-lab-broker:bookworm")
BROKER = "bench-broker"
# Ports of its own: the lab's broker has 5672, the molecule scenarios 5673 (default), 5674
# (operations), 5675 (options): the bench runs beside them.
PORTS = {"amqp": 5676, "management": 15676, "dist": 25676, "epmd": 4373}
SSH_PORT_BASE = 2240  # bench-wN: sshd on 127.0.0.1:2240+N
SSH_DIR = ROOT / ".lab" / "ssh" / "bench"
PASSWORD_FILE = ROOT / ".lab" / "bench_broker_password"
WHEELHOUSE = RESULTS / "wheelhouse"
HOST_WHEELS = "/opt/bench-wheels"
CELERY_FROM, CELERY_TO = "5.6.3", "5.7.0"  # fresh installs CELERY_FROM; the "upgrade" step moves to CELERY_TO
FLOWER_VERSION = "2.2.0"
EXTRA_PIP = "humanize==4.17.0"  # the application's extra requirement
WHEEL_SPECS = [f"celery=={CELERY_FROM}", f"celery=={CELERY_TO}", f"flower=={FLOWER_VERSION}", EXTRA_PIP]
RELEASE = "1.0.0"  # the released role, exported by scripts/release-tree: the reference of the same sitting
# What is timed: "role" = site.yml of this checkout, "baseline" = bench/baseline.yml (the classic
# recipe), RELEASE = site.yml of the released tree.
KINDS = ("role", "baseline", RELEASE)
KIND_ALIASES = {"recipe": "baseline", "release": RELEASE}
STRATEGIES = ("ssh", "mitogen")
STEPS = ("fresh", "noop", "change", "app", "upgrade", "remove", "from-1.0.0")
# The steps each kind can run, in this order. "from-1.0.0" is this checkout's site.yml run over the
# hosts the released role converged (its fresh step), so it only follows a RELEASE job.
KIND_STEPS = {"role": STEPS[:6], "baseline": STEPS[:6], RELEASE: ("fresh", "noop", "from-1.0.0")}
ROLL_STEPS = ("app", "upgrade", "from-1.0.0")  # every worker restarts: load, waits, windows
QUICK_CELLS = [(1, 1), (1, 16), (8, 1)]
THROUGHPUT_TASKS = 5000
# Load during the roll steps: celery_app.sleep(0.01) at LOAD_RATE/s to every queue of the cell
# in turn, until the run ends, at most LOAD_MAX (10 min).
LOAD_RATE, LOAD_MAX = 20.0, 12000
# The queue with exactly two consumers (cells with 2+ workers in all): the first two workers of
# the fleet also consume it, with two prefork processes each. In the application roll each of them
# is given a task of LONG_SECONDS when the restarts begin, so that a task prefetched by a worker in
# warm shutdown would wait for it (and show in the longest wait). (Given earlier, a long task may
# end before the roll, and one more then would leave a consumer with no free process: the bench
# itself would make short tasks wait.)
LONG_QUEUE, LONG_SECONDS = "reports", 30
LONG_STEPS = ("app",)
# The line of each playbook's log after which its first worker restarts within seconds.
ROLL_MARKERS = {"role": "TASK [celery_fleet.celery.celery_workers : Read the state of the workers' units]",
                "baseline": "TASK [Reload systemd]"}
WAIT_TARGET = 2.0  # s: longest wait (sent -> started) of a task to a queue with 2+ consumers during a roll
RESULT_TIMEOUT = 180  # s: results of the load collected after the run
REPEAT = 3  # no-op re-converges per job; the table shows the median
BASELINE_REPEAT = 1
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"==> [bench {time.monotonic() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def run(cmd, check=True, timeout=600, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, check=False, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def pexec(host: str, script: str, timeout=120) -> str:
    """Measurement and set-up only (journals, wipe), never inside a timed playbook run."""
    return run(["podman", "exec", host, "bash", "-c", script], timeout=timeout).stdout


def parallel(fn, items):
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(fn, items))


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda x: x["wall"])[len(runs) // 2]


# --------------------------------------------------------------------------- setup

def password() -> str:
    if not PASSWORD_FILE.exists():
        PASSWORD_FILE.parent.mkdir(parents=True, exist_ok=True)
        PASSWORD_FILE.write_text("".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24)))
        PASSWORD_FILE.chmod(0o600)
    return PASSWORD_FILE.read_text().strip()


def broker_url() -> str:
    return f"amqp://celery:{password()}@127.0.0.1:{PORTS['amqp']}/celery"


def ensure_wheelhouse() -> None:
    stamp = WHEELHOUSE / ".specs"
    if stamp.exists() and stamp.read_text().split() == WHEEL_SPECS:
        return
    for spec in WHEEL_SPECS:  # one download per spec: two Celery versions do not resolve together
        log(f"downloading {spec} and its dependencies into {WHEELHOUSE}")
        run([str(VENV_BIN / "pip"), "download", "-q", "-d", str(WHEELHOUSE), spec], timeout=600)
    stamp.write_text("\n".join(WHEEL_SPECS) + "\n")


def export_release(workdir: Path) -> Path:
    """The released role's tree (scripts/release-tree: its git tag), used as it is."""
    dest = workdir / f"release-{RELEASE}"
    log(f"exporting {RELEASE} into {dest}")
    run([str(ROOT / "scripts" / "release-tree"), RELEASE, str(dest)], timeout=120)
    return dest


def ssh_key() -> Path:
    """A key pair for this run (never committed: .lab/ is ignored)."""
    key = SSH_DIR / "id_ed25519"
    SSH_DIR.mkdir(parents=True, exist_ok=True)
    SSH_DIR.chmod(0o700)
    for f in (key, key.with_suffix(".pub")):
        f.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)])
    return key


def host_names(n: int) -> list[str]:
    return [f"bench-w{i}" for i in range(1, n + 1)]


def ssh_port(host: str) -> int:
    return SSH_PORT_BASE + int(host.rsplit("w", 1)[1])


def start_containers(names: list[str], key: Path | None = None) -> None:
    def start(name):
        if key is None:
            run([str(ROOT / "lab" / "host.sh"), "start", name, BROKER_IMAGE, "--broker"], timeout=300)
            return
        run([str(ROOT / "lab" / "host.sh"), "start", name, HOST_IMAGE,
             "--ssh-port", str(ssh_port(name)), "--ssh-pubkey", f"{key}.pub"], timeout=300)
        run(["podman", "exec", name, "rm", "-rf", HOST_WHEELS])
        run(["podman", "cp", str(WHEELHOUSE), f"{name}:{HOST_WHEELS}"])
    parallel(start, names)


def write_app(directory: Path, revision: int) -> Path:
    """The application as a directory: files/celery_app.py plus a module that
    uses the extra requirement; `revision` > 0 appends a comment (a change)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "files" / "celery_app.py").read_text()
    (directory / "celery_app.py").write_text(text + (f"# bench revision {revision}\n" if revision else ""))
    (directory / "bench_extra.py").write_text('"""Uses the extra pip requirement."""\n\nimport humanize\n\n'
                                              'SIZE = humanize.naturalsize(1 << 20)\n')
    return directory


def fleet(hosts: list[str], workers: int, state: dict) -> dict[str, list[dict]]:
    """host -> its workers: solo, concurrency 1, half on `default`, half on `other`; with 2 or more
    workers in the cell, the first two of the fleet also consume LONG_QUEUE with 2 prefork processes."""
    if state.get("fleet"):
        return {h: state["fleet"] for h in hosts}
    out = {}
    for i, h in enumerate(hosts):
        ws = [{"name": f"w{j:02d}", "queues": ["default" if j % 2 == 0 else "other"], "concurrency": 1,
               "pool": "solo", "extra_args": ["--without-gossip", "--without-mingle"]} for j in range(workers)]
        out[h] = ws
    if len(hosts) * workers >= 2:
        firsts = [(h, 0) for h in hosts[:2]] if workers == 1 else [(hosts[0], 0), (hosts[0], 1)]
        for h, j in firsts:
            out[h][j] = dict(out[h][j], queues=out[h][j]["queues"] + [LONG_QUEUE], pool="prefork", concurrency=2)
    first = hosts[0] if hosts else None
    if first and state.get("change"):
        out[first][0] = dict(out[first][0], env={"BENCH_REVISION": "2"})
    if first and state.get("remove"):
        out[first] = out[first][:-1]
    return out


def consumers(fleet_map: dict[str, list[dict]]) -> dict[str, list[tuple[str, str]]]:
    """queue -> its consumers (host, worker name)."""
    out = collections.defaultdict(list)
    for h, ws in fleet_map.items():
        for w in ws:
            for q in w["queues"]:
                out[q].append((h, w["name"]))
    return dict(out)


def write_inventory(path: Path, hosts: list[str], workers: int, state: dict, key: Path) -> Path:
    """An inventory of `hosts` with `workers` workers each, beat and Flower on the first host."""
    path.mkdir(parents=True, exist_ok=True)
    for sub in ("host_vars", "group_vars"):
        (path / sub).mkdir(exist_ok=True)
        for old in (path / sub).glob("*.json"):
            old.unlink()
    inv = {"all": {"children": {"broker": {"hosts": {BROKER: {}}},
                                "celery_workers": {"hosts": {h: {} for h in hosts}},
                                "celery_flower": {"hosts": {h: {} for h in hosts[:1]}}}}}
    (path / "hosts.json").write_text(json.dumps(inv, indent=1))
    common = {
        "lab_broker_amqp_port": PORTS["amqp"], "lab_broker_management_port": PORTS["management"],
        "lab_broker_dist_port": PORTS["dist"], "lab_broker_epmd_port": PORTS["epmd"],
        "lab_broker_vhost": "celery", "lab_broker_user": "celery", "lab_broker_password": password(),
        "ansible_python_interpreter": "/usr/bin/python3",
        "celery_workers_broker_url": broker_url(),
    }
    (path / "group_vars" / "all.json").write_text(json.dumps(dict(common, ansible_connection="containers.podman.podman"),
                                                             indent=1))
    wheels = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": HOST_WHEELS}
    workers_vars = {
        # Reached as production hosts are: SSH as `deploy`, sudo (the playbooks' become).
        # (Mitogen ignores StrictHostKeyChecking here: ANSIBLE_HOST_KEY_CHECKING=False, ansible_env.)
        "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_user": "deploy",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                   "-o LogLevel=ERROR -o IdentitiesOnly=yes",
        "celery_workers_celery_version": state.get("celery", CELERY_FROM),
        "celery_workers_app_src": f"{state['app_dir']}/",
        "celery_workers_pip_packages": [EXTRA_PIP],
        # "fresh" installs come from a local wheelhouse copied into each host, not PyPI.
        "celery_workers_pip_environment": wheels,
        "celery_workers_health_timeout": 120,
        # Above LONG_SECONDS: a worker's warm shutdown lets its long task end, never killed.
        "celery_workers_stop_timeout": 90,
        "celery_workers_memory_check": "warn",
    }
    (path / "group_vars" / "celery_workers.json").write_text(json.dumps(workers_vars, indent=1))
    flower_vars = {"celery_flower_basic_auth": [{"user": "bench", "password": password()}],
                   "celery_flower_pip_environment": wheels, "celery_flower_version": FLOWER_VERSION}
    (path / "group_vars" / "celery_flower.json").write_text(json.dumps(flower_vars, indent=1))
    for i, (h, ws) in enumerate(fleet(hosts, workers, state).items()):
        hv = {"ansible_port": ssh_port(h), "celery_workers": ws}
        if i == 0:
            hv["celery_workers_beat_enabled"] = True
        (path / "host_vars" / f"{h}.json").write_text(json.dumps(hv, indent=1))
    return path


def mitogen_strategy_dir() -> str:
    res = run([str(VENV_BIN / "python"), "-c",
               "import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))"], timeout=60)
    return str(Path(res.stdout.strip()) / "plugins" / "strategy")


class Runner:
    """How a playbook of a kind runs: its file, its tree (ansible.cfg, collections, roles) and the strategy."""

    def __init__(self, release_dir: Path | None):
        self.release_dir = release_dir
        self._mitogen = None

    def playbook(self, kind: str) -> Path:
        if kind == RELEASE:
            return self.release_dir / "site.yml"
        return {"role": ROOT / "site.yml", "baseline": BENCH / "baseline.yml"}[kind]

    def env(self, kind: str, strategy: str) -> tuple[dict, Path]:
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        tree = self.release_dir if kind == RELEASE else ROOT
        env["ANSIBLE_CONFIG"] = str(tree / "ansible.cfg")
        if kind == RELEASE:
            env["ANSIBLE_COLLECTIONS_PATH"] = str(tree / "collections")
            env["ANSIBLE_ROLES_PATH"] = str(tree / "roles")
        env["ANSIBLE_CALLBACK_PLUGINS"] = str(BENCH / "callback_plugins")
        # bench_count: counts and health-gate times; profile_tasks: where the time goes (in each log).
        env["ANSIBLE_CALLBACKS_ENABLED"] = "bench_count,ansible.posix.profile_tasks"
        env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "12"
        env["ANSIBLE_NOCOLOR"] = "1"
        for var in ("ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_STRATEGY", "ANSIBLE_STRATEGY_PLUGINS"):
            env.pop(var, None)
        if strategy == "mitogen":
            if self._mitogen is None:
                self._mitogen = mitogen_strategy_dir()
            env["ANSIBLE_STRATEGY"] = "mitogen_linear"
            env["ANSIBLE_STRATEGY_PLUGINS"] = self._mitogen
            env["ANSIBLE_HOST_KEY_CHECKING"] = "False"
        return env, tree


def playbook(pb: Path, inventory: Path, logfile: Path, env: dict, cwd: Path, timeout=2400) -> dict:
    """Run a playbook; return wall time, controller CPU and the counts of the bench_count callback."""
    count_file = logfile.with_suffix(".count.json")
    count_file.unlink(missing_ok=True)
    env = dict(env, BENCH_COUNT_FILE=str(count_file))
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    with open(logfile, "w", encoding="utf-8") as out:
        rc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(pb)], cwd=cwd, env=env,
                            stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False).returncode
    wall = time.monotonic() - t
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    counts = json.loads(count_file.read_text()) if count_file.exists() else {"total": {}}
    if rc != 0:
        raise RuntimeError(f"{pb} failed (rc {rc}), see {logfile}:\n" + "".join(logfile.read_text().splitlines(True)[-40:]))
    return dict(counts["total"], wall=round(wall, 2), rc=rc, health=counts.get("health", []), drain=counts.get("drain", []),
                cpu=round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1))


def setup_broker(workdir: Path, key: Path, runner: Runner) -> None:
    start_containers([BROKER])
    inv = write_inventory(workdir / "inv-broker", [], 0, {"app_dir": workdir / "app"}, key)
    env, _ = runner.env("role", "ssh")
    playbook(ROOT / "lab" / "broker.yml", inv, workdir / "logs" / "broker.log", env, ROOT, timeout=600)


# --------------------------------------------------------------------------- hosts

# Both layouts: 1.x and the recipe (celery-worker-NAME.service), 2.x (the template
# celery-worker@.service, instances celery-worker@NAME.service with drop-ins, celery-workers.target).
WIPE = r"""
units=$(systemctl list-units --all --plain --no-legend 'celery-worker*' 'celery-workers.target' 'celery-beat.service' \
        'celery-flower.service' | awk '{print $1}')
[ -n "$units" ] && systemctl stop $units
rm -f /etc/systemd/system/celery-worker*.service /etc/systemd/system/celery-workers.target \
      /etc/systemd/system/celery-beat.service /etc/systemd/system/celery-flower.service \
      /etc/systemd/system/*.wants/celery-*
rm -rf /etc/systemd/system/celery-worker*.service.d /etc/systemd/system/celery-workers.target.*
systemctl daemon-reload
systemctl reset-failed
rm -rf /opt/celery /etc/celery /var/lib/celery /opt/celery-flower /etc/celery-flower /var/lib/celery-flower
userdel celery 2>/dev/null; groupdel celery 2>/dev/null
true
"""


def wipe(hosts: list[str]) -> None:
    parallel(lambda h: pexec(h, WIPE, timeout=300), hosts)


def cursor(host: str) -> str:
    out = pexec(host, "journalctl -q -n 0 --show-cursor")
    return out.strip().split("cursor: ", 1)[1]


# journalctl (systemd 252) with a match such as _PID=1 and --after-cursor
# skips the first matching entry after the cursor: no matches, grep instead.
# Entries since the cursor: systemd's own about the worker units (UNIT=celery-worker-NAME.service
# of 1.x and the recipe, celery-worker@NAME.service of 2.x; "Stopping ...", "Started ...") and
# each worker's "<name>@<host> ready." (consuming; logged as celery-worker-NAME, or celery by the recipe).
EVENTS = r"""journalctl -q --after-cursor='{c}' -o json --output-fields=MESSAGE,_PID,UNIT \
  | grep -E '"UNIT" *: *"celery-worker[-@]|@[^ ]+ ready\.' || true
echo "active $(systemctl list-units --plain --no-legend --state=active 'celery-worker-*' 'celery-worker@*' | wc -l)" """
UNIT_RE = re.compile(r"^celery-worker[-@](.+)\.service$")
READY_RE = re.compile(r"(\S+)@\S+ ready\.")


def events(host: str, cur: str) -> tuple[list[tuple[float, str, str, str]], int]:
    """(time, worker name, Stopping|Started|ready, unit) since the cursor, and the active worker units."""
    out, active = [], 0
    for line in pexec(host, EVENTS.format(c=cur)).splitlines():
        if line.startswith("active "):
            active = int(line.split()[1])
            continue
        try:
            e = json.loads(line)
        except ValueError:
            continue
        msg = e.get("MESSAGE") or ""
        if isinstance(msg, list):  # non-UTF-8: bytes
            msg = bytes(msg).decode("utf-8", "replace")
        ts = int(e["__REALTIME_TIMESTAMP"]) / 1e6
        m = UNIT_RE.match(e.get("UNIT", ""))
        if m and e.get("_PID") == "1":
            word = msg.split(" ", 1)[0]
            if word in ("Stopping", "Started"):
                out.append((ts, m.group(1), word, e["UNIT"]))
            continue
        m = READY_RE.search(msg)
        if m and not e.get("UNIT"):
            out.append((ts, m.group(1), "ready", ""))
    return sorted(out), active


def windows(evs: list[tuple[float, str, str, str]], twice: dict | None = None) -> dict[str, list[list]]:
    """worker name -> the [stopping, ready] windows in which none of its units served (ready None:
    not back yet). A worker may have two units (1.x celery-worker-NAME, 2.x celery-worker@NAME): it is
    down from the Stopping of the last unit that served to the next "ready." of a unit started since.
    A unit first seen Stopping served since before the cursor. `twice` (a dict) gets, per worker, the
    seconds two of its units served at once (one node name, two processes) until one stopped."""
    out: dict[str, list[list]] = collections.defaultdict(list)
    up: dict[str, dict[str, float]] = collections.defaultdict(dict)  # name -> unit serving -> since
    pending: dict[str, set] = collections.defaultdict(set)  # started, not ready yet
    seen: set = set()
    for ts, name, word, unit in evs:
        ws = out[name]
        down = bool(ws) and ws[-1][1] is None
        if word == "Stopping":
            if unit not in seen:
                up[name][unit] = float("-inf")
            since = up[name].pop(unit, None)
            pending[name].discard(unit)
            if twice is not None and since is not None and up[name]:
                others = min(up[name].values())
                twice[name] = round(twice.get(name, 0.0) + ts - max(since, others), 2)
            if not up[name] and not down:
                ws.append([ts, None])
        elif word == "Started":
            pending[name].add(unit)
        elif word == "ready":
            for u in pending[name]:
                up[name].setdefault(u, ts)
            pending[name].clear()
            if down and up[name]:
                ws[-1][1] = ts
        seen.add(unit)
    return {name: ws for name, ws in out.items() if ws}


def most_at_once(ivs: list[tuple[float, float]]) -> int:
    pts = sorted([(a, 1) for a, _ in ivs] + [(b, -1) for _, b in ivs], key=lambda p: (p[0], p[1]))
    cur = best = 0
    for _, d in pts:
        cur += d
        best = max(best, cur)
    return best


def longest_all_down(ivs_by_consumer: list[list[tuple[float, float]]]) -> float:
    """Longest time every consumer was down at once (0 when never)."""
    if any(not ivs for ivs in ivs_by_consumer):
        return 0.0
    n = len(ivs_by_consumer)
    pts = sorted([(a, 1) for ivs in ivs_by_consumer for a, _ in ivs] + [(b, -1) for ivs in ivs_by_consumer for _, b in ivs],
                 key=lambda p: (p[0], p[1]))
    cur, since, best = 0, None, 0.0
    for t, d in pts:
        cur += d
        if cur == n and since is None:
            since = t
        elif cur < n and since is not None:
            best = max(best, t - since)
            since = None
    return round(best, 2)


def roll_stats(fleet_map: dict[str, list[dict]], wins: dict[str, dict]) -> dict:
    """From the (stopping, ready) windows: most workers down at once (per host and fleet-wide)
    and, per queue with two or more consumers, the longest time none was consuming."""
    end = time.time()  # a worker stopped and not ready by the end of the measurement counts as down until then
    ivs = {(h, name): [(a, b or end) for a, b in ws] for h, by in wins.items() for name, ws in by.items()}
    per_host = max([most_at_once([iv for (hh, _), v in ivs.items() if hh == h for iv in v]) for h in wins] or [0])
    gaps = {q: longest_all_down([ivs.get(c, []) for c in cs]) for q, cs in consumers(fleet_map).items() if len(cs) >= 2}
    return {"down_per_host": per_host, "down_fleet": most_at_once([iv for v in ivs.values() for iv in v]),
            "gap": max(gaps.values(), default=0.0), "gaps": gaps,
            "rolled": sum(1 for v in ivs.values() if v), "stops": sum(len(v) for v in ivs.values())}


def measured(pb: Path, hosts: list[str], inventory: Path, logfile: Path, env: dict, cwd: Path,
             fleet_map=None, load=None) -> dict:
    cur = parallel(cursor, hosts)
    if load is not None:
        load.start(logfile)
    try:
        res = playbook(pb, inventory, logfile, env, cwd)
    finally:
        if load is not None:
            load.stop()
    # The health gate may pass a moment before a worker logs "ready.": wait (up to 20 s) until
    # every stopped worker has its line (roll steps only).
    deadline = time.monotonic() + (20 if fleet_map is not None else 0)
    while True:
        got = parallel(lambda hc: events(*hc), zip(hosts, cur))
        twice = {h: {} for h in hosts}
        wins = {h: windows(evs, twice[h]) for h, (evs, _) in zip(hosts, got)}
        if all(w[1] for by in wins.values() for ws in by.values() for w in ws) or time.monotonic() > deadline:
            break
        time.sleep(1)
    res["restarts"] = sum(1 for evs, _ in got for _, _, word, _ in evs if word == "Started")
    res["active"] = sum(a for _, a in got)
    if fleet_map is not None:
        res["roll"] = roll_stats(fleet_map, wins)
        # One node name served by two processes at once (a new unit started beside the old one).
        res["roll"]["twice"] = {f"{n}@{h}": sec for h, by in twice.items() for n, sec in by.items()}
    if load is not None:
        res["load"] = load.result()
    return res


# --------------------------------------------------------------------------- load during a roll

def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


class Load:
    """Sends celery_app.sleep(0.01, token) at LOAD_RATE/s to the cell's queues in turn while the
    playbook runs (at most LOAD_MAX). With `long_tasks`, when the playbook's log shows `marker`
    (its restarts begin) each of the two consumers of LONG_QUEUE is given a task of LONG_SECONDS
    (sent until `inspect active` shows one on each, at most 3 rounds). Then every result is
    collected (bounded): done, lost (no result within RESULT_TIMEOUT), duplicated (a token executed
    twice, counted in the workers' journals), and the wait of each short task: sent (controller
    clock) -> started (the task's own time.time(); the containers share the machine's clock),
    overall, for the queues with 2+ consumers, and for those before the restarts (a control)."""

    def __init__(self, app_dir: Path, hosts: list[str], fleet_map: dict[str, list[dict]], marker: str | None,
                 long_tasks: bool):
        self.mod = load_app(app_dir / "celery_app.py")
        self.hosts = hosts
        cons = consumers(fleet_map)
        self.queues = sorted(cons)
        self.shared = {q for q, cs in cons.items() if len(cs) >= 2}  # queues with 2+ consumers
        self.long_nodes = (sorted(f"{name}@{h}" for h, name in cons.get(LONG_QUEUE, []))
                           if long_tasks and len(cons.get(LONG_QUEUE, [])) == 2 else [])
        self.marker = marker
        self.run = secrets.token_hex(4)
        self.sent: dict[str, tuple[str, float, object]] = {}  # token -> (queue, sent at, AsyncResult)
        self.long: dict = {"nodes": self.long_nodes, "given": 0, "busy": [], "left_s": {}, "at_s": None}
        self.since = time.time() - 2
        self.restarts_at = None  # when the log showed that the restarts begin
        self._stop = False
        self._thread = None
        self._t0 = time.monotonic()

    def start(self, logfile: Path):
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._send, args=(logfile,), daemon=True)
        self._thread.start()

    def _send_long(self, count: int) -> None:
        for _ in range(count):
            token = f"{self.run}-L{self.long['given']}"
            self.sent[token] = (LONG_QUEUE, time.time(), self.mod.sleep.apply_async((LONG_SECONDS,), {"token": token},
                                                                                      queue=LONG_QUEUE))
            self.long["given"] += 1

    def _long_left(self) -> dict[str, float]:
        """consumer -> seconds left of the long task it runs (the most), from `inspect active`."""
        try:
            active = self.mod.app.control.inspect(destination=self.long_nodes, timeout=1.5).active() or {}
        except Exception:  # pylint: disable=broad-except
            active = {}
        now, left = time.time(), {}
        for node, tasks in active.items():
            for t in tasks:
                token = str((t.get("kwargs") or {}).get("token", ""))
                if token in self.sent and token.startswith(f"{self.run}-L"):
                    left[node] = max(left.get(node, float("-inf")), LONG_SECONDS - (now - self.sent[token][1]))
        return left

    def _give_long_tasks(self) -> None:
        """One long task per consumer of LONG_QUEUE (RabbitMQ deals them round-robin to the consumers
        with a free process); more for a consumer that shows none, at most 3 rounds."""
        self._send_long(len(self.long_nodes))
        left: dict[str, float] = {}
        for rnd in range(3):
            time.sleep(0.3)
            left = self._long_left()
            idle = [n for n in self.long_nodes if n not in left]
            if not idle or rnd == 2:
                break
            self._send_long(len(idle))
        self.long["busy"] = sorted(left)
        self.long["left_s"] = {n: round(v, 1) for n, v in sorted(left.items())}
        self.long["at_s"] = round(time.monotonic() - self._t0, 1)

    def _send(self, logfile: Path):
        t = time.monotonic()
        i = 0
        pending = bool(self.marker)
        while not self._stop and i < LOAD_MAX:
            if pending and i % 5 == 0:
                try:
                    seen = self.marker in logfile.read_text(errors="replace")
                except OSError:
                    seen = False
                if seen:
                    pending = False
                    self.restarts_at = time.time()
                    if self.long_nodes:
                        self._give_long_tasks()
            token = f"{self.run}-{i}"
            queue = self.queues[i % len(self.queues)]
            self.sent[token] = (queue, time.time(), self.mod.sleep.apply_async((0.01,), {"token": token}, queue=queue))
            i += 1
            time.sleep(max(0.0, min(t + i / LOAD_RATE - time.monotonic(), 1.0)))

    def stop(self):
        self._stop = True
        self._thread.join(timeout=60)

    def result(self, timeout: float = RESULT_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        results = {}
        for token, (_, _, res) in self.sent.items():
            try:
                results[token] = res.get(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:  # pylint: disable=broad-except  # timeout: lost (or very late)
                pass
        grep = (f"journalctl -q -o cat --since=@{self.since:.0f} --grep 'token={self.run}-' "
                "| grep -o 'token=[^ ]*' || true")
        counts = collections.Counter(t.split("=", 1)[1] for h in self.hosts for t in pexec(h, grep, timeout=300).split())
        self.mod.app.close()
        short = [t for t in self.sent if "-L" not in t]
        longs = [t for t in self.sent if "-L" in t]
        waits = {t: results[t]["started"] - self.sent[t][1] for t in short
                 if t in results and isinstance(results[t], dict) and results[t].get("started") is not None}
        shared = [w for t, w in waits.items() if self.sent[t][0] in self.shared]

        def stats(ws):
            return {"max": round(max(ws), 2) if ws else None, "p99": round(percentile(ws, 99), 2) if ws else None}
        by_queue = {q: stats([w for t, w in waits.items() if self.sent[t][0] == q]) for q in self.queues}
        # Control: the same queues before the restarts began (the machine's own noise, no roll yet).
        before = [w for t, w in waits.items() if self.sent[t][0] in self.shared
                  and self.restarts_at is not None and self.sent[t][1] < self.restarts_at]
        t0 = min((v[1] for v in self.sent.values()), default=0.0)
        slowest = [{"token": t, "queue": self.sent[t][0], "sent_s": round(self.sent[t][1] - t0, 2), "wait": round(w, 2),
                    "worker": results[t].get("worker")} for t, w in sorted(waits.items(), key=lambda x: -x[1])[:20]]
        return {"sent": len(short), "done": sum(1 for t in short if t in results), "lost": sum(1 for t in short if t not in results),
                "duplicated": sum(1 for t in short if counts.get(t, 0) > 1),
                "missing_in_journals": sum(1 for t in short if t in results and counts.get(t, 0) == 0),
                "wait": stats(list(waits.values())), "wait_shared": stats(shared), "wait_by_queue": by_queue,
                "wait_shared_before_restarts": stats(before),
                "restarts_at_s": round(self.restarts_at - t0, 1) if self.restarts_at else None, "slowest": slowest,
                "shared_queues": sorted(self.shared),
                "long": dict(self.long, done=sum(1 for t in longs if t in results),
                             duplicated=sum(1 for t in longs if counts.get(t, 0) > 1))}


# --------------------------------------------------------------------------- jobs

def split_step(step: str, strategy: str) -> tuple[str, str]:
    """"noop@mitogen" -> ("noop", "mitogen"): a step under another strategy than its job's, on the
    same hosts (a no-op is one whatever strategy converged the hosts)."""
    base, _, other = step.partition("@")
    return base, other or strategy


def job(runner: Runner, kind: str, strategy: str, n: int, k: int, all_hosts: list[str], workdir: Path, key: Path,
        steps: list[str], noop_repeat: int) -> dict:
    """One playbook kind under one strategy on one cell: its steps in order, from wiped hosts.
    noop_repeat: the no-op runs of this job (its row of the plan)."""
    hosts = host_names(n)
    tag = f"{kind}-{strategy}-{n}x{k}"
    t_job = time.monotonic()
    log(f"{tag}: wiping {len(all_hosts)} host(s)")
    wipe(all_hosts)
    app_dir = workdir / "app" / tag
    state = {"app_dir": write_app(app_dir, 0), "celery": CELERY_FROM}
    inv = workdir / "inv" / tag
    out = {"playbook": kind, "strategy": strategy, "hosts": n, "workers": k, "steps": [],
           "noop_repeat": noop_repeat}
    for step in steps:
        base, step_strategy = split_step(step, strategy)
        if base == "remove" and k == 1:
            continue  # the host's only worker: not "one of its workers"
        if base == "change":
            state["change"] = True
        if base in ("app", "from-1.0.0"):
            write_app(app_dir, 1 if base == "app" else 0)
        if base == "upgrade":
            state["celery"] = CELERY_TO
        if base == "remove":
            state["remove"] = True
        write_inventory(inv, hosts, k, state, key)
        fleet_map = fleet(hosts, k, state)
        logfile = workdir / "logs" / f"{tag}-{step.replace('@', '-')}.log"
        # from-1.0.0: this checkout's site.yml over what the released role left.
        runs_as = "role" if base == "from-1.0.0" else kind
        pb = runner.playbook(runs_as)
        env, cwd = runner.env(runs_as, step_strategy)
        t_step = time.monotonic()
        if base == "noop":
            runs = [measured(pb, hosts, inv, logfile.with_name(f"{logfile.stem}{i}.log"), env, cwd) for i in range(noop_repeat)]
            r = dict(median_run(runs), walls=[x["wall"] for x in runs],
                     changed=max(x["changed"] for x in runs), restarts=max(x["restarts"] for x in runs))
        else:
            load = Load(app_dir, hosts, fleet_map, ROLL_MARKERS.get(runs_as), base in LONG_STEPS) if base in ROLL_STEPS else None
            r = measured(pb, hosts, inv, logfile, env, cwd, fleet_map=fleet_map if base in ROLL_STEPS else None, load=load)
        r["step_s"] = round(time.monotonic() - t_step, 1)  # the step with its measurements (repeats, results, journals)
        r["strategy"] = step_strategy
        out[step] = r
        out["steps"].append(step)
        want = sum(len(ws) for ws in fleet_map.values())
        if kind == "baseline" and base == "remove":
            want += 1  # the classic recipe removes nothing: the worker keeps running
        load_brief = {name: v for name, v in r.get("load", {}).items() if name not in ("slowest", "wait_by_queue")}
        log(f"{tag} {step}: {r['wall']:.1f}s (step {r['step_s']}s) cpu={r['cpu']}s tasks={r.get('tasks')} "
            f"calls={r.get('calls')} changed={r.get('changed')} (re)starts={r['restarts']} active={r['active']}/{want}"
            + (f" walls={r['walls']}" if "walls" in r else "")
            + (f" roll={r['roll']}" if "roll" in r else "") + (f" load={load_brief}" if load_brief else ""))
        if r["active"] != want:
            raise RuntimeError(f"{tag} {step}: {r['active']} of {want} workers active")
        (workdir / "partial.json").write_text(json.dumps(out, indent=1))
    out["job_s"] = round(time.monotonic() - t_job, 1)
    return out


def quick_plan(baseline_repeat: int | None) -> list[tuple[str, str, int, int, list[str], int | None]]:
    """--quick (bench/README.md): cells 1x1, 1x16, 8x1, grouped by cell so that the ratios compare
    runs close in time; in each, this version under both strategies and the recipe under SSH: fresh,
    no-op, one worker changed, application changed under load. The recipe's 1x1 job then runs its
    no-op under Mitogen too (the no-op target of each strategy); 1.0.0 on 1x16: fresh, no-op under
    both strategies, then the upgrade to this version under load (SSH). No-ops: median of REPEAT
    runs, but the recipe's in 1x16 and 8x1 once (no target reads them; each restarts every worker,
    like its "one worker changed"), unless --baseline-repeat says otherwise."""
    steps = ["fresh", "noop", "change", "app"]
    plan = []
    for n, k in QUICK_CELLS:
        plan += [("role", "ssh", n, k, steps, REPEAT), ("role", "mitogen", n, k, steps, REPEAT),
                 ("baseline", "ssh", n, k, ["fresh", "noop", "noop@mitogen", "change", "app"] if (n, k) == (1, 1) else steps,
                  baseline_repeat or (REPEAT if (n, k) == (1, 1) else 1))]
        if (n, k) == (1, 16):
            plan.append((RELEASE, "ssh", n, k, ["fresh", "noop", "noop@mitogen", "from-1.0.0"], REPEAT))
    return plan


# --------------------------------------------------------------------------- throughput

CELERY_DEFAULTS_OVERRIDE = '''

# --- bench/run: Celery's own defaults instead of the role's app settings ---
app.conf.update(
    task_acks_late=False,
    task_reject_on_worker_lost=None,
    worker_prefetch_multiplier=4,
    task_send_sent_event=False,
    worker_send_task_events=False,
)
'''


def load_app(path: Path):
    os.environ["CELERY_BROKER_URL"] = broker_url()
    os.environ["CELERY_RESULT_BACKEND"] = "rpc://"
    spec = importlib.util.spec_from_file_location(f"bench_app_{path.parent.name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def total_done(app, nodes: list[str]) -> int:
    stats = app.control.inspect(destination=nodes, timeout=2.0, limit=len(nodes)).stats() or {}
    return sum(v.get("total", {}).get("celery_app.noop", 0) for v in stats.values())


def wait_done(app, nodes: list[str], before: int, count: int, deadline: float) -> int:
    done = 0
    while time.monotonic() < deadline:
        done = total_done(app, nodes) - before
        if done >= count:
            return done
        time.sleep(0.2)
    raise RuntimeError(f"throughput: only {done} of {count} tasks done in time")


def publish(noop, app, count: int) -> None:
    with app.producer_or_acquire() as producer:
        for i in range(count):
            noop.apply_async(queue="default" if i % 2 == 0 else "other", producer=producer)


def measure_throughput(app_path: Path, fleet: dict[str, list[str]], count: int, timeout: float = 300) -> dict:
    """fleet: queue -> nodes consuming it. Two numbers:
    end-to-end: publish `count` tasks while the workers consume, until all are done;
    drain: the workers stop consuming, `count` tasks are published, then the
    workers consume again: time until all are done (the fleet alone, without
    the publisher competing for the same CPUs)."""
    mod = load_app(app_path)
    app, noop = mod.app, mod.noop
    nodes = sorted({n for ns in fleet.values() for n in ns})
    before = total_done(app, nodes)
    t = time.monotonic()
    publish(noop, app, count)
    sent = time.monotonic() - t
    before = wait_done(app, nodes, before, count, t + timeout) + before
    e2e = time.monotonic() - t
    for queue, ns in fleet.items():
        app.control.cancel_consumer(queue, destination=ns, reply=True, timeout=10)
    publish(noop, app, count)
    t = time.monotonic()
    for queue, ns in fleet.items():
        app.control.add_consumer(queue, destination=ns, reply=True, timeout=10)
    wait_done(app, nodes, before, count, t + timeout)
    drain = time.monotonic() - t
    app.close()
    return {"tasks": count, "seconds": round(e2e, 2), "publish_seconds": round(sent, 2),
            "tasks_per_s": round(count / e2e, 1), "drain_seconds": round(drain, 2),
            "drain_tasks_per_s": round(count / drain, 1)}


def throughput(runner: Runner, all_hosts: list[str], workdir: Path, count: int, key: Path) -> list[dict]:
    hosts = host_names(2)
    log("throughput: wiping hosts, deploying 2 hosts x (default, other) with the role")
    wipe(all_hosts)
    workers = [{"name": "default", "queues": ["default"]}, {"name": "other", "queues": ["other"]}]
    nodes = {"default": [f"default@{h}" for h in hosts], "other": [f"other@{h}" for h in hosts]}
    role_app = write_app(workdir / "app" / "throughput-role", 0)
    defaults_app = write_app(workdir / "app" / "throughput-celery-defaults", 0)
    (defaults_app / "celery_app.py").write_text((role_app / "celery_app.py").read_text() + CELERY_DEFAULTS_OVERRIDE)
    rows = []
    for label, app_dir in (("role defaults (acks_late, prefetch 1, sent events)", role_app),
                           ("Celery defaults (acks early, prefetch 4, no sent events)", defaults_app)):
        inv = write_inventory(workdir / "inv" / "throughput", hosts, 0,
                              {"app_dir": app_dir, "celery": CELERY_TO, "fleet": workers}, key)
        env, cwd = runner.env("role", "ssh")
        playbook(runner.playbook("role"), inv, workdir / "logs" / f"throughput-{len(rows)}.log", env, cwd)
        measure_throughput(app_dir / "celery_app.py", nodes, 200)  # warm-up: connections, pool processes
        r = measure_throughput(app_dir / "celery_app.py", nodes, count)
        r.update(setting=label, fleet="2 hosts x (default, other), prefork, concurrency 2")
        log(f"throughput {label}: end-to-end {r['tasks_per_s']} tasks/s, drain {r['drain_tasks_per_s']} tasks/s")
        rows.append(r)
    return rows



# --------------------------------------------------------------------------- report

STEP_TITLES = {"fresh": "fresh", "noop": "no-op", "change": "one worker changed", "app": "application changed",
               "upgrade": f"Celery {CELERY_FROM} -> {CELERY_TO}", "remove": "one worker removed",
               "from-1.0.0": f"upgrade from {RELEASE} (this site.yml)"}
KIND_TITLES = {"role": "this version", "baseline": "recipe", RELEASE: RELEASE}


def strategy_of(c: dict) -> str:
    return c.get("strategy", "ssh")


def records(cells: list[dict]) -> list[dict]:
    """Every step run, flat: kind, the step's strategy, cell, base step, its result, its job."""
    out = []
    for c in cells:
        for step in c.get("steps") or [s for s in STEPS if s in c]:
            base, strategy = split_step(step, strategy_of(c))
            out.append({"kind": c["playbook"], "strategy": strategy, "n": c["hosts"], "k": c["workers"], "step": base,
                        "r": c[step], "job": c})
    return out


def get(recs: list[dict], kind: str, strategy: str, n: int, k: int, step: str) -> dict | None:
    for x in recs:
        if (x["kind"], x["strategy"], x["n"], x["k"], x["step"]) == (kind, strategy, n, k, step):
            return x["r"]
    return None


def fmt(v, unit="") -> str:
    return "" if v is None else f"{v}{unit}"


def table(cells: list[dict]) -> str:
    lines = ["| playbook | strategy | hosts | workers/host | step | wall s | controller CPU s | tasks/calls | changed "
             "| worker (re)starts | most down at once (host/fleet) | longest queue gap s | load sent/done/lost/dup "
             "| wait max/p99 s (2+ consumers) | wait max/p99 s (all) | long tasks on the 2 consumers |",
             "|---|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for x in records(cells):
        r = x["r"]
        roll, load = r.get("roll"), r.get("load")
        wall = f"{r['wall']:.1f}" + (f" ({', '.join(f'{w:.1f}' for w in r['walls'])})" if len(r.get("walls", [])) > 1 else "")
        cols = [KIND_TITLES.get(x["kind"], x["kind"]), x["strategy"], str(x["n"]), str(x["k"]),
                STEP_TITLES[x["step"]], wall, fmt(r.get("cpu")), f"{r.get('tasks')}/{r.get('calls')}", fmt(r.get("changed")),
                fmt(r["restarts"])]
        cols += [f"{roll['down_per_host']}/{roll['down_fleet']} ({roll['rolled']} rolled"
                 + (f"; twice at once: {', '.join(f'{w} {t} s' for w, t in roll['twice'].items())}" if roll.get("twice") else "")
                 + ")", fmt(roll["gap"])] if roll else ["", ""]
        if load:
            ws, wa, lg = load["wait_shared"], load["wait"], load["long"]
            cols += [f"{load['sent']}/{load['done']}/{load['lost']}/{load['duplicated']}",
                     f"{fmt(ws['max'])}/{fmt(ws['p99'])}" if ws["max"] is not None else "(none)",
                     f"{fmt(wa['max'])}/{fmt(wa['p99'])}",
                     (f"{len(lg['busy'])}/{len(lg['nodes'])} at {lg['at_s']} s"
                      + (f" ({', '.join(f'{v:.0f}' for v in lg['left_s'].values())} s left)" if lg.get("left_s") else "")
                      + f", {lg['given']} given, {lg['done']} done" if lg["nodes"] else "")]
        else:
            cols += ["", "", "", ""]
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def step_times(cells: list[dict]) -> str:
    """Seconds each step took in this run, measurements included (for planning a sitting)."""
    lines = ["| playbook | strategy | cell | steps: seconds (no-op: all its runs; roll steps: with their results) | job s (wipe included) |",
             "|---|---|---|---|--:|"]
    for c in cells:
        steps = ", ".join(f"{STEP_TITLES[split_step(s, strategy_of(c))[0]]}"
                          + (f" ({split_step(s, strategy_of(c))[1]})" if "@" in s else "") + f" {c[s].get('step_s')}"
                          for s in c.get("steps", []))
        lines.append(f"| {KIND_TITLES.get(c['playbook'], c['playbook'])} | {strategy_of(c)} | {c['hosts']}x{c['workers']} "
                     f"| {steps} | {fmt(c.get('job_s'))} |")
    return "\n".join(lines)


def health_costs(cells: list[dict]) -> list[tuple[str, float, int]]:
    """(job/step, seconds per gate call, workers per call) of the role's health gate."""
    out = []
    for x in records(cells):
        for h in x["r"].get("health", []):
            m = re.search(r"healthy after [0-9.]+s: (.*)", h["stdout"])
            n = len(m.group(1).split(", ")) if m else 0
            out.append((f"{x['kind']} {x['strategy']} {x['n']}x{x['k']} {x['step']}", h["seconds"], n))
    return out


def mark(ok) -> str:
    return "not measured" if ok is None else ("met" if ok else "**NOT met**")


def ratio_row(title: str, limit: float, a: float | None, b: float | None):
    return (title, f"<= {limit}", f"{a:.1f} / {b:.1f} s = {a / b:.2f}" if a and b else "", a / b <= limit if a and b else None)


def targets(cells: list[dict]) -> list[tuple[str, str, str, bool | None]]:
    """(measure, target, value from this run, met) of the issue's targets; None: not measured."""
    recs = records(cells)
    rows = []

    def wall(kind, strategy, n, k, step):
        r = get(recs, kind, strategy, n, k, step)
        return r["wall"] if r else None

    for strategy, limit in (("ssh", 0.6), ("mitogen", 0.75)):
        rows.append(ratio_row(f"no-op 1x16, this version / {RELEASE}, {strategy}", limit,
                              wall("role", strategy, 1, 16, "noop"), wall(RELEASE, strategy, 1, 16, "noop")))
    one, sixteen = wall("role", "ssh", 1, 1, "noop"), wall("role", "ssh", 1, 16, "noop")
    per = (sixteen - one) / 15 / one if one and sixteen else None
    rows.append(("each extra worker in a no-op, ssh: (1x16 - 1x1) / 15 / 1x1", "<= 2%",
                 f"({sixteen:.1f} - {one:.1f}) / 15 / {one:.1f} = {per:.1%}" if per is not None else "",
                 per <= 0.02 if per is not None else None))
    for strategy in STRATEGIES:
        rows.append(ratio_row(f"no-op 1x1, this version / recipe (which restarts everything), {strategy}", 1.0,
                              wall("role", strategy, 1, 1, "noop"), wall("baseline", strategy, 1, 1, "noop")))
    fresh = sorted({(x["strategy"] != "ssh", x["strategy"], x["n"], x["k"]) for x in recs if x["kind"] == "role" and x["step"] == "fresh"})
    for _, strategy, n, k in fresh or [(False, "ssh", n, k) for n, k in QUICK_CELLS]:
        b = wall("baseline", strategy, n, k, "fresh")
        if strategy != "ssh" and not b:
            continue  # the recipe runs under Mitogen on 1x1 only (--quick)
        rows.append(ratio_row(f"fresh {n}x{k}, this version / recipe, {strategy}", 1.0, wall("role", strategy, n, k, "fresh"), b))
    for strategy in STRATEGIES:
        ch = [x for x in recs if x["kind"] == "role" and x["strategy"] == strategy and x["step"] == "change"]
        rows.append((f"one worker changed, this version, {strategy}", "exactly 1 restart",
                     ", ".join(f"{x['n']}x{x['k']}: {x['r']['restarts']}" for x in ch),
                     all(x["r"]["restarts"] == 1 for x in ch) if ch else None))
        nop = [x for x in recs if x["kind"] == "role" and x["strategy"] == strategy and x["step"] == "noop"]
        rows.append((f"no-op, this version, {strategy}", "changed 0, no restart",
                     ", ".join(f"{x['n']}x{x['k']}: changed {x['r']['changed']}, {x['r']['restarts']} restarts" for x in nop),
                     all(x["r"]["changed"] == 0 and x["r"]["restarts"] == 0 for x in nop) if nop else None))
    rolls = [(f"application changed under load, this version, {s}", s, "role", "app") for s in STRATEGIES]
    rolls += [(f"upgrade from {RELEASE} to this version under load, {s}", s, RELEASE, "from-1.0.0") for s in STRATEGIES]

    def one_at_a_time(x):  # every worker went down and came back, never two at once, never two processes of one
        roll = x["r"]["roll"]
        return roll["down_fleet"] <= 1 and roll["rolled"] >= x["n"] * x["k"] and not roll.get("twice")

    def wait_text(x):
        load = x["r"]["load"]
        ws, before = load["wait_shared"], load.get("wait_shared_before_restarts") or {}
        text = (f"{ws['max']} ({ws['p99']}) s" + (f", before the restarts {before['max']} s" if before.get("max") is not None else "")
                if ws["max"] is not None else f"no such queue (one consumer: {load['wait']['max']} s)")
        lg = load["long"]
        return f"{x['n']}x{x['k']}: {text}" + (f", long tasks on {len(lg['busy'])}/2 at the restarts"
                                               + (f" ({', '.join(f'{v:.0f}' for v in lg['left_s'].values())} s left)"
                                                  if lg.get("left_s") else "")
                                               if lg["nodes"] else "")

    for title, strategy, kind, step in rolls:
        rs = [x for x in recs if x["kind"] == kind and x["strategy"] == strategy and x["step"] == step]
        if not rs and kind == RELEASE and strategy != "ssh":
            continue  # --quick upgrades under SSH only
        rs = [x for x in rs if x["r"].get("load") and x["r"].get("roll")]
        rows.append((title, "0 lost, fleet-wide one worker at a time",
                     "; ".join(f"{x['n']}x{x['k']}: {x['r']['load']['lost']} lost of {x['r']['load']['sent']} "
                               f"({x['r']['load']['duplicated']} duplicated), {x['r']['roll']['rolled']} of {x['n'] * x['k']} "
                               f"workers rolled, at most {x['r']['roll']['down_fleet']} down"
                               + (f", served twice at once: {x['r']['roll']['twice']} s" if x["r"]["roll"].get("twice") else "")
                               for x in rs),
                     all(x["r"]["load"]["lost"] == 0 and one_at_a_time(x) for x in rs) if rs else None))
        judged = [x for x in rs if x["r"]["load"]["wait_shared"]["max"] is not None]
        rows.append((f"{title}: wait of a task (sent -> started), queues with 2+ consumers, longest (p99)",
                     f"<= {WAIT_TARGET:.0f} s", "; ".join(wait_text(x) for x in rs),
                     all(x["r"]["load"]["wait_shared"]["max"] <= WAIT_TARGET for x in judged) if judged else None))
    return rows


def targets_table(rows) -> str:
    lines = ["| measure | target | this run | met |", "|---|---|---|---|"]
    lines += [f"| {m} | {t} | {v} | {mark(ok)} |" for m, t, v, ok in rows]
    return "\n".join(lines)


def notes(cells: list[dict]) -> list[str]:
    out = []
    costs = [(t, sec, n) for t, sec, n in health_costs(cells) if n]
    if costs:
        per_worker = [sec / n for _, sec, n in costs]
        out.append(f"- health gate: {len(costs)} calls, {min(per_worker):.2f}-{max(per_worker):.2f} s per worker")
    drains = [(d["seconds"], d["stdout"]) for x in records(cells) for d in x["r"].get("drain", [])]
    if drains:
        left = [o for _, o in drains if "not drained" in o]
        out.append(f"- drain before a restart: {len(drains)} calls, {min(s for s, _ in drains):.2f}-"
                   f"{max(s for s, _ in drains):.2f} s" + (f"; not drained: {left}" if left else ""))
    return out


def plot(cells: list[dict], path: Path) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    recs = records(cells)
    fig, axes = plt.subplots(2, 4, figsize=(20, 8.5))
    styles = {"role": "-o", "baseline": "--s", RELEASE: ":^"}
    for ax, step in zip(axes.flat, STEPS):
        for kind in KINDS:
            for strategy in STRATEGIES:
                for k in sorted({c["workers"] for c in cells}):
                    pts = sorted((x["n"], x["r"]["wall"]) for x in recs
                                 if (x["kind"], x["strategy"], x["k"], x["step"]) == (kind, strategy, k, step))
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[kind],
                                label=f"{KIND_TITLES[kind]} {strategy}, {k} workers/host")
        ax.set_xticks(sorted({c["hosts"] for c in cells}))
        ax.set_xlabel("hosts")
        ax.set_ylabel("wall time (s)")
        ax.set_title(STEP_TITLES[step])
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    axes.flat[-1].axis("off")
    fig.suptitle("site.yml over SSH: wall time by step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report(data: dict) -> str:
    m = data["meta"]
    parts = ["# Benchmark results\n",
             f"- date: {m['date']}\n- machine: {m['machine']}\n- command: `{m['command']}`\n"
             f"- checkout: {m.get('commit', '')}\n"
             f"- total runtime: {m['runtime_s'] / 60:.1f} min\n"
             f"- hosts reached over SSH as `deploy` with sudo, plainly (`ssh`) or with Mitogen (`mitogen_linear`)"
             + ("; no-op: the median of the runs in brackets (runs per job: "
                + ", ".join(sorted({f"{KIND_TITLES.get(c['playbook'], c['playbook'])} {c['hosts']}x{c['workers']} {c.get('noop_repeat')}"
                                    for c in data["cells"] if "noop" in c})) + ")" if any("noop" in c for c in data["cells"]) else "")
             + "\n",
             "Targets, from this run (ratios of wall times of `ansible-playbook`; "
             f"{RELEASE} = the released role, `scripts/release-tree {RELEASE}`, run by this bench in this sitting):\n",
             targets_table(data.get("targets") or []), "",
             "Each step runs `site.yml` (this version), `bench/baseline.yml` (the recipe) or the released "
             f"{RELEASE}'s `site.yml` on the cell's hosts: workers (solo, concurrency 1, half on `default`, half on "
             f"`other`; with 2+ workers in the cell the first two of the fleet also consume `{LONG_QUEUE}` with 2 prefork "
             f"processes), the application as a directory with an extra pip requirement ({EXTRA_PIP}), beat and "
             f"Flower on the first host. fresh installs Celery {CELERY_FROM}; one worker changed = an environment "
             "variable of one worker of the first host; application changed = one more line in the app; upgrade = "
             f"Celery {CELERY_TO}; one worker removed = the first host's last worker; upgrade from {RELEASE} = this "
             f"version's site.yml over the hosts {RELEASE} converged. wall = `ansible-playbook` from start to exit "
             "(no-op: the median, all runs in brackets); controller CPU = user+sys of it and its children (forks, "
             "ssh, Mitogen's processes); tasks = host-task results that ran (a loop once); calls = module executions "
             "(a loop once per item); changed = the recap's, summed; worker (re)starts = systemd's `Started` lines "
             "of the worker units (`celery-worker-NAME` or `celery-worker@NAME`) in the hosts' journals; most down "
             "at once = workers between systemd's `Stopping` and their `ready.` at the same time; queue gap = "
             "longest time all consumers of a queue with 2+ consumers were down; load (roll steps) = "
             f"`celery_app.sleep(0.01)` tasks sent during the run to every queue of the cell in turn ({LOAD_RATE:.0f}/s, "
             f"at most {LOAD_MAX}), done = result received, duplicated = a token executed twice (journals); wait = "
             "sent (controller) -> started (the task's own clock), longest and 99th percentile; long tasks = "
             f"`sleep({LONG_SECONDS})` given to both consumers of `{LONG_QUEUE}` when the restarts of the application roll "
             "begin (s left then, how many given).\n",
             table(data["cells"]), "",
             "Seconds per step, measurements included (no-op: all its runs):", "", step_times(data["cells"]), ""]
    if data.get("notes"):
        parts += ["", "Notes:", ""] + data["notes"]
    if data.get("throughput"):
        parts += ["", f"Throughput ({THROUGHPUT_TASKS} no-op tasks, half on `default`, half on `other`, "
                  "sent from the controller, timed until the workers' `inspect stats` count them all):", "",
                  "| settings | fleet | end-to-end s | end-to-end tasks/s | (publishing s) | drain s | drain tasks/s |",
                  "|---|---|--:|--:|--:|--:|--:|"]
        for r in data["throughput"]:
            parts.append(f"| {r['setting']} | {r['fleet']} | {r['seconds']} | {r['tasks_per_s']} | {r['publish_seconds']} "
                         f"| {r['drain_seconds']} | {r['drain_tasks_per_s']} |")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- main

def main() -> int:
    global REPEAT, BASELINE_REPEAT  # pylint: disable=global-statement
    parser = argparse.ArgumentParser(description="Benchmark site.yml against the classic recipe and the released "
                                                 f"{RELEASE}, over SSH (plain or Mitogen).")
    parser.add_argument("--quick", action="store_true",
                        help="the sitting of bench/README.md: cells 1x1,1x16,8x1, this version under ssh and mitogen, the "
                             f"recipe under ssh (and mitogen on 1x1), {RELEASE} on 1x16 and the upgrade from it")
    parser.add_argument("--hosts", default=None, help="comma-separated host counts (default 1,4,8)")
    parser.add_argument("--workers", default=None, help="comma-separated workers per host (default 1,4,16)")
    parser.add_argument("--cells", default=None, help="comma-separated HOSTSxWORKERS cells instead of the product, e.g. 1x1,8x1,1x16")
    parser.add_argument("--steps", default=None, help=f"comma-separated steps (default all: {','.join(STEPS)}; "
                                                      f"each playbook runs those it has, {RELEASE}: fresh,noop,from-1.0.0)")
    parser.add_argument("--playbooks", default=None, help=f"role,baseline,{RELEASE} (recipe = baseline; default role,baseline)")
    parser.add_argument("--strategies", default=None, help="ssh,mitogen (default ssh)")
    parser.add_argument("--throughput", action="store_true", help="also measure the throughput of a deployed fleet")
    parser.add_argument("--keep", action="store_true", help="keep the bench-* containers at the end")
    parser.add_argument("--plan", action="store_true", help="print the jobs and the number of playbook runs, run nothing")
    parser.add_argument("--repeat", type=int, default=3, help="no-op runs per job of this version or 1.0.0, median shown (default 3)")
    parser.add_argument("--baseline-repeat", type=int, default=None,
                        help="no-op runs per job of the recipe (default 1; --quick: 3 on 1x1, 1 on 1x16 and 8x1)")
    args = parser.parse_args()
    REPEAT = max(1, args.repeat)
    BASELINE_REPEAT = max(1, args.baseline_repeat or 1)

    if args.quick:
        given = [o for o in ("hosts", "workers", "cells", "steps", "playbooks", "strategies") if getattr(args, o) is not None]
        if given:
            parser.error(f"--quick fixes the cells, playbooks, strategies and steps: not with --{', --'.join(given)}")
        plan = quick_plan(BASELINE_REPEAT if args.baseline_repeat else None)
    else:
        hosts = [int(x) for x in (args.hosts or "1,4,8").split(",")]
        workers = [int(x) for x in (args.workers or "1,4,16").split(",")]
        cells = [(n, k) for n in hosts for k in workers]
        if args.cells:
            try:
                cells = [(int(c.split("x")[0]), int(c.split("x")[1])) for c in args.cells.split(",")]
            except (ValueError, IndexError):
                parser.error(f"--cells: HOSTSxWORKERS,... e.g. 1x1,8x1,1x16, not {args.cells}")
        steps = [s for s in (args.steps or ",".join(STEPS)).split(",") if s]
        unknown = {s for s in steps if split_step(s, "ssh")[0] not in STEPS or split_step(s, "ssh")[1] not in STRATEGIES
                   or s.startswith("fresh@")}  # a job's fresh runs under its own strategy
        if unknown or "fresh" not in steps:
            parser.error(f"--steps: known {','.join(STEPS)}, each also as STEP@STRATEGY (run under that strategy on the "
                         f"job's hosts, e.g. noop@mitogen); fresh is always needed ({sorted(unknown)})")
        steps.sort(key=lambda s: (STEPS.index(split_step(s, "ssh")[0]), "@" in s))
        kinds = [KIND_ALIASES.get(x, x) for x in (args.playbooks or "role,baseline").split(",") if x]
        strategies = [x for x in (args.strategies or "ssh").split(",") if x]
        if set(kinds) - set(KINDS) or set(strategies) - set(STRATEGIES):
            parser.error(f"--playbooks: {','.join(KINDS)} (or recipe); --strategies: {','.join(STRATEGIES)}")
        plan = [(kind, strategy, n, k, [s for s in steps if split_step(s, strategy)[0] in KIND_STEPS[kind]],
                 BASELINE_REPEAT if kind == "baseline" else REPEAT)
                for kind in kinds for strategy in strategies for n, k in cells]
    if any(n < 1 or k < 1 for _, _, n, k, _, _ in plan):
        parser.error("a cell needs at least 1 host and 1 worker per host")

    if args.plan:
        runs = 0
        for kind, strategy, n, k, steps, reps in plan:
            count = sum(reps if split_step(s, strategy)[0] == "noop" else 1 for s in steps)
            runs += count
            print(f"{kind:8s} {strategy:8s} {n}x{k:<3d} {count:2d} runs: {', '.join(steps)}"
                  + (f" (no-op x{reps})" if any(split_step(s, strategy)[0] == "noop" for s in steps) else ""))
        print(f"{len(plan)} jobs, {runs} ansible-playbook runs, {max(n for _, _, n, _, _, _ in plan)} host(s)")
        return 0

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = RESULTS / stamp
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    latest = RESULTS / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(stamp)
    log(f"results in {workdir}; plan: " + "; ".join(f"{kind} {s} {n}x{k} {','.join(st)}" + (f" (no-op x{r})" if r else "")
                                                    for kind, s, n, k, st, r in plan))

    all_hosts = host_names(max([n for _, _, n, _, _, _ in plan] + ([2] if args.throughput else [])))
    data = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{platform.node()}: {os.cpu_count()} CPUs, "
                                f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                                f"{platform.platform()}, podman {run(['podman', '--version']).stdout.split()[-1]}",
                     "command": "bench/run " + " ".join(sys.argv[1:]),
                     "commit": run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], check=False).stdout.strip(),
                     "plan": [list(p) for p in plan]},
            "cells": [], "throughput": []}
    try:
        runner = Runner(export_release(workdir) if any(kind == RELEASE for kind, *_ in plan) else None)
        ensure_wheelhouse()
        key = ssh_key()
        log(f"starting bench-broker and {len(all_hosts)} host(s)")
        parallel(lambda f: f(), [lambda: setup_broker(workdir, key, runner), lambda: start_containers(all_hosts, key)])
        for kind, strategy, n, k, steps, noop_repeat in plan:
            data["cells"].append(job(runner, kind, strategy, n, k, all_hosts, workdir, key, steps, noop_repeat))
            (workdir / "results.json").write_text(json.dumps(data, indent=1))
        if args.throughput:
            data["throughput"] = throughput(runner, all_hosts, workdir, THROUGHPUT_TASKS, key)
    finally:
        data["meta"]["runtime_s"] = round(time.monotonic() - T0, 1)
        data["targets"] = targets(data["cells"]) if data["cells"] else []
        data["notes"] = notes(data["cells"]) if data["cells"] else []
        (workdir / "results.json").write_text(json.dumps(data, indent=1))
        if not args.keep:
            log("removing the bench-* containers")
            parallel(lambda h: run([str(ROOT / "lab" / "host.sh"), "rm", h], check=False, timeout=300),
                     all_hosts + [BROKER])
        md = report(data)
        (workdir / "RESULTS.md").write_text(md)
    if data["cells"]:
        plot(data["cells"], workdir / "bench.png")
    print(md)
    log(f"done in {(time.monotonic() - T0) / 60:.1f} min: {workdir}/RESULTS.md, {workdir}/bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

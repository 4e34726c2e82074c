"""Benchmark of the celery_workers role against the classic recipe (bench/run).

See bench/README.md. Prints a markdown table, writes
bench/results/<stamp>/{results.json,RESULTS.md,bench.png,logs/}.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import secrets
import shutil
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
PORTS = {"amqp": 5675, "management": 15675, "dist": 25675, "epmd": 4372}
SSH_PORT_BASE = 2240  # bench-wN: sshd on 127.0.0.1:2240+N
SSH_DIR = ROOT / ".lab" / "ssh" / "bench"
PASSWORD_FILE = ROOT / ".lab" / "bench_broker_password"
WHEELHOUSE = RESULTS / "wheelhouse"
HOST_WHEELS = "/opt/bench-wheels"
CELERY_FROM, CELERY_TO = "5.6.3", "5.7.0"  # fresh installs CELERY_FROM; the "upgrade" step moves to CELERY_TO
FLOWER_VERSION = "2.2.0"
EXTRA_PIP = "humanize==4.17.0"  # the application's extra requirement
WHEEL_SPECS = [f"celery=={CELERY_FROM}", f"celery=={CELERY_TO}", f"flower=={FLOWER_VERSION}", EXTRA_PIP]
PLAYBOOKS = {"role": ROOT / "site.yml", "baseline": BENCH / "baseline.yml"}
STEPS = ("fresh", "noop", "change", "app", "upgrade", "remove")
THROUGHPUT_TASKS = 5000
LOAD_RATE, LOAD_MAX = 20.0, 12000  # tasks/s until the run ends, at most this many (10 min), during "app" on cells with 16 workers/host
REPEAT = 3  # no-op re-converges per cell; the table shows the median
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
    """host -> its workers: concurrency 1, solo, half on `default`, half on `other`."""
    if state.get("fleet"):
        return {h: state["fleet"] for h in hosts}
    out = {}
    for i, h in enumerate(hosts):
        ws = [{"name": f"w{j:02d}", "queues": ["default" if j % 2 == 0 else "other"], "concurrency": 1,
               "pool": "solo", "extra_args": ["--without-gossip", "--without-mingle"]} for j in range(workers)]
        if i == 0 and state.get("change"):
            ws[0] = dict(ws[0], env={"BENCH_REVISION": "2"})
        if i == 0 and state.get("remove"):
            ws = ws[:-1]
        out[h] = ws
    return out


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
        "celery_workers_stop_timeout": 30,
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


def ansible_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_CALLBACK_PLUGINS"] = str(BENCH / "callback_plugins")
    # bench_count: counts and health-gate times; profile_tasks: where the time goes (in each log).
    env["ANSIBLE_CALLBACKS_ENABLED"] = "bench_count,ansible.posix.profile_tasks"
    env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "12"
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    return env


def playbook(pb: Path, inventory: Path, logfile: Path, timeout=2400) -> dict:
    """Run a playbook; return wall time, controller CPU and the counts of the bench_count callback."""
    count_file = logfile.with_suffix(".count.json")
    count_file.unlink(missing_ok=True)
    env = ansible_env()
    env["BENCH_COUNT_FILE"] = str(count_file)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    with open(logfile, "w", encoding="utf-8") as out:
        rc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(pb)], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False).returncode
    wall = time.monotonic() - t
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    counts = json.loads(count_file.read_text()) if count_file.exists() else {"total": {}}
    if rc != 0:
        raise RuntimeError(f"{pb.name} failed (rc {rc}), see {logfile}:\n" + "".join(logfile.read_text().splitlines(True)[-40:]))
    return dict(counts["total"], wall=round(wall, 2), rc=rc, health=counts.get("health", []),
                cpu=round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1))


def setup_broker(workdir: Path, key: Path) -> None:
    log("starting bench-broker")
    start_containers([BROKER])
    inv = write_inventory(workdir / "inv-broker", [], 0, {"app_dir": workdir / "app"}, key)
    playbook(ROOT / "lab" / "broker.yml", inv, workdir / "logs" / "broker.log", timeout=600)


# --------------------------------------------------------------------------- hosts

WIPE = r"""
units=$(systemctl list-units --all --plain --no-legend 'celery-worker-*' 'celery-beat.service' 'celery-flower.service' | awk '{print $1}')
[ -n "$units" ] && systemctl stop $units
rm -f /etc/systemd/system/celery-worker-*.service /etc/systemd/system/celery-beat.service \
      /etc/systemd/system/celery-flower.service /etc/systemd/system/multi-user.target.wants/celery-*
rm -rf /etc/systemd/system/celery-worker-*.service.d
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
# Units (re)started since the cursor: systemd logs "Started <unit> - ..." for each start.
STARTS = r"""journalctl -q --after-cursor='{c}' -o short-unix | grep -c ' systemd\[1\]: Started celery-worker-' || true
systemctl list-units --plain --no-legend --state=active 'celery-worker-*' | wc -l"""

# Worker (re)starts since the cursor, with times: systemd's Stopping/Started
# lines and each worker's "<name>@<host> ready." (consuming).
# (The role's units log as celery-worker-NAME, the baseline's as celery.)
WINDOWS = r"""journalctl -q --after-cursor='{c}' -o short-unix \
  | grep -E ' systemd\[1\]: (Stopping|Started) celery-worker-| [^ ]+\[[0-9]+\]: .*@[^ ]+ ready\.' || true"""


def starts(hosts: list[str], cursors: list[str]) -> tuple[int, int]:
    outs = parallel(lambda hc: pexec(hc[0], STARTS.format(c=hc[1])).split(), zip(hosts, cursors))
    return sum(int(o[0]) for o in outs), sum(int(o[1]) for o in outs)


def windows(host: str, cur: str) -> dict[str, list[float]]:
    """worker name -> [stopping, ready] of its restart since the cursor (None when it did not stop)."""
    out: dict[str, list] = {}
    for line in pexec(host, WINDOWS.format(c=cur)).splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        ts = float(parts[0])
        m = re.search(r"(Stopping|Started) celery-worker-(\S+)\.service", line)
        if m:
            w = out.setdefault(m.group(2), [None, None])
            if m.group(1) == "Stopping" and w[0] is None:
                w[0] = ts
            continue
        m = re.search(r"(\S+)@\S+ ready\.", line)
        if m:
            w = out.setdefault(m.group(1), [None, None])
            w[1] = ts if w[1] is None else max(w[1], ts)
    return out


def roll_stats(fleet_map: dict[str, list[dict]], wins: dict[str, dict]) -> dict:
    """From the (stopping, ready) windows: most workers down at once (per host and fleet-wide)
    and, per queue with two or more consumers, the longest time none was consuming."""
    # A worker stopped and not ready by the end of the measurement counts as down until then.
    end = time.time()
    down = [(h, name, w[0], w[1] or end) for h, ws in wins.items() for name, w in ws.items() if w[0]]

    def most_at_once(ivs):
        pts = sorted([(a, 1) for _, _, a, _ in ivs] + [(b, -1) for _, _, _, b in ivs])
        cur = best = 0
        for _, d in pts:
            cur += d
            best = max(best, cur)
        return best
    per_host = max([most_at_once([d for d in down if d[0] == h]) for h in wins] or [0])
    gaps = {}
    for queue in sorted({q for ws in fleet_map.values() for w in ws for q in w["queues"]}):
        consumers = [(h, w["name"]) for h, ws in fleet_map.items() for w in ws if queue in w["queues"]]
        if len(consumers) < 2:
            continue
        ivs = [d for d in down if (d[0], d[1]) in consumers]
        if len(ivs) < len(consumers):  # one consumer never stopped: the queue always had it
            gaps[queue] = 0.0
            continue
        # all consumers down at once: the intersection of their windows
        gaps[queue] = round(max(0.0, min(d[3] for d in ivs) - max(d[2] for d in ivs)), 2)
    return {"down_per_host": per_host, "down_fleet": most_at_once(down), "gap": max(gaps.values(), default=0.0),
            "gaps": gaps}


def measured(pb: Path, hosts: list[str], inventory: Path, logfile: Path, fleet_map=None, load=None) -> dict:
    cur = parallel(cursor, hosts)
    if load is not None:
        load.start()
    try:
        res = playbook(pb, inventory, logfile)
    finally:
        if load is not None:
            load.stop()
    res["restarts"], res["active"] = starts(hosts, cur)
    if fleet_map is not None:
        # The health gate may pass a moment before a worker logs "ready.": wait
        # (up to 20 s) until every stopped worker has its line.
        deadline = time.monotonic() + 20
        while True:
            wins = dict(zip(hosts, parallel(lambda hc: windows(*hc), zip(hosts, cur))))
            if all(w[1] for ws in wins.values() for w in ws.values() if w[0]) or time.monotonic() > deadline:
                break
            time.sleep(1)
        res["roll"] = roll_stats(fleet_map, wins)
    if load is not None:
        res["load"] = load.result()
    return res


# --------------------------------------------------------------------------- load during a roll

class Load:
    """Sends celery_app.sleep(0.01, token) at LOAD_RATE/s to `default` and `other`
    while the playbook runs (at most LOAD_MAX), then collects every result:
    done, lost (no result within the timeout), duplicated (a token executed
    twice, counted from the workers' journals)."""

    def __init__(self, app_dir: Path, hosts: list[str]):
        self.mod = load_app(app_dir / "celery_app.py")
        self.hosts = hosts
        self.run = secrets.token_hex(4)
        self.sent: dict[str, object] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)

    def start(self):
        self._thread.start()

    def _send(self):
        t = time.monotonic()
        i = 0
        while not self._stop.is_set() and i < LOAD_MAX:
            token = f"{self.run}-{i}"
            self.sent[token] = self.mod.sleep.apply_async((0.01,), {"token": token},
                                                          queue=("default", "other")[i % 2])
            i += 1
            time.sleep(max(0.0, t + i / LOAD_RATE - time.monotonic()))

    def stop(self):
        self._stop.set()
        self._thread.join()

    def result(self, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        done = 0
        for res in self.sent.values():
            try:
                res.get(timeout=max(0.1, deadline - time.monotonic()))
                done += 1
            except Exception:  # pylint: disable=broad-except  # timeout: lost (or very late)
                pass
        grep = f"journalctl -q -o cat -u 'celery-worker-*' --grep 'token={self.run}-' | grep -o 'token=[^ ]*' || true"
        counts = collections.Counter(t for h in self.hosts for t in pexec(h, grep).split())
        self.mod.app.close()
        return {"sent": len(self.sent), "done": done, "lost": len(self.sent) - done,
                "duplicated": sum(1 for c in counts.values() if c > 1)}


# --------------------------------------------------------------------------- matrix

def cell(kind: str, n: int, k: int, all_hosts: list[str], workdir: Path, key: Path, steps: list[str]) -> dict:
    hosts = host_names(n)
    tag = f"{kind}-{n}x{k}"
    log(f"{tag}: wiping {len(all_hosts)} host(s)")
    wipe(all_hosts)
    app_dir = workdir / "app" / tag
    state = {"app_dir": write_app(app_dir, 0), "celery": CELERY_FROM}
    inv = workdir / "inv" / tag
    out = {"playbook": kind, "hosts": n, "workers": k}
    for step in steps:
        if step == "remove" and k == 1:
            continue  # the host's only worker: not "one of its workers"
        if step == "change":
            state["change"] = True
        if step == "app":
            write_app(app_dir, 1)
        if step == "upgrade":
            state["celery"] = CELERY_TO
        if step == "remove":
            state["remove"] = True
        write_inventory(inv, hosts, k, state, key)
        fleet_map = fleet(hosts, k, state)
        logfile = workdir / "logs" / f"{tag}-{step}.log"
        if step == "noop":
            repeat = REPEAT if kind == "role" else BASELINE_REPEAT
            runs = [measured(PLAYBOOKS[kind], hosts, inv, logfile.with_name(f"{tag}-{step}{i}.log")) for i in range(repeat)]
            r = dict(sorted(runs, key=lambda x: x["wall"])[len(runs) // 2], walls=[x["wall"] for x in runs],
                     changed=max(x["changed"] for x in runs), restarts=max(x["restarts"] for x in runs))
        else:
            load = Load(app_dir, hosts) if step == "app" and k >= 16 else None
            r = measured(PLAYBOOKS[kind], hosts, inv, logfile,
                         fleet_map=fleet_map if step in ("app", "upgrade") else None, load=load)
        out[step] = r
        want = sum(len(ws) for ws in fleet_map.values())
        if kind == "baseline" and step == "remove":
            want += 1  # the classic recipe removes nothing: the worker keeps running
        log(f"{tag} {step}: {r['wall']:.1f}s cpu={r['cpu']}s tasks={r.get('tasks')} calls={r.get('calls')} "
            f"changed={r.get('changed')} (re)starts={r['restarts']} active={r['active']}/{want}"
            + (f" roll={r['roll']}" if "roll" in r else "") + (f" load={r['load']}" if "load" in r else ""))
        if r["active"] != want:
            raise RuntimeError(f"{tag} {step}: {r['active']} of {want} workers active")
        (workdir / "partial.json").write_text(json.dumps(out, indent=1))
    return out


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


def throughput(all_hosts: list[str], workdir: Path, count: int, key: Path) -> list[dict]:
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
        playbook(PLAYBOOKS["role"], inv, workdir / "logs" / f"throughput-{len(rows)}.log")
        measure_throughput(app_dir / "celery_app.py", nodes, 200)  # warm-up: connections, pool processes
        r = measure_throughput(app_dir / "celery_app.py", nodes, count)
        r.update(setting=label, fleet="2 hosts x (default, other), prefork, concurrency 2")
        log(f"throughput {label}: end-to-end {r['tasks_per_s']} tasks/s, drain {r['drain_tasks_per_s']} tasks/s")
        rows.append(r)
    return rows


# --------------------------------------------------------------------------- report

STEP_TITLES = {"fresh": "fresh", "noop": "no-op", "change": "one worker changed", "app": "application changed",
               "upgrade": f"Celery {CELERY_FROM} -> {CELERY_TO}", "remove": "one worker removed"}


def table(cells: list[dict]) -> str:
    lines = ["| playbook | hosts | workers/host | step | wall s | controller CPU s | tasks/calls | changed "
             "| worker (re)starts | most down at once (host/fleet) | longest queue gap s | load sent/done/lost/dup |",
             "|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for c in cells:
        for step in STEPS:
            r = c.get(step)
            if not r:
                continue
            roll, load = r.get("roll"), r.get("load")
            lines.append(f"| {c['playbook']} | {c['hosts']} | {c['workers']} | {STEP_TITLES[step]} | {r['wall']:.1f} "
                         f"| {r.get('cpu', '')} | {r.get('tasks')}/{r.get('calls')} | {r.get('changed')} | {r['restarts']} "
                         + (f"| {roll['down_per_host']}/{roll['down_fleet']} | {roll['gap']} " if roll else "| | ")
                         + (f"| {load['sent']}/{load['done']}/{load['lost']}/{load['duplicated']} |" if load else "| |"))
    return "\n".join(lines)


def health_costs(cells: list[dict]) -> list[tuple[str, float, int]]:
    """(cell/step, seconds per gate call, workers per call) of the role's health gate."""
    out = []
    for c in cells:
        for step in STEPS:
            for h in (c.get(step) or {}).get("health", []):
                m = re.search(r"healthy after [0-9.]+s: (.*)", h["stdout"])
                n = len(m.group(1).split(", ")) if m else 0
                out.append((f"{c['playbook']} {c['hosts']}x{c['workers']} {step}", h["seconds"], n))
    return out


def mark(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def checks(cells: list[dict]) -> list[str]:
    out = []
    by = {(c["playbook"], c["hosts"], c["workers"]): c for c in cells}
    for c in (c for c in cells if c["playbook"] == "role"):
        n, k = c["hosts"], c["workers"]
        tag = f"{n}x{k}"
        base = by.get(("baseline", n, k))
        if "fresh" in c and base and "fresh" in base:
            ratio = c["fresh"]["wall"] / base["fresh"]["wall"]
            out.append(f"- {tag} fresh: role/baseline = {c['fresh']['wall']:.1f}/{base['fresh']['wall']:.1f} s = "
                       f"{ratio:.2f} (target <= 1: {mark(ratio <= 1)})")
        if "noop" in c:
            wall = c["noop"]["wall"]
            out.append(f"- {tag} no-op: {wall:.1f} s, changed={c['noop']['changed']}, restarts={c['noop']['restarts']} "
                       f"(target <= 2 s: {mark(wall <= 2.0)}; changed 0 and no restart: "
                       f"{mark(c['noop']['changed'] == 0 and c['noop']['restarts'] == 0)})")
            one = by.get(("role", 1, k))
            if n > 1 and one and "noop" in one:
                ratio = c["noop"]["wall"] / one["noop"]["wall"]
                out.append(f"- {tag} no-op / 1x{k} no-op = {ratio:.2f} (target <= 1.5: {mark(ratio <= 1.5)})")
        if "change" in c:
            out.append(f"- {tag} one worker changed: {c['change']['restarts']} restart(s) in {c['change']['wall']:.1f} s "
                       f"(target exactly 1: {mark(c['change']['restarts'] == 1)}; no-op + start + gate: "
                       f"{c['change']['wall'] - c['noop']['wall']:+.1f} s over the no-op)" if "noop" in c else "")
        for step in ("app", "upgrade"):
            r = c.get(step)
            if r and r.get("roll"):
                roll = r["roll"]
                out.append(f"- {tag} {STEP_TITLES[step]}: {r['restarts']} restarts; most down at once per host "
                           f"{roll['down_per_host']} (target 1: {mark(roll['down_per_host'] <= 1)}), longest gap of a queue "
                           f"with 2+ consumers {roll['gap']} s (target 0: {mark(roll['gap'] == 0)})")
            if r and r.get("load"):
                load = r["load"]
                out.append(f"- {tag} {STEP_TITLES[step]} under load: {load['sent']} sent, {load['done']} done, "
                           f"{load['lost']} lost, {load['duplicated']} duplicated (target 0 lost: {mark(load['lost'] == 0)})")
    costs = [(t, sec, n) for t, sec, n in health_costs(cells) if n]
    if costs:
        per_worker = [sec / n for _, sec, n in costs]
        single = [sec for _, sec, n in costs if n == 1]
        out.append(f"- health gate: {len(costs)} calls, {min(per_worker):.2f}-{max(per_worker):.2f} s per worker "
                   f"(one call per host for new workers, one per worker in a roll"
                   + (f"; a single worker {min(single):.2f}-{max(single):.2f} s" if single else "")
                   + f") (target <= 2 s per worker: {mark(max(per_worker) <= 2.0)})")
    return [line for line in out if line]


def plot(cells: list[dict], path: Path) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    for ax, step in zip(axes.flat, STEPS):
        for kind, style in (("role", "-o"), ("baseline", "--s")):
            for k in sorted({c["workers"] for c in cells}):
                pts = sorted((c["hosts"], c[step]["wall"]) for c in cells
                             if c["playbook"] == kind and c["workers"] == k and step in c)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{kind}, {k} workers/host")
        ax.set_xticks(sorted({c["hosts"] for c in cells}))
        ax.set_xlabel("hosts")
        ax.set_ylabel("wall time (s)")
        ax.set_title(STEP_TITLES[step])
        ax.grid(True, alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8)
    fig.suptitle("site.yml over SSH: wall time by step")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=100)


def report(data: dict) -> str:
    m = data["meta"]
    parts = ["# Benchmark results\n",
             f"- date: {m['date']}\n- machine: {m['machine']}\n- command: `{m['command']}`\n"
             f"- total runtime: {m['runtime_s'] / 60:.1f} min\n"
             f"- hosts reached over SSH as `deploy` with sudo; no-op: median of {m.get('noop_repeats')} runs of the "
             f"role, {m.get('baseline_noop_repeats')} of the baseline\n",
             "Each step runs `site.yml` (the role) or `bench/baseline.yml` on the cell's hosts: workers "
             f"(solo, concurrency 1, half on `default`, half on `other`), the application as a directory with "
             f"an extra pip requirement ({EXTRA_PIP}), beat and Flower on the first host. fresh installs Celery "
             f"{CELERY_FROM}; one worker changed = an environment variable of one worker of the first host; "
             f"application changed = one more line in the app; upgrade = Celery {CELERY_TO}; one worker removed = "
             "the first host's last worker. wall = `ansible-playbook` from start to exit; controller CPU = user+sys "
             "of it and its children (forks, ssh); tasks = host-task results that ran (a loop once); calls = "
             "module executions (a loop once per item); changed = the recap's, summed; worker (re)starts = "
             "`Started celery-worker-*` lines in the hosts' journals; most down at once = workers between "
             "systemd's `Stopping` and their `ready.` at the same time; queue gap = longest time all consumers of "
             "a queue with 2+ consumers were down; load = `celery_app.sleep(0.01)` tasks sent during the run "
             f"(at most {LOAD_MAX}, {LOAD_RATE:.0f}/s, cells with 16 workers/host), done = result received, "
             "duplicated = a token executed twice (journals).\n",
             table(data["cells"]), ""]
    if data.get("checks"):
        parts += ["", "Targets (issue 14), from this run:", ""] + data["checks"]
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
    parser = argparse.ArgumentParser(description="Benchmark site.yml against the classic recipe, over SSH.")
    parser.add_argument("--quick", action="store_true", help="1,4 hosts x 1,4 workers (default: 1,4,8 x 1,4,16)")
    parser.add_argument("--hosts", default=None, help="comma-separated host counts, e.g. 1,8")
    parser.add_argument("--workers", default=None, help="comma-separated workers per host, e.g. 1,16")
    parser.add_argument("--cells", default=None, help="comma-separated HOSTSxWORKERS cells instead of the product, e.g. 1x1,8x1,1x16")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated steps (default: {','.join(STEPS)})")
    parser.add_argument("--playbooks", default="role,baseline", help="role,baseline (default both)")
    parser.add_argument("--throughput", action="store_true", help="also measure the throughput of a deployed fleet")
    parser.add_argument("--keep", action="store_true", help="keep the bench-* containers at the end")
    parser.add_argument("--repeat", type=int, default=3, help="no-op re-converges per role cell, median shown (default 3)")
    parser.add_argument("--baseline-repeat", type=int, default=1, help="no-op re-converges per baseline cell (default 1)")
    args = parser.parse_args()
    REPEAT, BASELINE_REPEAT = max(1, args.repeat), max(1, args.baseline_repeat)

    hosts = [1, 4] if args.quick else [1, 4, 8]
    workers = [1, 4] if args.quick else [1, 4, 16]
    if args.hosts:
        hosts = [int(x) for x in args.hosts.split(",")]
    if args.workers:
        workers = [int(x) for x in args.workers.split(",")]
    cells = [(n, k) for n in hosts for k in workers]
    if args.cells:
        try:
            cells = [(int(c.split("x")[0]), int(c.split("x")[1])) for c in args.cells.split(",")]
        except (ValueError, IndexError):
            parser.error(f"--cells: HOSTSxWORKERS,... e.g. 1x1,8x1,1x16, not {args.cells}")
        hosts = sorted({n for n, _ in cells})
    steps = [s for s in args.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown or "fresh" not in steps:
        parser.error(f"--steps: known {','.join(STEPS)}; fresh is always needed ({sorted(unknown)})")
    kinds = args.playbooks.split(",")

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = RESULTS / stamp
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    latest = RESULTS / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(stamp)
    log(f"results in {workdir}")

    all_hosts = host_names(max(hosts + ([2] if args.throughput else [])))
    data = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{platform.node()}: {os.cpu_count()} CPUs, "
                                f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                                f"{platform.platform()}, podman {run(['podman', '--version']).stdout.split()[-1]}",
                     "command": "bench/run " + " ".join(sys.argv[1:]),
                     "noop_repeats": REPEAT, "baseline_noop_repeats": BASELINE_REPEAT},
            "cells": [], "throughput": []}
    try:
        ensure_wheelhouse()
        key = ssh_key()
        setup_broker(workdir, key)
        log(f"starting {len(all_hosts)} host(s)")
        start_containers(all_hosts, key)
        for kind in kinds:
            for n, k in cells:
                data["cells"].append(cell(kind, n, k, all_hosts, workdir, key, steps))
                (workdir / "results.json").write_text(json.dumps(data, indent=1))
        if args.throughput:
            data["throughput"] = throughput(all_hosts, workdir, THROUGHPUT_TASKS, key)
    finally:
        data["meta"]["runtime_s"] = round(time.monotonic() - T0, 1)
        data["checks"] = checks(data["cells"]) if data["cells"] else []
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

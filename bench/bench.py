"""Benchmark of the celery_workers role against the classic recipe (bench/run).

See bench/README.md. Prints a markdown table, writes
bench/results/<stamp>/{results.json,RESULTS.md,bench.png,logs/}.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
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
PASSWORD_FILE = ROOT / ".lab" / "bench_broker_password"
WHEELHOUSE = RESULTS / "wheelhouse"
HOST_WHEELS = "/opt/bench-wheels"
CELERY_VERSION = "5.7.0"
PLAYBOOKS = {"role": ROOT / "playbooks" / "site.yml", "baseline": BENCH / "baseline.yml"}
THROUGHPUT_TASKS = 5000
REPEAT = 3  # no-op re-converges per cell; the table shows the median
BASELINE_REPEAT = 1  # the baseline restarts every worker on each run: slow, and far from the role either way
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"==> [bench {time.monotonic() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def run(cmd, check=True, timeout=600, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, check=False, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def pexec(host: str, script: str, timeout=120) -> str:
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
    if not any(WHEELHOUSE.glob(f"celery-{CELERY_VERSION}-*.whl")):
        log(f"downloading celery=={CELERY_VERSION} and its dependencies into {WHEELHOUSE}")
        run([str(VENV_BIN / "pip"), "download", "-q", "-d", str(WHEELHOUSE), f"celery=={CELERY_VERSION}"], timeout=600)


def host_names(n: int) -> list[str]:
    return [f"bench-w{i}" for i in range(1, n + 1)]


def start_containers(names: list[str], broker: bool = False) -> None:
    def start(name):
        args = [str(ROOT / "lab" / "host.sh"), "start", name, BROKER_IMAGE if broker else HOST_IMAGE]
        run(args + (["--broker"] if broker else []), timeout=300)
        if not broker:
            run(["podman", "exec", name, "rm", "-rf", HOST_WHEELS])
            run(["podman", "cp", str(WHEELHOUSE), f"{name}:{HOST_WHEELS}"])
    parallel(start, names)


CONNECTION = "podman_pipelined"


def write_inventory(path: Path, hosts: list[str], workers: int, change: bool = False, extra: dict | None = None,
                    host_workers: dict | None = None) -> Path:
    """An inventory of `hosts` with `workers` workers each (concurrency 1, solo)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "host_vars").mkdir(exist_ok=True)
    for old in (path / "host_vars").glob("*.json"):
        old.unlink()
    inv = {"all": {"vars": {"ansible_connection": CONNECTION,
                            "ansible_python_interpreter": "/usr/bin/python3"},
                   "children": {"broker": {"hosts": {BROKER: {}}},
                                "celery_workers": {"hosts": {h: {} for h in hosts}}}}}
    (path / "hosts.json").write_text(json.dumps(inv, indent=1))
    group = {
        "lab_broker_amqp_port": PORTS["amqp"], "lab_broker_management_port": PORTS["management"],
        "lab_broker_dist_port": PORTS["dist"], "lab_broker_epmd_port": PORTS["epmd"],
        "lab_broker_vhost": "celery", "lab_broker_user": "celery", "lab_broker_password": password(),
        "celery_workers_broker_url": broker_url(),
        "celery_workers_celery_version": CELERY_VERSION,
        # "fresh" installs come from a local wheelhouse copied into each host, not PyPI.
        "celery_workers_pip_environment": {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": HOST_WHEELS},
        "celery_workers_health_timeout": 120,
        "celery_workers_stop_timeout": 30,
    }
    group.update(extra or {})
    (path / "group_vars").mkdir(exist_ok=True)
    (path / "group_vars" / "all.json").write_text(json.dumps(group, indent=1))
    for i, h in enumerate(hosts):
        if host_workers is not None:
            ws = host_workers
        else:
            ws = [{"name": f"w{j:02d}", "queues": ["default" if j % 2 == 0 else "other"], "concurrency": 1,
                   "pool": "solo", "extra_args": ["--without-gossip", "--without-mingle"]} for j in range(workers)]
            if change and i == 0:
                ws[0] = dict(ws[0], env={"BENCH_REVISION": "2"})
        (path / "host_vars" / f"{h}.json").write_text(json.dumps({"celery_workers": ws}, indent=1))
    return path


def ansible_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_CALLBACK_PLUGINS"] = str(BENCH / "callback_plugins")
    env["ANSIBLE_CONNECTION_PLUGINS"] = str(BENCH / "connection_plugins")
    env["ANSIBLE_CALLBACKS_ENABLED"] = "bench_count"
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    return env


def playbook(pb: Path, inventory: Path, logfile: Path, timeout=1800) -> dict:
    """Run a playbook; return wall time and the counts of the bench_count callback."""
    count_file = logfile.with_suffix(".count.json")
    count_file.unlink(missing_ok=True)
    env = ansible_env()
    env["BENCH_COUNT_FILE"] = str(count_file)
    t = time.monotonic()
    with open(logfile, "w", encoding="utf-8") as out:
        rc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(pb)], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False).returncode
    wall = time.monotonic() - t
    counts = json.loads(count_file.read_text())["total"] if count_file.exists() else {}
    if rc != 0:
        raise RuntimeError(f"{pb.name} failed (rc {rc}), see {logfile}:\n" + "".join(logfile.read_text().splitlines(True)[-40:]))
    return dict(counts, wall=round(wall, 2), rc=rc)


def setup_broker(workdir: Path) -> None:
    log("starting bench-broker")
    start_containers([BROKER], broker=True)
    inv = write_inventory(workdir / "inv-broker", [], 0)
    playbook(ROOT / "lab" / "broker.yml", inv, workdir / "logs" / "broker.log", timeout=600)


# --------------------------------------------------------------------------- hosts

WIPE = r"""
units=$(systemctl list-units --all --plain --no-legend 'celery-worker-*' 'celery-beat.service' | awk '{print $1}')
[ -n "$units" ] && systemctl stop $units
rm -f /etc/systemd/system/celery-worker-*.service /etc/systemd/system/celery-beat.service \
      /etc/systemd/system/multi-user.target.wants/celery-*
systemctl daemon-reload
systemctl reset-failed
rm -rf /opt/celery /etc/celery /var/lib/celery
userdel celery 2>/dev/null; groupdel celery 2>/dev/null
true
"""


def wipe(hosts: list[str]) -> None:
    parallel(lambda h: pexec(h, WIPE, timeout=300), hosts)


def cursor(host: str) -> str:
    out = pexec(host, "journalctl -q -n 0 --show-cursor")
    return out.strip().split("cursor: ", 1)[1]


# Units (re)started since the cursor: systemd logs "Started <unit> - ..." for each start.
STARTS = r"""journalctl -q --after-cursor='{c}' _PID=1 -o cat | grep -c '^Started celery-worker-' || true
systemctl list-units --plain --no-legend --state=active 'celery-worker-*' | wc -l"""


def starts(hosts: list[str], cursors: list[str]) -> tuple[int, int]:
    outs = parallel(lambda hc: pexec(hc[0], STARTS.format(c=hc[1])).split(), zip(hosts, cursors))
    return sum(int(o[0]) for o in outs), sum(int(o[1]) for o in outs)


def measured(pb: Path, hosts: list[str], inventory: Path, logfile: Path) -> dict:
    cur = parallel(cursor, hosts)
    res = playbook(pb, inventory, logfile)
    res["restarts"], res["active"] = starts(hosts, cur)
    return res


# --------------------------------------------------------------------------- matrix

def cell(kind: str, n: int, k: int, all_hosts: list[str], workdir: Path) -> dict:
    hosts = host_names(n)
    tag = f"{kind}-{n}x{k}"
    log(f"{tag}: wiping {len(all_hosts)} host(s)")
    wipe(all_hosts)
    inv = write_inventory(workdir / "inv" / tag, hosts, k)
    out = {"playbook": kind, "hosts": n, "workers": k}
    for step in ("fresh", "noop", "change"):
        if step == "change":
            write_inventory(workdir / "inv" / tag, hosts, k, change=True)
        if step == "noop":
            repeat = REPEAT if kind == "role" else BASELINE_REPEAT
            runs = [measured(PLAYBOOKS[kind], hosts, inv, workdir / "logs" / f"{tag}-{step}{i}.log") for i in range(repeat)]
            r = dict(sorted(runs, key=lambda x: x["wall"])[len(runs) // 2], walls=[x["wall"] for x in runs],
                     changed=max(x["changed"] for x in runs), restarts=max(x["restarts"] for x in runs))
        else:
            r = measured(PLAYBOOKS[kind], hosts, inv, workdir / "logs" / f"{tag}-{step}.log")
        out[step] = r
        log(f"{tag} {step}: {r['wall']:.1f}s tasks={r.get('tasks')} calls={r.get('calls')} "
            f"changed={r.get('changed')} (re)starts={r['restarts']} active={r['active']}/{n * k}")
        if r["active"] != n * k:
            raise RuntimeError(f"{tag} {step}: {r['active']} of {n * k} workers active")
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


def throughput(all_hosts: list[str], workdir: Path, count: int) -> list[dict]:
    hosts = host_names(2)
    log("throughput: wiping hosts, deploying 2 hosts x (default, other) with the role")
    wipe(all_hosts)
    fleet = [{"name": "default", "queues": ["default"]}, {"name": "other", "queue": "other"}]
    nodes = {"default": [f"default@{h}" for h in hosts], "other": [f"other@{h}" for h in hosts]}
    celery_app = ROOT / "files" / "celery_app.py"
    defaults_dir = workdir / "celery-defaults-app"
    defaults_dir.mkdir(parents=True, exist_ok=True)
    (defaults_dir / "celery_app.py").write_text(celery_app.read_text() + CELERY_DEFAULTS_OVERRIDE)
    rows = []
    for label, app_path in (("role defaults (acks_late, prefetch 1, sent events)", celery_app),
                            ("Celery defaults (acks early, prefetch 4, no sent events)", defaults_dir / "celery_app.py")):
        inv = write_inventory(workdir / "inv" / "throughput", hosts, 0, host_workers=fleet,
                              extra={"celery_workers_app_src": str(app_path)})
        playbook(PLAYBOOKS["role"], inv, workdir / "logs" / f"throughput-{len(rows)}.log")
        measure_throughput(app_path, nodes, 200)  # warm-up: connections, pool processes
        r = measure_throughput(app_path, nodes, count)
        r.update(setting=label, fleet="2 hosts x (default, other), prefork, concurrency 2")
        log(f"throughput {label}: end-to-end {r['tasks_per_s']} tasks/s, drain {r['drain_tasks_per_s']} tasks/s")
        rows.append(r)
    return rows


# --------------------------------------------------------------------------- report

def table(cells: list[dict]) -> str:
    lines = ["| playbook | hosts | workers/host | fresh s | fresh tasks/calls | fresh starts "
             "| no-op s | no-op tasks/calls | no-op changed | no-op restarts "
             "| 1-change s | 1-change tasks/calls | 1-change changed | 1-change restarts |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for c in cells:
        f, n, ch = c["fresh"], c["noop"], c["change"]
        lines.append(f"| {c['playbook']} | {c['hosts']} | {c['workers']} "
                     f"| {f['wall']:.1f} | {f['tasks']}/{f['calls']} | {f['restarts']} "
                     f"| {n['wall']:.1f} | {n['tasks']}/{n['calls']} | {n['changed']} | {n['restarts']} "
                     f"| {ch['wall']:.1f} | {ch['tasks']}/{ch['calls']} | {ch['changed']} | {ch['restarts']} |")
    return "\n".join(lines)


def checks(cells: list[dict]) -> list[str]:
    out = []
    by = {(c["playbook"], c["hosts"], c["workers"]): c for c in cells}
    small, big = by.get(("role", 1, 1)), by.get(("role", 4, 16))
    if small and big:
        ratio = big["noop"]["wall"] / small["noop"]["wall"]
        out.append(f"- role no-op 4x16 / 1x1 = {big['noop']['wall']:.1f}s / {small['noop']['wall']:.1f}s = "
                   f"**{ratio:.2f}** (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")
    for c in cells:
        if c["playbook"] == "role":
            if c["noop"]["changed"] != 0:
                out.append(f"- role {c['hosts']}x{c['workers']}: no-op changed={c['noop']['changed']} (must be 0)")
            if c["change"]["restarts"] != 1:
                out.append(f"- role {c['hosts']}x{c['workers']}: one-worker change restarted {c['change']['restarts']}")
            base = by.get(("baseline", c["hosts"], c["workers"]))
            if base:
                out.append(f"- {c['hosts']}x{c['workers']}: no-op role {c['noop']['wall']:.1f}s vs baseline "
                           f"{base['noop']['wall']:.1f}s ({'role faster' if c['noop']['wall'] < base['noop']['wall'] else 'baseline faster'})")
    if all(c["noop"]["changed"] == 0 and c["change"]["restarts"] == 1 for c in cells if c["playbook"] == "role"):
        out.append("- role: every no-op changed 0; every one-worker change restarted exactly 1 worker")
    return out


def plot(cells: list[dict], path: Path) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    steps = [("fresh", "fresh converge"), ("noop", "no-op re-converge"), ("change", "one-worker change")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (step, title) in zip(axes, steps):
        for kind, style in (("role", "-o"), ("baseline", "--s")):
            for n in sorted({c["hosts"] for c in cells}):
                pts = sorted((c["hosts"] * c["workers"], c[step]["wall"]) for c in cells
                             if c["playbook"] == kind and c["hosts"] == n)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{kind}, {n} host(s)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("workers in the fleet (hosts x workers/host)")
        ax.set_ylabel("wall time (s)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(data: dict) -> str:
    m = data["meta"]
    parts = [f"# Benchmark results\n",
             f"- date: {m['date']}\n- machine: {m['machine']}\n- command: `{m['command']}`\n"
             f"- total runtime: {m['runtime_s'] / 60:.1f} min\n"
             f"- connection: {m.get('connection')}; no-op: median of {m.get('noop_repeats')} runs of the role, "
             f"{m.get('baseline_noop_repeats')} of the baseline\n"
             + (f"- baseline rows: from the earlier run {m['baseline_from']}\n" if m.get("baseline_from") else ""),
             "Wall time in seconds of `ansible-playbook` (from the controller, process start to exit). "
             "tasks = host-task results that ran (a loop counts once, skipped excluded; summed over hosts); "
             "calls = module executions (a loop counts once per item); "
             "changed = the recap's changed summed over hosts; starts/restarts = `Started celery-worker-*` "
             "lines in the hosts' journals during the run.\n",
             table(data["cells"]), ""]
    if data.get("checks"):
        parts += ["", "Targets:", ""] + data["checks"]
    if data.get("throughput"):
        parts += ["", f"Throughput ({THROUGHPUT_TASKS} no-op tasks, half on `default`, half on `other`, "
                  "sent from the controller, timed until the workers' `inspect stats` count them all):", "",
                  "| settings | fleet | end-to-end s | end-to-end tasks/s | (publishing s) | drain s | drain tasks/s |",
                  "|---|---|--:|--:|--:|--:|--:|"]
        for r in data["throughput"]:
            parts.append(f"| {r['setting']} | {r['fleet']} | {r['seconds']} | {r['tasks_per_s']} | {r['publish_seconds']} "
                         f"| {r['drain_seconds']} | {r['drain_tasks_per_s']} |")
        parts += ["", "end-to-end: the controller publishes while the workers consume (publisher and workers share "
                  "the machine's CPUs); drain: the tasks are queued first, then the workers start consuming "
                  "(`cancel_consumer` / `add_consumer`). The worker units keep the role's `-E` in both rows."]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the celery_workers role against the classic recipe.")
    parser.add_argument("--quick", action="store_true", help="1,2 hosts x 1,4 workers (default: 1,2,4 x 1,4,16)")
    parser.add_argument("--hosts", default=None, help="comma-separated host counts, e.g. 1,4")
    parser.add_argument("--workers", default=None, help="comma-separated workers per host, e.g. 1,16")
    parser.add_argument("--playbooks", default="role,baseline", help="role,baseline (default both)")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput measurement")
    parser.add_argument("--throughput-only", action="store_true", help="only the throughput measurement")
    parser.add_argument("--keep", action="store_true", help="keep the bench-* containers at the end")
    parser.add_argument("--connection", default="podman_pipelined", choices=["podman_pipelined", "containers.podman.podman"],
                        help="Ansible connection to the hosts (default: the stock podman plugin plus pipelining, "
                             "bench/connection_plugins/; containers.podman.podman: the stock plugin, no pipelining)")
    parser.add_argument("--baseline-from", default=None, metavar="RESULTS_JSON",
                        help="with --playbooks role: take the baseline cells from an earlier run's results.json "
                             "(bench/baseline.yml unchanged since) for the table, the plot and the checks")
    parser.add_argument("--repeat", type=int, default=3, help="no-op re-converges per role cell, median shown (default 3)")
    parser.add_argument("--baseline-repeat", type=int, default=1, help="no-op re-converges per baseline cell (default 1)")
    args = parser.parse_args()
    global CONNECTION, REPEAT, BASELINE_REPEAT  # pylint: disable=global-statement
    CONNECTION, REPEAT, BASELINE_REPEAT = args.connection, max(1, args.repeat), max(1, args.baseline_repeat)

    hosts = [1, 2] if args.quick else [1, 2, 4]
    workers = [1, 4] if args.quick else [1, 4, 16]
    if args.hosts:
        hosts = [int(x) for x in args.hosts.split(",")]
    if args.workers:
        workers = [int(x) for x in args.workers.split(",")]
    kinds = args.playbooks.split(",")
    do_matrix = not args.throughput_only
    do_tp = not args.no_throughput

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = RESULTS / stamp
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    latest = RESULTS / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(stamp)
    log(f"results in {workdir}")

    all_hosts = host_names(max(hosts + ([2] if do_tp else [])))
    data = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{platform.node()}: {os.cpu_count()} CPUs, "
                                f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                                f"{platform.platform()}, podman {run(['podman', '--version']).stdout.split()[-1]}",
                     "command": "bench/run " + " ".join(sys.argv[1:]),
                     "connection": args.connection, "noop_repeats": REPEAT, "baseline_noop_repeats": BASELINE_REPEAT},
            "cells": [], "throughput": []}
    if args.baseline_from:
        earlier = json.loads(Path(args.baseline_from).read_text())
        data["meta"]["baseline_from"] = f"{args.baseline_from} ({earlier['meta']['date']}, `{earlier['meta']['command']}`)"
        data["meta"]["baseline_noop_repeats"] = earlier["meta"].get("baseline_noop_repeats")
        kinds = [k for k in kinds if k != "baseline"]
    try:
        ensure_wheelhouse()
        setup_broker(workdir)
        log(f"starting {len(all_hosts)} host(s)")
        start_containers(all_hosts)
        if do_matrix:
            for kind in kinds:
                for n in hosts:
                    for k in workers:
                        data["cells"].append(cell(kind, n, k, all_hosts, workdir))
                        (workdir / "results.json").write_text(json.dumps(data, indent=1))
        if do_tp:
            data["throughput"] = throughput(all_hosts, workdir, THROUGHPUT_TASKS)
    finally:
        data["meta"]["runtime_s"] = round(time.monotonic() - T0, 1)
        if args.baseline_from:
            data["cells"] += [c for c in earlier["cells"] if c["playbook"] == "baseline"
                              and c["hosts"] in hosts and c["workers"] in workers]
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

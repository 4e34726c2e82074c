"""playbooks/plan.yml: the fleet's plan, printed without changing anything.

The playbook runs against an inventory of local hosts (ansible_connection:
local, no become) that sizes workers relative to the CPUs, composes a host's
list from a fleet-wide one with overrides, and has one host whose plan does
not fit (reported, not refused) and one whose configuration is refused. The
expected numbers are worked out here from os.sched_getaffinity and
/proc/meminfo, what the role reads with nproc and MemTotal.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import yaml

from preflight_harness import ANSIBLE_PLAYBOOK, LOCAL, ROOT, ansible_env, filters, results_by_host

F = filters()
FLEET = [
    {"name": "default", "queues": ["default"], "concurrency": {"per_cpu": 2, "min": 2, "max": 16}},
    {"name": "other", "queue": "other", "concurrency": 1},
    {"name": "reports", "queues": ["reports"], "autoscale": {"max": {"per_cpu": 1, "max": 8}, "min": 1}},
]
INVENTORY = {"all": {
    "vars": {**LOCAL, "celery_workers_broker_url": "amqp://u:p@mq/v", "celery_workers": FLEET,
             "celery_workers_required_queues": ["default", "other", "reports"]},
    "children": {"celery_workers": {"hosts": {
        "small": {"celery_workers_overrides": {"reports": {"present": False}}},
        "big": {"celery_workers_overrides": {"default": {"concurrency": 12}}, "celery_workers_process_memory_mb": 10**6},
        "broken": {"celery_workers_overrides": {"defualt": {"concurrency": 3}}},
    }}}}}


def _run(tmp_path):
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(INVENTORY, sort_keys=False))
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), str(ROOT / "playbooks" / "plan.yml")],
                          cwd=tmp_path, env={**ansible_env(), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
                          capture_output=True, text=True, timeout=300, check=False)
    data = json.loads(proc.stdout)
    return proc, data, {host: dict(tasks) for host, tasks in results_by_host(data).items()}


def test_the_plan_of_a_fleet(tmp_path):
    proc, data, results = _run(tmp_path)
    cpus = len(os.sched_getaffinity(0))
    memory = int(next(line.split()[1] for line in pathlib.Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))) // 1024
    default = min(max(2 * cpus, 2), 16)
    reports = min(cpus, 8)
    lines = results["localhost"]["Show the plan"]["msg"]
    rows = [line.split() for line in lines]
    assert rows[0] == ["HOST", "CPUS", "MEM_MB", "WORKER", "QUEUES", "POOL", "SIZE", "PROCS", "NEED_MB", "FREE_MB", "FIT"]
    host = [str(cpus), str(memory)]
    small_procs = default + 1 + 2
    big_procs = 13 + 2 + reports + 1
    assert rows[1:9] == [
        ["small", *host, "default", "default", "prefork", str(default), str(default + 1)],
        ["small", *host, "other", "other", "prefork", "1", "2"],
        ["small", *host, "(total)", str(small_procs), str(small_procs * 128), str(memory - 512), "yes"],
        ["big", *host, "default", "default", "prefork", "12", "13"],
        ["big", *host, "other", "other", "prefork", "1", "2"],
        ["big", *host, "reports", "reports", "prefork", f"1..{reports}", str(reports + 1)],
        ["big", *host, "(total)", str(big_procs), str(big_procs * 10**6), str(memory - 512), "NO"],
        ["broken", "-", "-", "(no", "plan:", "preflight", "failed", "or", "did", "not", "run)"],
    ]
    assert rows[9] == []
    assert rows[10:] == [["QUEUE", "HOSTS", "TOTAL_SIZE"], ["default", "small,big", str(default + 12)],
                         ["other", "small,big", "2"], ["reports", "big", f"1..{reports}"]]
    # big does not fit: the plan says so, in a warning, instead of stopping.
    assert results["big"]["celery_fleet.celery.celery_workers : Warn that the workers may not fit in the host's memory"]["msg"].startswith(
        f"WARNING: big: the workers may not fit in memory: {big_procs} processes x 1000000 MB")
    # broken is refused by the same preflight as site.yml, naming the override.
    assert "celery_workers_overrides.defualt: no worker named 'defualt'" in results["broken"]["celery_fleet.celery.celery_workers : Assert the configuration is valid"]["msg"]
    # Nothing changed anywhere.
    assert all(stats["changed"] == 0 for stats in data["stats"].values()), data["stats"]
    assert data["stats"]["broken"]["failures"] == 1 and proc.returncode == 2


# --- inventory/production: the heterogeneous fleet of the README's sizing section

PRODUCTION = ROOT / "inventory" / "production"
# The hosts as hosts.yml describes them: CPUs (nproc) and MemTotal in MB.
PRODUCTION_HOSTS = {"worker-small.example.org": (2, 3915), "worker-a.example.org": (8, 32092), "worker-b.example.org": (16, 64263)}


def production_plan_lines() -> list[str]:
    """The plan of inventory/production as playbooks/plan.yml would print it on hosts of these sizes."""
    defaults = yaml.safe_load((ROOT / "roles" / "celery_workers" / "defaults" / "main.yml").read_text())
    fleet = {**defaults, **yaml.safe_load((PRODUCTION / "group_vars" / "celery_workers.yml").read_text())}
    hostvars = {}
    for host, (cpus, memory) in PRODUCTION_HOSTS.items():
        path = PRODUCTION / "host_vars" / f"{host}.yml"
        variables = {**fleet, **(yaml.safe_load(path.read_text()) if path.exists() else {})}
        workers = F["celery_fleet_workers"](variables["celery_workers"], variables["celery_workers_overrides"], cpus)
        plan = F["celery_fleet_host_plan"](workers, cpus, memory, {
            "pool": variables["celery_workers_pool"], "concurrency": variables["celery_workers_concurrency"],
            "process_memory_mb": variables["celery_workers_process_memory_mb"],
            "memory_reserve_mb": variables["celery_workers_memory_reserve_mb"]})
        hostvars[host] = {**variables, "__celery_workers_plan": plan}
    return hostvars, F["celery_fleet_plan_table"](list(PRODUCTION_HOSTS), hostvars)


def test_production_inventory_lists_the_hosts_of_the_plan():
    hosts = yaml.safe_load((PRODUCTION / "hosts.yml").read_text())["all"]["children"]["celery_workers"]["hosts"]
    assert list(hosts) == list(PRODUCTION_HOSTS)


def test_production_fleet_fits_and_covers_every_required_queue():
    hostvars, lines = production_plan_lines()
    assert all(v["__celery_workers_plan"]["fits"] and not v["__celery_workers_plan"]["errors"] for v in hostvars.values()), lines
    required = hostvars["worker-a.example.org"]["celery_workers_required_queues"]
    consumers = F["celery_fleet_consumers"](hostvars, list(hostvars), [])
    assert set(required) <= set(consumers), consumers
    # The small host left reports out; the others still consume it.
    assert consumers["reports"] == ["worker-a.example.org", "worker-b.example.org"]


def test_readme_shows_the_production_plan():
    _, lines = production_plan_lines()
    readme = (ROOT / "README.md").read_text()
    assert "\n".join(line.rstrip() for line in lines) in readme, "\n".join(lines)


def test_inventories_require_the_queues_the_app_routes_to():
    """celery_workers_required_queues of the project's inventories = the queues files/celery_app.py declares."""
    app = (ROOT / "files" / "celery_app.py").read_text()
    declared = ["default"] + sorted(set(__import__("re").findall(r'_queue\("([a-z_]+)"\)', app)))
    assert declared == ["default", "other", "reports"], declared
    for path in [ROOT / "inventory" / "lab" / "group_vars" / "all.yml", PRODUCTION / "group_vars" / "celery_workers.yml"]:
        assert yaml.safe_load(path.read_text())["celery_workers_required_queues"] == declared, path

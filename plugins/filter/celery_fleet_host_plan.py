# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: celery_fleet_host_plan
short_description: What a host's Celery workers need, and whether they fit in its memory
version_added: 1.0.0
author: celery-fleet maintainers
description:
  - >-
    For each worker of the host (sizes already resolved by C(celery_fleet.celery.celery_fleet_workers)):
    its queues, pool, size (C(min)..C(max) with autoscale) and processes. A prefork worker is its
    main process plus one per pool slot (autoscale C(max)); the other pools run in one process.
  - >-
    The memory fit: processes x C(process_memory_mb) against MemTotal minus C(memory_reserve_mb).
  - >-
    The role's preflight asserts the fit; the health gate expects each worker's queues and size from
    these rows; C(playbooks/plan.yml) prints them.
options:
  _input:
    description: The host's resolved workers.
    type: list
    elements: dict
    required: true
  cpus:
    description: The host's CPU count.
    type: int
    required: true
  memory_mb:
    description: The host's MemTotal in MB.
    type: int
    required: true
  defaults:
    description: The role's C(pool), C(concurrency), C(process_memory_mb) and C(memory_reserve_mb) settings.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Work out the plan
  ansible.builtin.set_fact:
    plan: "{{ workers | celery_fleet.celery.celery_fleet_host_plan(4, 7900, defaults) }}"
  vars:
    workers: [{name: default, queues: [default], concurrency: 8}]
    defaults: {pool: prefork, concurrency: 2, process_memory_mb: 128, memory_reserve_mb: 512}
# plan.workers: [{name: default, queues: [default], pool: prefork, min: 8, max: 8, size: "8", processes: 9}]
# plan.need_mb: 1152, plan.available_mb: 7388, plan.fits: true
"""

RETURN = r"""
_value:
  description: The plan of the host.
  type: dict
  contains:
    cpus: {description: The CPU count., type: int}
    memory_mb: {description: MemTotal in MB., type: int}
    workers:
      description: One row per worker (name, queues, pool, min, max, size, processes).
      type: list
      elements: dict
    processes: {description: All the workers' processes., type: int}
    process_memory_mb: {description: The estimate of one process., type: int}
    need_mb: {description: processes x process_memory_mb., type: int}
    available_mb: {description: MemTotal minus the reserve., type: int}
    fits: {description: need_mb <= available_mb., type: bool}
    errors: {description: Autoscale bounds that cross once resolved on this host., type: list, elements: str}
    message: {description: The numbers in words, for a warning or a failure., type: str}
"""

from ansible_collections.celery_fleet.celery.plugins.plugin_utils._rules import text
from ansible_collections.celery_fleet.celery.plugins.plugin_utils._workers import queues_of


def celery_fleet_host_plan(workers, cpus, memory_mb, defaults):
    """What a host's resolved workers need."""
    rows, errors = [], []
    for w in workers:
        pool = w.get("pool", defaults["pool"])
        if "autoscale" in w:
            low, high = w["autoscale"]["min"], w["autoscale"]["max"]
            if low > high:
                errors.append(f"celery_workers worker '{w['name']}': autoscale max resolves to {high}, below min {low}, on {cpus} CPUs")
        else:
            low = high = int(text(w.get("concurrency", defaults["concurrency"])))
        processes = high + 1 if pool == "prefork" else 1
        rows.append({"name": w["name"], "queues": queues_of(w), "pool": pool,
                     "min": low, "max": high, "size": f"{low}..{high}" if "autoscale" in w else str(high), "processes": processes})
    total = sum(row["processes"] for row in rows)
    per_process = int(text(defaults["process_memory_mb"]))
    need = total * per_process
    available = int(memory_mb) - int(text(defaults["memory_reserve_mb"]))
    biggest = max(rows, key=lambda row: row["processes"], default=None)
    return {"cpus": int(cpus), "memory_mb": int(memory_mb), "workers": rows, "processes": total,
            "process_memory_mb": per_process, "need_mb": need, "available_mb": available, "fits": need <= available, "errors": errors,
            "message": (f"{total} processes x {per_process} MB = {need} MB, but MemTotal {memory_mb} MB - "
                        f"reserve {defaults['memory_reserve_mb']} MB leaves {available} MB"
                        + (f"; biggest worker '{biggest['name']}': {biggest['processes']} processes ({biggest['pool']} {biggest['size']})"
                           if biggest else ""))}


class FilterModule:
    """celery_fleet_host_plan."""

    def filters(self):
        return {"celery_fleet_host_plan": celery_fleet_host_plan}

# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: celery_fleet_plan_table
short_description: The fleet's plan as lines of text
version_added: 1.0.0
author: celery-fleet maintainers
description:
  - Used by C(playbooks/plan.yml). Per host, a row per worker (queues, pool, resolved size,
    processes) and a total row with the memory fit, from the plan each host's preflight worked out
    (the fact C(__celery_workers_plan), see C(celery_fleet.celery.celery_fleet_host_plan)); then per
    queue the hosts and the total pool size consuming it.
  - A host without a plan (its preflight failed or did not run) is listed as such.
options:
  _input:
    description: The hosts, in the order to print them.
    type: list
    elements: str
    required: true
  hostvars:
    description: C(hostvars).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Show the plan
  ansible.builtin.debug:
    msg: "{{ groups['celery_workers'] | celery_fleet.celery.celery_fleet_plan_table(hostvars) }}"
"""

RETURN = r"""
_value:
  description: The lines of two aligned tables (HOST ... FIT, then QUEUE HOSTS TOTAL_SIZE), an empty line between them.
  type: list
  elements: str
"""


def _table(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def celery_fleet_plan_table(hosts, hostvars):
    """Lines of the plan: per host and worker, then per queue."""
    rows = [["HOST", "CPUS", "MEM_MB", "WORKER", "QUEUES", "POOL", "SIZE", "PROCS", "NEED_MB", "FREE_MB", "FIT"]]
    queues = {}
    for host in hosts:
        plan = hostvars[host]["__celery_workers_plan"] if "__celery_workers_plan" in hostvars[host] else None
        if plan is None:
            rows.append([host, "-", "-", "(no plan: preflight failed or did not run)"] + [""] * 7)
            continue
        for row in plan["workers"]:
            rows.append([host, plan["cpus"], plan["memory_mb"], row["name"], ",".join(row["queues"]), row["pool"], row["size"],
                         row["processes"], "", "", ""])
            for queue in row["queues"]:
                entry = queues.setdefault(queue, {"hosts": [], "min": 0, "max": 0})
                if host not in entry["hosts"]:
                    entry["hosts"].append(host)
                entry["min"] += row["min"]
                entry["max"] += row["max"]
        rows.append([host, plan["cpus"], plan["memory_mb"], "(total)", "", "", "", plan["processes"], plan["need_mb"],
                     plan["available_mb"], "yes" if plan["fits"] else "NO"])
    queue_rows = [["QUEUE", "HOSTS", "TOTAL_SIZE"]]
    for queue, entry in sorted(queues.items()):
        total = str(entry["max"]) if entry["min"] == entry["max"] else f"{entry['min']}..{entry['max']}"
        queue_rows.append([queue, ",".join(entry["hosts"]), total])
    return _table(rows) + [""] + _table(queue_rows)


class FilterModule:
    """celery_fleet_plan_table."""

    def filters(self):
        return {"celery_fleet_plan_table": celery_fleet_plan_table}

# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: celery_fleet_consumers
short_description: Which hosts of a fleet consume each queue
version_added: 1.0.0
author: celery-fleet maintainers
description:
  - >-
    For C(celery_workers_required_queues): over the given hosts, each host's workers
    (C(celery_workers) with C(celery_workers_overrides) applied, from its inventory variables; the
    role's default list for a host without C(celery_workers)) and the queues they consume.
  - >-
    Entries that are not valid are skipped; their own host's preflight reports them.
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  hosts:
    description: The fleet's hosts (the group C(celery_workers_fleet_group), whatever C(--limit) says).
    type: list
    elements: str
    required: true
  default_workers:
    description: The role's default C(celery_workers), for a host that does not set it.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: The hosts of each queue
  ansible.builtin.debug:
    msg: "{{ hostvars | celery_fleet.celery.celery_fleet_consumers(groups['celery_workers'], []) }}"
# msg: {default: [worker-a, worker-b], reports: [worker-b]}
"""

RETURN = r"""
_value:
  description: Queue name to the sorted list of hosts with a worker consuming it, queues sorted.
  type: dict
"""

from ansible_collections.celery_fleet.celery.plugins.plugin_utils._rules import is_list, is_map
from ansible_collections.celery_fleet.celery.plugins.plugin_utils._workers import compose


def celery_fleet_consumers(hostvars, hosts, default_workers):
    """Queue -> sorted hosts with a worker consuming it."""
    consumers = {}
    for host in hosts:
        variables = hostvars[host]
        workers = variables["celery_workers"] if "celery_workers" in variables else default_workers
        overrides = variables["celery_workers_overrides"] if "celery_workers_overrides" in variables else {}
        for _index, w, _overridden in compose(workers, overrides if is_map(overrides) else {}):
            queues = (w.get("queues") if "queues" in w else [w.get("queue")]) if is_map(w) else []
            for queue in queues if is_list(queues) else []:
                if isinstance(queue, str):
                    consumers.setdefault(queue, set()).add(host)
    return {queue: sorted(found) for queue, found in sorted(consumers.items())}


class FilterModule:
    """celery_fleet_consumers."""

    def filters(self):
        return {"celery_fleet_consumers": celery_fleet_consumers}

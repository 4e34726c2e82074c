# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: celery_fleet_workers
short_description: A host's Celery workers, per-host overrides applied and sizes resolved
version_added: 1.0.0
author: celery-fleet maintainers
description:
  - >-
    C(celery_workers) with C(celery_workers_overrides) applied: the fields an override gives replace
    the entry's (C(concurrency) replaces C(autoscale) and the other way round), C(present=false)
    leaves the worker out.
  - >-
    Given the host's CPU count, C(concurrency) and C(autoscale)'s C(max) and C(min) become numbers; a
    relative size C({per_cpu, min, max}) is per_cpu x CPUs rounded down, at least C(min) (default 1),
    at most C(max).
  - >-
    Expects input that preflight has accepted.
extends_documentation_fragment:
  - celery_fleet.celery.workers
options:
  cpus:
    description: The host's CPU count (C(nproc)); V(None) leaves the sizes as they are.
    type: int
"""

EXAMPLES = r"""
- name: The host's workers
  ansible.builtin.debug:
    msg: "{{ celery_workers | celery_fleet.celery.celery_fleet_workers(celery_workers_overrides, 8) }}"
  vars:
    celery_workers:
      - {name: default, queues: [default], concurrency: {per_cpu: 2, max: 12}}
      - {name: reports, queue: reports, concurrency: 2}
    celery_workers_overrides:
      reports: {present: false}
# msg: [{name: default, queues: [default], concurrency: 12}]
"""

RETURN = r"""
_value:
  description: The host's worker entries, in the order of C(celery_workers).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.celery_fleet.celery.plugins.plugin_utils._workers import compose, resolve


def celery_fleet_workers(workers, overrides, cpus=None):
    """The host's workers, overrides applied; with cpus, sizes resolved to numbers."""
    out = []
    for _index, entry, _overridden in compose(workers, overrides):
        worker = dict(entry)
        try:
            if cpus is not None and "concurrency" in worker:
                worker["concurrency"] = resolve(worker["concurrency"], int(cpus))
            if cpus is not None and "autoscale" in worker:
                worker["autoscale"] = {bound: resolve(worker["autoscale"][bound], int(cpus)) for bound in ("max", "min")}
        except (KeyError, TypeError, ValueError) as exc:
            raise AnsibleFilterError(f"celery_fleet_workers: worker '{worker.get('name')}' has a size preflight should have refused: {exc}") from exc
        out.append(worker)
    return out


class FilterModule:
    """celery_fleet_workers."""

    def filters(self):
        return {"celery_fleet_workers": celery_fleet_workers}

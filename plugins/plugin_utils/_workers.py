# Copyright (c) celery-fleet maintainers
# MIT License

# Note that this plugin util is PRIVATE to the collection celery_fleet.celery.

"""A host's workers: celery_workers with celery_workers_overrides applied, and
pool sizes relative to the host's CPUs. Shared by the filters that compose,
size, plan and check the workers."""

from __future__ import annotations

from ansible_collections.celery_fleet.celery.plugins.plugin_utils._rules import is_list, is_map, show, text

# A pool size relative to the host's CPUs: {per_cpu: N, min: A, max: B}.
SIZE_KEYS = ["per_cpu", "min", "max"]


def compose(workers, overrides):
    """(index in celery_workers, entry, overridden) for each worker of the host, overrides applied
    (a worker with present: false left out). An override's concurrency replaces the entry's
    autoscale and the other way round. Entries or overrides that are not mappings pass through
    unchanged: preflight reports them."""
    out = []
    for i, w in enumerate(workers if is_list(workers) else []):
        fields = overrides.get(w.get("name")) if is_map(w) and is_map(overrides) else None
        if not is_map(fields):
            out.append((i, w, False))
        elif fields.get("present", True) is not False:
            merged = dict(w)
            for size, other in (("concurrency", "autoscale"), ("autoscale", "concurrency")):
                if size in fields:
                    merged.pop(other, None)
            merged.update({k: v for k, v in fields.items() if k != "present"})
            out.append((i, merged, True))
    return out


def label(index, entry, overridden):
    """How messages name an entry: celery_workers[1] (name 'w'[, with celery_workers_overrides])."""
    name = entry.get("name", "") if is_map(entry) else ""
    return f"celery_workers[{index}] (name '{show(name)}'{', with celery_workers_overrides' if overridden else ''})"


def queues_of(entry):
    return list(entry["queues"]) if "queues" in entry else [entry["queue"]]


def resolve(value, cpus):
    """A valid size as a number: a relative one is per_cpu x cpus rounded down, then kept within min (default 1) and max."""
    if not is_map(value):
        return int(text(value))
    size = max(int(float(text(value["per_cpu"])) * cpus), int(text(value.get("min", 1))))
    return min(size, int(text(value["max"]))) if "max" in value else size

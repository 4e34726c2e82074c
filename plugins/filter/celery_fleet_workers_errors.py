# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: celery_fleet_workers_errors
short_description: The celery_workers role's configuration errors that its argument spec cannot find
version_added: 1.0.0
author: celery-fleet maintainers
description:
  - Checks the variables of the C(celery_fleet.celery.celery_workers) role against the rules its
    C(meta/argument_specs.yml) cannot state; the spec itself (types, choices, required and
    mutually exclusive fields, unknown keys) is checked by Ansible before the role's first task.
  - "The rules: the shape of names, queues, paths, URLs, environment keys and PEM files; positive
    numbers; C(soft_time_limit) below C(time_limit); autoscale bounds; relative sizes; arguments the
    role sets itself (C(extra_args)); unit directives the role locks (C(celery_workers_unit_extra));
    one beat per play; C(celery_workers_overrides) naming listed workers; required queues consumed
    somewhere in the fleet."
  - Each message names the variable, and for a worker its index, its name and the field. No message
    shows a secret (broker URLs, environment values, keys).
  - The role's preflight (C(tasks/preflight.yml)) runs it on the controller; a role included with
    C(rolespec_validate=false) is not supported.
options:
  _input:
    description: The role's variables, name to value (every C(celery_workers_*) variable).
    type: dict
    required: true
  beat_hosts:
    description: The hosts of the play with C(celery_workers_beat_enabled) true (all of them, whatever its serial).
    type: list
    elements: str
    required: true
  consumers:
    description:
      - Queue to the hosts of the fleet consuming it (the filter C(celery_fleet.celery.celery_fleet_consumers)),
        for C(celery_workers_required_queues); V(None) skips that rule.
    type: dict
  options:
    description:
      - >-
        The options of the role's argument spec (C(argument_specs.main.options) of its
        C(meta/argument_specs.yml)). Ansible's check of a list option accepts a string (it splits it
        at its commas to check it) but the role gets the string; with them, every option and entry
        field the spec types as list must be a list. V(None) skips that rule.
    type: dict
"""

EXAMPLES = r"""
- name: Collect the errors (empty when the configuration is valid)
  ansible.builtin.set_fact:
    errors: "{{ dict(names | zip(query('ansible.builtin.vars', *names))) | celery_fleet.celery.celery_fleet_workers_errors([]) }}"
  vars:
    names: "{{ query('ansible.builtin.varnames', '^celery_workers(_.*)?$') }}"
# errors:
#   - "celery_workers[1] (name 'w'): field soft_time_limit must be lower than time_limit"
"""

RETURN = r"""
_value:
  description: One message per problem, in the order of the variables; empty when the configuration is valid.
  type: list
  elements: str
"""

import os
import re

from ansible_collections.celery_fleet.celery.plugins.plugin_utils import _rules as r
from ansible_collections.celery_fleet.celery.plugins.plugin_utils._systemd import LOCKED_DIRECTIVES
from ansible_collections.celery_fleet.celery.plugins.plugin_utils._workers import SIZE_KEYS, compose, label

MODULE_RE = r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_.]*)?\Z"
# Entry fields that are numbers of at least 1 (the spec types them as int).
ENTRY_INT_FIELDS = ["max_tasks_per_child", "max_memory_per_child", "prefetch_multiplier", "time_limit", "soft_time_limit"]
# pip options the role sets itself (index, wheelhouse, requirements file, constraints).
RESERVED_PIP_RE = r"^(-[icrf]|--(index-url|no-index|find-links|requirement|constraint)(=|\Z))"
# A requirement on celery in a requirements file (celery, celery==5.7.0, celery[redis]>=5 ...).
CELERY_REQUIREMENT_RE = r"(?im)^\s*celery\s*(\[[^]]*\])?\s*(\Z|[=<>!~;\s\\])"
# Worker options the role sets itself (or that would start a second beat): use the entry's fields.
# A short option may follow -E (the only short flag without a value) in one word: -Ec5.
RESERVED_ARGS_RE = r"^(-E*[nQcPlABDX]|--(hostname|queues|exclude-queues|concurrency|autoscale|pool|loglevel|app|beat|detach|uid|gid)(=|\Z))"


def _unit_extra(errors, lines):
    for i, line in enumerate(lines):
        at = f"celery_workers_unit_extra[{i}]"
        directive = r.text(line).split("=")[0]
        if r.has(r.CTRL, line) or not r.matches("^[A-Z][A-Za-z]+=", line):
            errors.append(f"{at}: '{r.show(line)}' must be one 'Directive=value' line")
        elif directive in LOCKED_DIRECTIVES:
            errors.append(f"{at}: {directive}= is set by the role (user, command or hardening) and cannot be changed here")
        elif r.matches("^Exec[A-Za-z]*=[-@:+!]*[+!]", line):
            errors.append(f"{at}: {directive}= with a '+' or '!' prefix would run as root")
        elif r.has(r.CREDS_RE, line):
            errors.append(f"{at}: holds a URL with credentials; unit files are world-readable, use celery_workers_environment")


def _queue_names(errors, at, queues):
    for queue in queues:
        if not r.matches(r.QUEUE_RE, queue):
            errors.append(f"{at}: '{r.show(queue)}' is not a safe queue name ([A-Za-z0-9_][A-Za-z0-9_.:@-], no commas, spaces or newlines)")
    # As Ansible's `unique` filter compares them: as strings, case-insensitively.
    if len({r.text(queue).lower() for queue in queues}) != len(queues):
        errors.append(f"{at} lists a queue twice")


def _size(errors, at, value):
    """A pool size: a positive integer, or {per_cpu: N, min: A, max: B} (relative to the host's CPUs)."""
    if not r.is_map(value):
        if not r.positive_int(value):
            errors.append(f"{at} must be a positive integer or {{per_cpu: N, min: A, max: B}}, got '{r.show(value)}'")
        return
    for key in value:
        if key not in SIZE_KEYS:
            errors.append(f"{at}: unknown key '{r.show(key)}' (known: {', '.join(SIZE_KEYS)})")
    per_cpu = r.text(value.get("per_cpu"))
    if not re.match(r"^[0-9]+(\.[0-9]+)?\Z", per_cpu) or isinstance(value.get("per_cpu"), bool) or float(per_cpu) <= 0:
        errors.append(f"{at}: per_cpu must be a positive number (pool processes per CPU), got '{r.show(value.get('per_cpu'))}'")
    for key in ("min", "max"):
        if key in value and not r.positive_int(value[key]):
            errors.append(f"{at}: {key} must be a positive integer, got '{r.show(value[key])}'")
    if all(r.positive_int(value.get(key)) for key in ("min", "max")) and int(r.text(value["min"])) > int(r.text(value["max"])):
        errors.append(f"{at}: min ({value['min']}) must be <= max ({value['max']})")


def _worker(errors, at, w):
    """One entry, overrides applied: what the spec cannot say of it."""
    queues = w["queues"] if "queues" in w else [w.get("queue")]
    if not r.is_list(queues) or len(queues) == 0:
        errors.append(f"{at}: field queues must be a non-empty list of queue names")
    else:
        _queue_names(errors, f"{at}: field queues", queues)
    for field in ENTRY_INT_FIELDS:
        if field in w and not r.positive_int(w[field]):
            errors.append(f"{at}: field {field} must be a positive integer, got '{r.show(w[field])}'")
    if "concurrency" in w:
        _size(errors, f"{at}: field concurrency", w["concurrency"])
    # Compared as numbers, not strings: "100" < "60".
    limits = [w.get("soft_time_limit"), w.get("time_limit")]
    if all(r.positive_int(limit) for limit in limits) and int(r.text(limits[0])) >= int(r.text(limits[1])):
        errors.append(f"{at}: field soft_time_limit must be lower than time_limit")
    scale = w.get("autoscale")
    if r.is_map(scale) and "max" in scale and "min" in scale:
        _size(errors, f"{at}: field autoscale max", scale["max"])
        _size(errors, f"{at}: field autoscale min", scale["min"])
        if r.positive_int(scale["max"]) and r.positive_int(scale["min"]) and int(r.text(scale["max"])) < int(r.text(scale["min"])):
            errors.append(f"{at}: field autoscale max ({scale['max']}) must be >= min ({scale['min']})")
    if "env" in w:
        r.env(errors, f"{at}: field env", w["env"])
    r.arguments(errors, f"{at}: field extra_args", w.get("extra_args"), RESERVED_ARGS_RE, "use env",
                "use the entry's fields (name, queues, concurrency, autoscale, pool, loglevel)")


def _pip_sources(errors, v):
    """Where the application and its packages come from (pip's index, a wheelhouse, a requirements file)."""
    requirements, wheelhouse, index = v["celery_workers_requirements_src"], v["celery_workers_wheelhouse_src"], v["celery_workers_pip_index_url"]
    if requirements:
        if not os.path.isabs(requirements) or not os.path.isfile(requirements):
            errors.append(f"celery_workers_requirements_src: '{r.show(requirements)}' must be the absolute path of a file on the controller")
        else:
            with open(requirements, encoding="utf-8", errors="replace") as handle:
                if not re.search(CELERY_REQUIREMENT_RE, handle.read()):
                    errors.append(f"celery_workers_requirements_src: {requirements} does not list celery: add "
                                  f"celery=={r.show(v['celery_workers_celery_version'])} (celery_workers_celery_version), with its hash if the file has hashes")
    if wheelhouse and (not os.path.isabs(wheelhouse) or not os.path.isdir(wheelhouse)):
        errors.append(f"celery_workers_wheelhouse_src: '{r.show(wheelhouse)}' must be the absolute path of a directory of wheels on the controller")
    if index and (r.has(r.CTRL, index) or not r.matches(r"^https?://[^/\s]+", index)):
        errors.append("celery_workers_pip_index_url: must be an http:// or https:// URL without newlines, e.g. https://user:password@pypi.example.org/simple/")
    r.arguments(errors, "celery_workers_pip_extra_args", v["celery_workers_pip_extra_args"], RESERVED_PIP_RE,
                "use celery_workers_pip_index_url", "use celery_workers_pip_index_url, celery_workers_wheelhouse_src or celery_workers_requirements_src")
    if not v["celery_workers_app_src"] and not (v["celery_workers_pip_packages"] or requirements):
        errors.append(f"celery_workers_app_src: is empty, so the application ({r.show(v['celery_workers_app_module'])}) must come from pip: "
                      "list its package in celery_workers_pip_packages or celery_workers_requirements_src")


def _overrides(errors, overrides, workers):
    names = [w.get("name") for w in workers if r.is_map(w)]
    for name, fields in overrides.items():
        at = f"celery_workers_overrides.{r.show(name)}"
        if name not in names:
            errors.append(f"{at}: no worker named '{r.show(name)}' in celery_workers (names: {', '.join(map(r.show, names)) or 'none'})")
        elif not r.is_map(fields):
            errors.append(f"{at}: must be a mapping of fields to change (or present: false), got {r.type_name(fields)}")
        elif "name" in fields:
            errors.append(f"{at}: field 'name' cannot be overridden")
        elif "present" in fields and not isinstance(fields["present"], bool):
            errors.append(f"{at}: field present must be true or false, got '{r.show(fields['present'])}'")


def _workers(errors, workers, overrides):
    if not r.is_list(workers):
        errors.append(f"celery_workers: must be a list of workers ([] for none), got {r.type_name(workers)}")
        return
    _overrides(errors, overrides, workers)
    seen = []
    for i, w, overridden in compose(workers, overrides):
        at = label(i, w, overridden)
        if not r.is_map(w):
            errors.append(f"celery_workers[{i}]: must be a mapping with at least name and queues, got {r.type_name(w)}")
            continue
        name = w.get("name", "")
        if not r.matches(r.NAME_RE, name):
            errors.append(f"{at}: field name must match [A-Za-z0-9][A-Za-z0-9_-]{{0,62}} (letters, digits, - and _; no /, .., spaces, %, @ or newlines)")
        elif name.lower() in seen:
            errors.append(f"{at}: field name is a duplicate (compared case-insensitively): worker names must be unique on a host")
        seen.append(r.text(name).lower())
        _worker(errors, at, w)


def celery_fleet_workers_errors(variables, beat_hosts, consumers=None, options=None):
    """Every error of the celery_workers role's variables that its argument spec cannot find."""
    v = variables
    errors = []
    if options:
        r.lists(errors, v, options)
        if r.is_list(v["celery_workers"]):
            for i, w, overridden in compose(v["celery_workers"], v["celery_workers_overrides"] or {}):
                if r.is_map(w):
                    r.lists(errors, w, options["celery_workers"]["options"], f"{label(i, w, overridden)}: field ")
        if errors:
            return errors
    r.broker_url(errors, "celery_workers_broker_url", v["celery_workers_broker_url"])
    r.broker_tls(errors, "celery_workers_broker_tls", v["celery_workers_broker_tls"], v["celery_workers_broker_url"])
    if r.has(r.CTRL, v["celery_workers_result_backend"]):
        errors.append("celery_workers_result_backend: must not contain newlines or control characters")
    r.accounts(errors, v, "celery_workers", "workers")
    r.paths(errors, v, "celery_workers", "/opt/celery")
    if not r.matches(MODULE_RE, v["celery_workers_app_module"]):
        errors.append(f"celery_workers_app_module: '{r.show(v['celery_workers_app_module'])}' is not a Python module[:attribute] name")
    r.releases(errors, v, ["celery_workers_celery_version"], "5.7.0")
    r.pip_packages(errors, "celery_workers_pip_packages", v["celery_workers_pip_packages"], "celery_workers_pip_index_url")
    _pip_sources(errors, v)
    r.env(errors, "celery_workers_pip_environment", v["celery_workers_pip_environment"], pip=True)
    r.env(errors, "celery_workers_environment", v["celery_workers_environment"])
    _unit_extra(errors, v["celery_workers_unit_extra"] or [])
    r.integers(errors, v, ["celery_workers_stop_timeout", "celery_workers_restart_sec", "celery_workers_health_timeout",
                           "celery_workers_concurrency", "celery_workers_process_memory_mb"])
    r.integers(errors, v, ["celery_workers_memory_reserve_mb"], zero=True)
    # Beat: one scheduler per play.
    if r.truthy(v["celery_workers_beat_enabled"]) and len(beat_hosts) > 1:
        errors.append(f"celery_workers_beat_enabled: true on {len(beat_hosts)} hosts of this play ({', '.join(beat_hosts)}): enable beat on one host only")
    _workers(errors, v["celery_workers"], v["celery_workers_overrides"] or {})
    required = v["celery_workers_required_queues"] or []
    _queue_names(errors, "celery_workers_required_queues", required)
    for queue in required if consumers is not None else []:
        if not consumers.get(queue):
            errors.append(f"celery_workers_required_queues: queue '{r.show(queue)}' has no consumer on any host of the fleet "
                          f"(group {r.show(v['celery_workers_fleet_group'])}); tasks routed there would wait forever: add it to a worker's queues")
    return errors


class FilterModule:
    """celery_fleet_workers_errors."""

    def filters(self):
        return {"celery_fleet_workers_errors": celery_fleet_workers_errors}

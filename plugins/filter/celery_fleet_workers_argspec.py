# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: celery_fleet_workers_argspec
short_description: A host's workers, overrides applied, ready for ansible.builtin.validate_argument_spec
version_added: 2.0.0
author: celery-fleet maintainers
description:
  - >-
    Ansible checks C(celery_workers) against the role's argument spec before the role starts, but
    not the fields C(celery_workers_overrides) puts into an entry. This gives each entry of the host
    (overrides applied) as an argument of its own, named after the entry
    (C(celery_workers[1] (name 'w', with celery_workers_overrides))), with the spec of an entry
    taken from the role's C(meta/argument_specs.yml): C(ansible.builtin.validate_argument_spec) then
    reports a bad field with the entry, the worker and the field in its message.
extends_documentation_fragment:
  - celery_fleet.celery.workers
options:
  list_spec:
    description: The spec of the option C(celery_workers) (type list, elements dict, its options and rules).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Check the host's workers against the argument spec
  ansible.builtin.validate_argument_spec:
    argument_spec: "{{ checked.argument_spec }}"
    provided_arguments: "{{ checked.provided_arguments }}"
  vars:
    spec: "{{ (lookup('ansible.builtin.file', role_path ~ '/meta/argument_specs.yml') | from_yaml).argument_specs.main.options }}"
    checked: "{{ celery_workers | celery_fleet.celery.celery_fleet_workers_argspec(celery_workers_overrides, spec.celery_workers) }}"
"""

RETURN = r"""
_value:
  description: The two arguments of C(ansible.builtin.validate_argument_spec).
  type: dict
  contains:
    argument_spec: {description: Entry label to the spec of one entry (a dict)., type: dict}
    provided_arguments: {description: Entry label to the entry., type: dict}
"""

from ansible_collections.celery_fleet.celery.plugins.plugin_utils._workers import compose, label


def celery_fleet_workers_argspec(workers, overrides, list_spec):
    """Each composed entry as an argument of its own, with the spec of one entry."""
    entry_spec = {key: value for key, value in list_spec.items() if key not in ("type", "elements", "description")}
    entry_spec["type"] = "dict"
    entries = {label(i, entry, overridden): entry for i, entry, overridden in compose(workers, overrides or {})}
    return {"argument_spec": dict.fromkeys(entries, entry_spec), "provided_arguments": entries}


class FilterModule:
    """celery_fleet_workers_argspec."""

    def filters(self):
        return {"celery_fleet_workers_argspec": celery_fleet_workers_argspec}

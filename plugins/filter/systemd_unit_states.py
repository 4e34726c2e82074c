# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: systemd_unit_states
short_description: Read the output of systemctl show for several units
version_added: 2.0.0
author: celery-fleet maintainers
description:
  - C(systemctl show --property=Id,ActiveState,UnitFileState -- UNIT...) prints one block of
    C(Key=Value) lines per unit, the blocks separated by an empty line. This gives them as a
    mapping from each unit's C(Id) to its properties, so that one command reads the state of all of
    a host's worker units.
options:
  _input:
    description: The command's standard output.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Read the state of the workers' units
  ansible.builtin.command:
    argv: [systemctl, show, '--property=Id,ActiveState,UnitFileState', --, celery-worker@default.service]
  register: shown
  changed_when: false

- name: Show it
  ansible.builtin.debug:
    msg: "{{ shown.stdout | celery_fleet.celery.systemd_unit_states }}"
# msg: {celery-worker@default.service: {Id: celery-worker@default.service, ActiveState: active, UnitFileState: enabled}}
"""

RETURN = r"""
_value:
  description: Unit Id to its properties (property name to value, as printed).
  type: dict
"""

from ansible.errors import AnsibleFilterError


def systemd_unit_states(stdout):
    """Unit Id -> {property: value} from `systemctl show` output."""
    states = {}
    for block in stdout.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props:
            if "Id" not in props:
                raise AnsibleFilterError(f"systemd_unit_states: a block without Id=: {block[:200]!r}")
            states[props["Id"]] = props
    return states


class FilterModule:
    """systemd_unit_states."""

    def filters(self):
        return {"systemd_unit_states": systemd_unit_states}

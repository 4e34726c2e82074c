# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: systemd_unit_hardening
short_description: The sandboxing directives of every unit of the celery_fleet roles
version_added: 1.0.0
author: celery-fleet maintainers
description:
  - The C([Service]) lines every unit of C(celery_workers) and C(celery_flower) carries
    (C(NoNewPrivileges=yes), C(ProtectSystem=strict), C(CapabilityBoundingSet=), ...), one per line,
    with C(ReadWritePaths=) the one writable path right after C(ProtectSystem=).
  - The same list is what C(celery_workers_unit_extra) may not change.
options:
  _input:
    description: The one writable path; V("") for none.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: The sandbox of a unit that writes only /var/lib/celery
  ansible.builtin.debug:
    msg: "{{ '/var/lib/celery' | celery_fleet.celery.systemd_unit_hardening }}"
"""

RETURN = r"""
_value:
  description: The directives, one per line.
  type: str
"""

from ansible_collections.celery_fleet.celery.plugins.plugin_utils._systemd import hardening_lines


def systemd_unit_hardening(rw_path):
    """The shared sandboxing lines."""
    return "\n".join(hardening_lines(rw_path))


class FilterModule:
    """systemd_unit_hardening."""

    def filters(self):
        return {"systemd_unit_hardening": systemd_unit_hardening}

#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Enable and start a set of units with one systemctl call each (the celery_workers role's workers)."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: celery_workers_services
short_description: Enable and start many units at once
description:
  - Reads the state of all the units with one C(systemctl show), then enables
    the ones that are not enabled with one C(systemctl enable) and starts the
    ones that are not active with one C(systemctl start) (one transaction:
    systemd starts them side by side). Replaces a loop of systemd_service
    tasks, which costs several round trips to the host per unit.
options:
  units: {description: Units to enable and start., type: list, elements: str, required: true}
"""

RETURN = r"""
enabled: {description: units this call enabled, type: list}
started: {description: units that were not active and this call started, type: list}
"""


def show(module, systemctl, units):
    rc, out, err = module.run_command([systemctl, "show", "--property=Id,LoadState,ActiveState,UnitFileState", "--"] + units)
    if rc != 0:
        module.fail_json(msg="systemctl show failed: %s" % err.strip())
    states = {}
    for block in out.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            states[props["Id"]] = props
    return states


def main():
    module = AnsibleModule(
        argument_spec={"units": {"type": "list", "elements": "str", "required": True}},
        supports_check_mode=True,
    )
    units = module.params["units"]
    if not units:
        module.exit_json(changed=False, enabled=[], started=[])
    systemctl = module.get_bin_path("systemctl", required=True)
    states = show(module, systemctl, units)
    missing = [u for u in units if states.get(u, {}).get("LoadState") != "loaded"]
    if missing and not module.check_mode:
        module.fail_json(msg="Could not find the requested service(s): %s" % ", ".join(missing))
    to_enable = [u for u in units if states.get(u, {}).get("UnitFileState") not in ("enabled", "enabled-runtime", "static", "alias")]
    to_start = [u for u in units if states.get(u, {}).get("ActiveState") not in ("active", "reloading")]
    if not module.check_mode:
        if to_enable:
            rc, _out, err = module.run_command([systemctl, "enable", "--"] + to_enable)
            if rc != 0:
                module.fail_json(msg="systemctl enable failed: %s" % err.strip(), enabled=[], started=[])
        if to_start:
            rc, _out, err = module.run_command([systemctl, "start", "--"] + to_start)
            if rc != 0:
                module.fail_json(msg="systemctl start failed: %s" % err.strip(), enabled=to_enable, started=to_start)
    module.exit_json(changed=bool(to_enable or to_start), enabled=to_enable, started=to_start)


if __name__ == "__main__":
    main()

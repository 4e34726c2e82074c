"""Run the project's playbook against the scenario's hosts from a test.

The inventory is the scenario's own (its group_vars and host_vars), with the
hosts molecule created; a test may add variables for one host. Used by
test_preflight_on_host.py and test_security.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import testinfra

from conftest import INVENTORY, PROJECT

ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"
SITE = PROJECT / "playbooks" / "site.yml"
HOSTS = {"broker": ["mol-broker"], "celery_workers": ["mol-worker1", "mol-worker2"]}


def podman_host(name: str):
    return testinfra.get_host(f"podman://{name}")


def run_site(args: list[str], host_vars: dict[str, dict] | None = None, json_output: bool = False,
             timeout: int = 900) -> subprocess.CompletedProcess:
    """ansible-playbook playbooks/site.yml with the scenario inventory.

    host_vars: extra variables per host, written to the inventory (above
    host_vars/, below extra vars). json_output: the ansible.posix.json
    callback instead of the default one.
    """
    with tempfile.TemporaryDirectory(prefix="celery-inv-") as tmp:
        inv = pathlib.Path(tmp)
        shutil.copytree(INVENTORY / "group_vars", inv / "group_vars")
        shutil.copytree(INVENTORY / "host_vars", inv / "host_vars")
        hosts = {group: {"hosts": {h: {} for h in members}} for group, members in HOSTS.items()}
        (inv / "hosts.json").write_text(json.dumps({"all": {"children": hosts}}))
        for host, variables in (host_vars or {}).items():
            # A second file in host_vars/<host>/ would be merged; a file that
            # replaces the host's own keeps the scenario's data and adds these.
            own = inv / "host_vars" / f"{host}.yml"
            base = own.read_text() if own.exists() else "---\n"
            own.unlink(missing_ok=True)
            (inv / "host_vars" / host).mkdir()
            (inv / "host_vars" / host / "00-scenario.yml").write_text(base)
            (inv / "host_vars" / host / "10-test.json").write_text(json.dumps(variables))
        env = {
            **os.environ,
            "MOLECULE_PROJECT_DIRECTORY": str(PROJECT),
            "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
        }
        if json_output:
            env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
        return subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inv / "hosts.json"), str(SITE), *args],
                              cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def results_by_host(stdout: str) -> dict[str, list[tuple[str, dict]]]:
    """(task name, result) of each host, in order, from ansible.posix.json output."""
    data = json.loads(stdout)
    out: dict[str, list[tuple[str, dict]]] = {}
    for play in data["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                out.setdefault(host, []).append((task["task"]["name"], result))
    return out

"""Shared by test_preflight.py and test_flower_preflight.py: run a role's
preflight on many inventory hosts at once and check how each one ended.

Each case is one inventory host (`ansible_connection: local`) in one of four
groups: `spec`/`good_spec` apply the role through `roles:` (argument spec,
then tasks/preflight.yml), `pre`/`good_pre` through `include_role` with
`rolespec_validate: false` (preflight alone). The run is in check mode and
limited to the role's `<role>_preflight` tag, so even a case that passed by
mistake installs nothing on the machine running the tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A PEM-shaped file on the controller for the *_src cases of the TLS options:
# preflight checks the PEM block, not the certificate inside; no certificate
# is committed.
PEM_FILE = pathlib.Path(tempfile.mkdtemp(prefix="celery-preflight-")) / "ca.pem"
PEM_FILE.write_text("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n")
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
FILTERS = ROOT / "plugins" / "filter" / "celery_fleet.py"


def celery_fleet():
    """The roles' filter plugin (validation rules, systemd quoting and hardening) as a Python module."""
    spec = importlib.util.spec_from_file_location("celery_fleet", FILTERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ansible_env() -> dict[str, str]:
    """Environment of an ansible-playbook run against this repository's roles."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_FORKS": "25",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }


def results_by_host(data: dict) -> dict[str, list[tuple[str, dict]]]:
    """(task name, result) of each host, in order, from the ansible.posix.json callback's output."""
    by_host: dict[str, list[tuple[str, dict]]] = {}
    for play in data["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                by_host.setdefault(host, []).append((task["task"]["name"], result))
    return by_host


def task_is(name: str, prefix: str) -> bool:
    """Ansible may suffix a task name (" - item ...")."""
    return name == prefix or name.startswith(prefix + " - ")


def failures(results):
    return [(name, result) for name, result in results if result.get("failed")]


class RolePreflight:
    """The preflight of one role: its task names, the playbook, the run and the checks."""

    def __init__(self, role: str, lookup_tasks: list[str], root_task: str, host_tasks: tuple[str, ...] | list[str] = ()):
        self.role = role
        self.spec_task = f"{role} : Validating arguments against arg spec 'main'"
        self.collect_task = f"{role} : Collect configuration errors"
        self.assert_task = f"{role} : Assert the configuration is valid"
        self.include_task = f"ansible.builtin.include_role : {role}"
        # Everything preflight runs, in order: the controller-side checks, then
        # the read-only look at the host.
        self.preflight_tasks = [self.collect_task, self.assert_task,
                                *(f"{role} : {task}" for task in lookup_tasks), f"{role} : {root_task}",
                                *(f"{role} : {task}" for task in host_tasks)]

    @staticmethod
    def inventory(bad: dict[str, dict], good: dict[str, dict]) -> dict:
        """bad/good: case host suffix -> its variables; each runs in both modes."""
        groups: dict[str, dict] = {"spec": {}, "pre": {}, "good_spec": {}, "good_pre": {}}
        for mode in ("spec", "pre"):
            for suffix, variables in bad.items():
                groups[mode][f"{mode}__{suffix}"] = {**LOCAL, **variables}
            for suffix, variables in good.items():
                groups[f"good_{mode}"][f"good_{mode}__{suffix}"] = {**LOCAL, **variables}
        return {"all": {"children": {group: {"hosts": hosts} for group, hosts in groups.items()}}}

    def playbook(self) -> list[dict]:
        return [
            {"name": "Through roles: (argument spec, then preflight)", "hosts": "spec:good_spec", "gather_facts": False,
             "roles": [{"role": self.role}]},
            {"name": "Through include_role without the argument spec (preflight alone)", "hosts": "pre:good_pre",
             "gather_facts": False,
             "tasks": [{"ansible.builtin.include_role": {"name": self.role, "rolespec_validate": False},
                        "tags": [f"{self.role}_preflight"]}]},
        ]

    def run(self, work: pathlib.Path, inventory: dict) -> dict:
        """One ansible-playbook run over every case; results grouped by host."""
        (work / "inventory.json").write_text(json.dumps(inventory))
        (work / "playbook.yml").write_text(yaml.safe_dump(self.playbook(), sort_keys=False))
        start = time.monotonic()
        proc = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", str(work / "inventory.json"), str(work / "playbook.yml"),
             "--check", "--tags", f"{self.role}_preflight"],
            cwd=work, env={**ansible_env(), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
            capture_output=True, text=True, timeout=600, check=False)
        hosts = sum(len(g["hosts"]) for g in inventory["all"]["children"].values())
        print(f"{self.role}: ansible-playbook ran {hosts} case hosts in {time.monotonic() - start:.1f}s, rc={proc.returncode}")
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"no JSON from ansible-playbook (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr, "stats": data["stats"],
                "by_host": results_by_host(data)}

    def assert_refused(self, run: dict, host: str, mode: str, expect: list[str], spec: list[str] | None,
                       task: str | None = None) -> None:
        """The host failed once, in the argument spec (mode spec, when it can tell) or in
        preflight's assert (or the given preflight task), with every expected fragment in a
        one-line message; nothing changed and no task past the one that refused it ran."""
        results = run["by_host"].get(host)
        assert results, f"{host} ran no task"
        assert run["stats"][host]["failures"] == 1, run["stats"][host]
        assert run["stats"][host]["changed"] == 0
        assert not any(result.get("changed") for _, result in results)
        failed = failures(results)
        assert len(failed) == 1, failed
        failed_task, result = failed[0]
        msg = result.get("msg", "")
        refuser = f"{self.role} : {task}" if task else self.assert_task
        if mode == "spec" and spec is not None:
            assert task_is(failed_task, self.spec_task), f"expected the argument spec to refuse it, failed in {failed_task}: {msg}"
            fragments = spec
        else:
            assert failed_task == refuser, f"expected {refuser} to refuse it, failed in {failed_task}: {msg}"
            fragments = expect
            assert "\n" not in msg, f"preflight message spans lines: {msg!r}"
        for fragment in fragments:
            assert fragment in msg, f"{fragment!r} not in {msg!r}"
        # Nothing past the task that refused it ran (for the configuration assert:
        # not even the read-only look at the host).
        allowed = {self.include_task, *self.preflight_tasks[:self.preflight_tasks.index(refuser) + 1]}
        ran = [name for name, result in results if not result.get("skipped")]
        assert all(task_is(name, self.spec_task) or name in allowed for name in ran), ran

    def assert_passed(self, run: dict, host: str, mode: str) -> str:
        """The host ran all of preflight and nothing else; returns the assert's message."""
        results = run["by_host"].get(host)
        assert results, f"{host} ran no task"
        assert not failures(results), failures(results)
        assert run["stats"][host]["failures"] == 0 and run["stats"][host]["unreachable"] == 0
        ran = [name for name, result in results
               if not task_is(name, self.spec_task) and name != self.include_task and not result.get("skipped")]
        assert ran == self.preflight_tasks  # the tag filter held
        assert any(task_is(name, self.spec_task) for name, _ in results) == (mode == "spec")
        return dict(results)[self.assert_task]["msg"]

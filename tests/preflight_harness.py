"""Shared by the tests: the paths, the collection's Python code, and the run of
a role's preflight on many inventory hosts at once (test_preflight.py,
test_flower_preflight.py).

Each preflight case is one inventory host (`ansible_connection: local`),
bad ones in group `bad`, good ones in group `good`, and every host gets the
role the way a playbook applies it (`roles:`): Ansible checks the argument
spec of meta/argument_specs.yml, then tasks/preflight.yml runs. (A role
included with `rolespec_validate: false` is not supported, so each bad input
runs once.) The run is in check mode and limited to the role's
`<role>_preflight` tag, so even a case that passed by mistake installs
nothing on the machine running the tests.

The collection's plugins import each other as
`ansible_collections.celery_fleet.celery.plugins...`: `collections/` goes
first on sys.path, where `collections/ansible_collections/celery_fleet/celery`
links back to the checkout (`ansible_collections` is a namespace package: the
copy the `ansible` package installs in site-packages merges with it).
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT / "collections") not in sys.path:
    sys.path.insert(0, str(ROOT / "collections"))
COLLECTION = "ansible_collections.celery_fleet.celery"
FILTER_DIR = ROOT / "plugins" / "filter"
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}

# A PEM-shaped file on the controller for the *_src cases of the TLS options
# (preflight checks the PEM block, not the certificate inside; no certificate
# is committed). Cases name it through an inventory variable, as inventories
# name theirs ("{{ inventory_dir }}/files/broker-ca.pem"); each run writes the
# file into its own pytest directory (write_pem) and sets the variable.
PEM_VAR = "celery_test_pem_file"
PEM_SRC = "{{ " + PEM_VAR + " }}"
PEM_TEXT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def write_pem(directory: pathlib.Path) -> pathlib.Path:
    path = directory / "ca.pem"
    path.write_text(PEM_TEXT)
    return path


def plugin_util(name: str):
    """A module of plugins/plugin_utils, imported as the filters import it."""
    return importlib.import_module(f"{COLLECTION}.plugins.plugin_utils.{name}")


def filter_module(name: str):
    """plugins/filter/NAME.py, imported by its collection name."""
    return importlib.import_module(f"{COLLECTION}.plugins.filter.{name}")


def filters() -> dict:
    """Every filter of the collection, name -> function, as Ansible loads them (FilterModule.filters())."""
    out = {}
    for path in sorted(FILTER_DIR.glob("*.py")):
        found = filter_module(path.stem).FilterModule().filters()
        assert not set(found) & set(out), f"{path.name} defines a filter another file defines"
        out.update(found)
    return out


def spec_options(role: str, entry_point: str = "main") -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"][entry_point]["options"]


def role_defaults(role: str) -> dict:
    """defaults/main.yml of the role, with a default taken from another role's variable
    (`{{ celery_workers_x | default(...) }}`, templated when used) as that role's default gives it."""
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    for name, value in defaults.items():
        match = re.fullmatch(r"\{\{ (celery_workers_\w+) \| default\(.*\) \}\}", value) if isinstance(value, str) else None
        if match:
            defaults[name] = role_defaults("celery_workers")[match.group(1)]
    return defaults


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
    """Ansible may suffix a task name (" - item ...", " - <the spec's short_description>")."""
    return name == prefix or name.startswith(prefix + " - ")


def failures(results):
    return [(name, result) for name, result in results if result.get("failed")]


class RolePreflight:
    """The preflight of one role: its task names in order, the playbook, the run and the checks."""

    def __init__(self, role: str, tasks: list[str], optional: tuple[str, ...] = (), spec_checks: tuple[str, ...] = ()):
        """tasks: the names of tasks/preflight.yml in order; optional: those a good case may skip (their when);
        spec_checks: those that are ansible.builtin.validate_argument_spec (Ansible's messages, not the role's)."""
        self.role = role
        # Ansible's own check of meta/argument_specs.yml, before the role's first task.
        self.spec_task = f"{role} : Validating arguments against arg spec 'main'"
        self.collect_task = f"{role} : Collect configuration errors"
        self.assert_task = f"{role} : Assert the configuration is valid"
        # Everything preflight runs, in order (tasks: the names in tasks/preflight.yml).
        self.preflight_tasks = [f"{role} : {task}" for task in tasks]
        self.optional_tasks = [f"{role} : {task}" for task in optional]
        # Tasks whose messages are Ansible's argument spec messages (several lines), not the role's own.
        self.spec_tasks = [self.spec_task, *(f"{role} : {task}" for task in spec_checks)]
        assert self.collect_task in self.preflight_tasks and self.assert_task in self.preflight_tasks
        assert set(self.optional_tasks) | set(self.spec_tasks[1:]) <= set(self.preflight_tasks)
        names = [task["name"] for task in yaml.safe_load((ROOT / "roles" / role / "tasks" / "preflight.yml").read_text())]
        assert names == list(tasks), f"roles/{role}/tasks/preflight.yml runs {names}"

    def task(self, name: str) -> str:
        """The full name of a task of preflight (or of the argument spec's task)."""
        full = f"{self.role} : {name}"
        assert full == self.spec_task or full in self.preflight_tasks, full
        return full

    @staticmethod
    def inventory(bad: dict[str, dict], good: dict[str, dict]) -> dict:
        """bad/good: case host name -> its variables."""
        return {"all": {"children": {
            "bad": {"hosts": {f"bad__{name}": {**LOCAL, **variables} for name, variables in bad.items()}},
            "good": {"hosts": {f"good__{name}": {**LOCAL, **variables} for name, variables in good.items()}},
        }}}

    def playbook(self) -> list[dict]:
        return [{"name": "The role as a playbook applies it (argument spec, then preflight)", "hosts": "all",
                 "gather_facts": False, "roles": [{"role": self.role}]}]

    def run(self, work: pathlib.Path, inventory: dict) -> dict:
        """One ansible-playbook run over every case; results grouped by host."""
        inventory = {"all": {**inventory["all"], "vars": {**inventory["all"].get("vars", {}), PEM_VAR: str(write_pem(work))}}}
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

    def assert_refused(self, run: dict, host: str, refuser: str, fragments: list[str]) -> None:
        """The host failed once, in the task refuser (a full task name, the spec's task a prefix),
        with every fragment in its message; nothing changed and no task after it ran."""
        results = run["by_host"].get(host)
        assert results, f"{host} ran no task"
        assert run["stats"][host]["failures"] == 1, run["stats"][host]
        assert run["stats"][host]["changed"] == 0
        assert not any(result.get("changed") for _, result in results)
        failed = failures(results)
        assert len(failed) == 1, failed
        failed_task, result = failed[0]
        msg = result.get("msg", "")
        assert task_is(failed_task, refuser), f"expected {refuser} to refuse it, failed in {failed_task}: {msg}"
        if not any(task_is(refuser, task) for task in self.spec_tasks):
            # The role's own messages: one line, one message per problem joined with "; ".
            assert "\n" not in msg, f"preflight message spans lines: {msg!r}"
        for fragment in fragments:
            assert fragment in msg, f"{fragment!r} not in {msg!r}"
        # Nothing past the task that refused it ran (for the configuration assert:
        # not even the read-only look at the host).
        order = [self.spec_task, *self.preflight_tasks]
        position = next(i for i, task in enumerate(order) if task_is(refuser, task))
        ran = [name for name, result in results if not result.get("skipped")]
        assert all(any(task_is(name, task) for task in order[:position + 1]) for name in ran), ran

    def assert_passed(self, run: dict, host: str) -> str:
        """The host passed the argument spec and ran all of preflight and nothing else; returns the assert's message."""
        results = run["by_host"].get(host)
        assert results, f"{host} ran no task"
        assert not failures(results), failures(results)
        assert run["stats"][host]["failures"] == 0 and run["stats"][host]["unreachable"] == 0
        assert run["stats"][host]["changed"] == 0
        assert task_is(results[0][0], self.spec_task), results[0][0]
        ran = [name for name, result in results[1:] if not result.get("skipped")]
        # The tag filter held; a task skipped by its when (the memory warning) is not in ran.
        assert ran == [task for task in self.preflight_tasks if task in ran], ran
        assert set(self.preflight_tasks) - set(ran) <= set(self.optional_tasks), set(self.preflight_tasks) - set(ran)
        return dict(results)[self.assert_task]["msg"]

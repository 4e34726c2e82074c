"""meta/argument_specs.yml is the one statement of each role's options.

* defaults/main.yml and the README's table of options are generated from it
  by scripts/role-docs: `scripts/role-docs --check` finds nothing to change;
* the spec is a real Ansible argument spec: every option has a type and a
  description, and the defaults pass it (Ansible's own validator) with
  values of the very type the role gets (role variables are not converted);
* the worker entry's fields the templates, tasks and filters use are those
  of the spec, and the secrets are marked no_log.
"""

import re
import subprocess
import sys

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from preflight_harness import FILTER_DIR, ROOT, role_defaults

ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))
WORKERS = ROOT / "roles" / "celery_workers"


def _load(path):
    return yaml.safe_load(path.read_text()) or {}


def _entry_points(role):
    return _load(role / "meta" / "argument_specs.yml")["argument_specs"]


def _spec(role):
    return _entry_points(role)["main"]["options"]


def _defaults(role):
    return role_defaults(role.name)


def test_roles_found():
    # An empty ROLES would turn every parametrized test below into a skip.
    assert WORKERS in ROLES and len(ROLES) >= 2


def test_role_docs_are_generated_from_the_specs():
    """defaults/main.yml and the README tables say what the specs say (scripts/role-docs writes them)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "role-docs"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"scripts/role-docs --check: {proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_public_names_carry_the_role_prefix(role):
    for entry_point in _entry_points(role).values():
        for name in entry_point.get("options", {}):
            assert name == role.name or name.startswith(role.name + "_"), name


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_option_has_a_type_and_description(role):
    def walk(options, where):
        for name, opt in options.items():
            assert "type" in opt, f"{where}{name} has no type"
            assert opt.get("description"), f"{where}{name} has no description"
            if opt.get("type") == "list" and "options" in opt:
                assert opt.get("elements") == "dict", f"{where}{name}"
            if opt.get("type") == "list":
                assert "elements" in opt, f"{where}{name}: a list needs elements"
            walk(opt.get("options", {}), f"{where}{name}.")

    for entry_point, spec in _entry_points(role).items():
        assert spec.get("short_description"), entry_point
        walk(spec.get("options", {}), f"{entry_point}: ")


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_defaults_values_match_the_spec_types(role):
    """The role gets the defaults as they are (role variables are not converted): each of the spec's very type."""
    spec = _spec(role)
    types = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict, "path": str}
    for name, value in _defaults(role).items():
        expected = types[spec[name]["type"]]
        assert isinstance(value, expected), f"{name}: {value!r} is not {spec[name]['type']}"
        # bool is an int to Python, not to the role.
        assert expected is bool or not isinstance(value, bool), f"{name}: {value!r} is a bool, not {spec[name]['type']}"
        if "choices" in spec[name]:
            assert value in spec[name]["choices"], name


def _validate(role, variables):
    result = ArgumentSpecValidator(_spec(role)).validate(variables)
    return [str(e) for e in result.errors]


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_defaults_pass_the_spec(role):
    defaults = _defaults(role)
    # Required options may be empty in defaults (preflight asks for them); give them a value.
    for name, opt in _spec(role).items():
        if opt.get("required") and not defaults.get(name):
            defaults[name] = "/x" if opt["type"] == "path" else "amqp://u:p@h/v"
    assert _validate(role, defaults) == []


def test_the_validator_sees_the_nested_worker_options():
    # Unknown key, wrong type and both queue and queues in one entry: the spec refuses each.
    for entry, fragment in [
        ({"name": "w", "queues": ["q"], "colour": "red"}, "colour"),
        ({"name": "w", "queues": ["q"], "max_tasks_per_child": "four"}, "max_tasks_per_child"),
        ({"name": "w", "queues": ["q"], "queue": "q"}, "mutually exclusive"),
        ({"name": "w"}, "one of the following is required"),
        ({"name": "w", "queues": ["q"], "autoscale": {"max": 2}}, "min"),
        ({"name": "w", "queues": ["q"], "pool": "forking"}, "pool"),
    ]:
        errors = _validate(WORKERS, {"celery_workers": [entry], "celery_workers_broker_url": "amqp://h"})
        assert any(fragment in e for e in errors), (entry, errors)


def _entry_options():
    return _spec(WORKERS)["celery_workers"]["options"]


def test_templates_tasks_and_filters_use_only_declared_entry_fields():
    """Where a worker entry is read (w, item, entry), only fields the spec declares."""
    used = set()
    jinja = [WORKERS / "templates" / "worker.conf", WORKERS / "templates" / "worker.env.j2",
             WORKERS / "tasks" / "configure.yml", WORKERS / "tasks" / "health.yml"]
    python = [FILTER_DIR / f"{name}.py" for name in ("celery_fleet_workers_errors", "celery_fleet_host_plan", "celery_fleet_consumers")]
    python.append(ROOT / "plugins" / "plugin_utils" / "_workers.py")
    for path in jinja:
        text = path.read_text()
        used |= set(re.findall(r"\b(?:w|item)\.([a-z_]+)\b", text))
        used |= set(re.findall(r"\bselectattr\('([a-z_]+)'", text))
    for path in python:
        text = path.read_text()
        used |= set(re.findall(r"\b(?:w|entry)(?:\.get\(|\[)['\"]([a-z_]+)['\"]", text))
        used |= set(re.findall(r"['\"]([a-z_]+)['\"] in (?:w|entry)\b", text))
    assert {"name", "queues", "queue", "autoscale", "env", "extra_args", "time_limit", "pool"} <= used, "the patterns no longer find the fields"
    assert used <= set(_entry_options()), used - set(_entry_options())


def test_secrets_are_no_log():
    spec = _spec(WORKERS)
    for name in ["celery_workers_broker_url", "celery_workers_broker_tls", "celery_workers_result_backend",
                 "celery_workers_environment", "celery_workers_pip_environment"]:
        assert spec[name].get("no_log") is True, name
    assert _entry_options()["env"].get("no_log") is True
    assert spec["celery_workers_broker_tls"]["options"]["key_content"].get("no_log") is True


def test_loglevel_and_pool_choices_agree():
    """The spec states the same choices in several options."""
    spec = _spec(WORKERS)
    choices = spec["celery_workers_loglevel"]["choices"]
    assert spec["celery_workers_beat_loglevel"]["choices"] == choices
    assert _entry_options()["loglevel"]["choices"] == choices
    assert _entry_options()["pool"]["choices"] == spec["celery_workers_pool"]["choices"]

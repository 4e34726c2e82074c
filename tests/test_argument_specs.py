"""meta/argument_specs.yml and defaults/main.yml describe the same options.

Also: the spec is a real Ansible argument spec (validated here with Ansible's
own validator), the worker entry's fields are the same in the spec, the
comment of defaults/main.yml, the preflight filter (plugins/filter/celery_fleet.py)
and the templates that use them, and the secrets are marked no_log.
"""

import pathlib
import re

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from preflight_harness import FILTERS, celery_fleet

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))
WORKERS = ROOT / "roles" / "celery_workers"


def _load(path):
    return yaml.safe_load(path.read_text()) or {}


def _spec(role):
    return _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def test_roles_found():
    # An empty ROLES would turn every parametrized test below into a skip.
    assert WORKERS in ROLES


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_spec_and_defaults_declare_the_same_options(role):
    spec = _spec(role)
    defaults = _load(role / "defaults" / "main.yml")
    assert sorted(spec) == sorted(defaults)


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_public_names_carry_the_role_prefix(role):
    defaults = _load(role / "defaults" / "main.yml")
    for name in defaults:
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

    walk(_spec(role), "")


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_default_has_a_comment_above_it(role):
    lines = (role / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            assert i > 0 and lines[i - 1].startswith("#"), f"{line.split(':')[0]} has no comment above it"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_defaults_values_match_the_spec_types(role):
    spec = _spec(role)
    defaults = _load(role / "defaults" / "main.yml")
    types = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict, "path": str}
    for name, value in defaults.items():
        expected = types[spec[name]["type"]]
        if isinstance(value, str) and value.startswith("{{") and value.endswith("}}"):
            # A default taken from another role's variable, templated when used.
            continue
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
    defaults = _load(role / "defaults" / "main.yml")
    # Required options may be empty in defaults (preflight asks for them); give them a value.
    for name, opt in _spec(role).items():
        value = defaults.get(name)
        if opt["type"] != "str" and isinstance(value, str) and value.startswith("{{"):
            del defaults[name]  # templated when used (see test_defaults_values_match_the_spec_types)
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


def test_entry_fields_documented_in_defaults():
    text = (WORKERS / "defaults" / "main.yml").read_text()
    block = text.split("# Keys of an entry", 1)[1].split("# A full example", 1)[0]
    documented = re.findall(r"^#   ([a-z_]+):", block, re.M)
    assert sorted(documented) == sorted(_entry_options())


def test_entry_fields_known_to_preflight():
    assert sorted(celery_fleet().ENTRY_KEYS) == sorted(_entry_options())


def test_templates_use_only_declared_entry_fields():
    used = set()
    for path in [WORKERS / "templates/celery-worker.service.j2", WORKERS / "templates/worker.env.j2", FILTERS,
                 WORKERS / "tasks/health.yml", WORKERS / "tasks/configure.yml"]:
        text = path.read_text()
        used |= set(re.findall(r"(?:\bw|\bitem|__celery_workers_w)\.([a-z_]+)", text))
        used |= set(re.findall(r"\bw\[['\"]([a-z_]+)['\"]\]", text))
    assert used, "no entry field found: the pattern is broken"
    assert used - {"items", "get"} <= set(_entry_options()), used - set(_entry_options())


def test_secrets_are_no_log():
    spec = _spec(WORKERS)
    for name in ["celery_workers_broker_url", "celery_workers_result_backend", "celery_workers_environment", "celery_workers_pip_environment"]:
        assert spec[name].get("no_log") is True, name
    assert _entry_options()["env"].get("no_log") is True


def test_loglevel_choices_agree():
    spec = _spec(WORKERS)
    choices = spec["celery_workers_loglevel"]["choices"]
    assert spec["celery_workers_beat_loglevel"]["choices"] == choices
    assert _entry_options()["loglevel"]["choices"] == choices
    assert _entry_options()["pool"]["choices"] == spec["celery_workers_pool"]["choices"]

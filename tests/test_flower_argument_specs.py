"""celery_flower: argument spec, defaults, templates and inventories agree.

The checks every role gets (defaults and README generated from
meta/argument_specs.yml, types, the defaults pass the spec) are in
test_argument_specs.py, which is parametrised over roles/*; these are the
ones of this role: secrets are no_log, the defaults that reuse
celery_workers_* settings fall back to that role's own defaults, every
celery_flower_* name the role or an inventory uses is declared.
"""

import pathlib
import re

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from preflight_harness import FILTER_DIR

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles" / "celery_flower"
WORKERS = ROOT / "roles" / "celery_workers"


def _load(path):
    return yaml.safe_load(path.read_text()) or {}


SPEC = _load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
DEFAULTS = _load(ROLE / "defaults" / "main.yml")
WORKERS_DEFAULTS = _load(WORKERS / "defaults" / "main.yml")


def test_secrets_are_no_log():
    for name in ["celery_flower_basic_auth", "celery_flower_broker_url", "celery_flower_broker_api",
                 "celery_flower_environment", "celery_flower_pip_environment"]:
        assert SPEC[name].get("no_log") is True, name
    assert SPEC["celery_flower_basic_auth"]["options"]["password"].get("no_log") is True


@pytest.mark.parametrize(("name", "workers_name"), [
    ("celery_flower_celery_version", "celery_workers_celery_version"),
    ("celery_flower_user", "celery_workers_user"),
    ("celery_flower_group", "celery_workers_group"),
    ("celery_flower_broker_url", "celery_workers_broker_url"),
    ("celery_flower_broker_tls", "celery_workers_broker_tls"),
])
def test_defaults_reuse_the_workers_settings_and_fall_back_to_their_defaults(name, workers_name):
    # Flower runs in a play of its own: the celery_workers role's defaults are not visible there,
    # only the inventory's celery_workers_* values; without them, the same value as that role's default.
    match = re.fullmatch(r"\{\{ (\w+) \| default\((.*)\) \}\}", DEFAULTS[name])
    assert match, DEFAULTS[name]
    assert match.group(1) == workers_name
    assert yaml.safe_load(match.group(2)) == WORKERS_DEFAULTS[workers_name]


def test_flower_version_is_pinned_like_the_controller():
    # requirements-dev.txt installs the same Flower on the controller (celery inspect, tests).
    reqs = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert f"flower=={DEFAULTS['celery_flower_version']}" in reqs
    assert f"celery=={WORKERS_DEFAULTS['celery_workers_celery_version']}" in reqs


def _used_names(paths):
    used = set()
    for path in paths:
        used |= set(re.findall(r"\b(?<!__)(celery_flower_[a-z0-9_]+)", path.read_text()))
    return used


def test_role_uses_only_declared_variables():
    files = [p for d in ("tasks", "templates", "handlers", "vars") for p in (ROLE / d).glob("*") if p.is_file()]
    files.append(FILTER_DIR / "celery_fleet_flower_errors.py")  # the preflight rules
    tags = {f"celery_flower_{t}" for t in ("preflight", "install", "configure", "service")}
    used = _used_names(files) - tags
    assert used, "no variable found: the pattern is broken"
    assert used <= set(SPEC), used - set(SPEC)
    # ... and every declared variable is used somewhere.
    assert set(SPEC) <= used, set(SPEC) - used


@pytest.mark.parametrize("path", ["inventory/lab/group_vars/celery_flower.yml", "molecule/default/inventory/group_vars/celery_flower.yml"])
def test_inventories_set_only_declared_variables(path):
    names = {k for k in _load(ROOT / path) if k.startswith("celery_flower")}
    assert names, path
    assert names <= set(SPEC), names - set(SPEC)


def _validate(variables):
    return [str(e) for e in ArgumentSpecValidator(SPEC).validate(variables).errors]


def test_the_validator_sees_the_user_entries():
    # (the spec's default of celery_flower_broker_tls is templated when used: given here)
    base = {"celery_flower_broker_url": "amqp://h", "celery_flower_broker_tls": {}}
    assert _validate({**base, "celery_flower_basic_auth": [{"user": "a", "password": "b" * 8}]}) == []
    for entry, fragment in [
        ({"user": "a"}, "password"),
        ({"password": "x" * 8}, "user"),
        ({"user": "a", "password": "x" * 8, "role": "admin"}, "role"),
    ]:
        errors = _validate({**base, "celery_flower_basic_auth": [entry]})
        assert any(fragment in e for e in errors), (entry, errors)

"""meta/argument_specs.yml and defaults/main.yml describe the same options."""

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def _load(path):
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_spec_and_defaults_declare_the_same_options(role):
    spec = _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
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
            walk(opt.get("options", {}), f"{where}{name}.")

    walk(_load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"], "")


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_default_has_a_comment_above_it(role):
    lines = (role / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            assert i > 0 and lines[i - 1].startswith("#"), f"{line.split(':')[0]} has no comment above it"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_defaults_values_match_the_spec_types(role):
    spec = _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = _load(role / "defaults" / "main.yml")
    types = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict, "path": str}
    for name, value in defaults.items():
        expected = types[spec[name]["type"]]
        assert isinstance(value, expected), f"{name}: {value!r} is not {spec[name]['type']}"
        if "choices" in spec[name]:
            assert value in spec[name]["choices"], name

"""The READMEs stay true to the code they describe.

* every option of a role (meta/argument_specs.yml, entry point main: its
  variables and the keys of their entries or mappings) is documented in that role's
  README.md (the table scripts/role-docs generates);
* every repository path a README names in backticks or a link exists, so a
  file that is removed or moved cannot stay documented;
* the root README stays short (issue 13: at most ~250 lines);
* a count of bad inputs a README gives is the preflight test's.
"""

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))
READMES = [ROOT / "README.md", ROOT / "docs" / "testing.md"] + [r / "README.md" for r in ROLES]
# Paths are recognised by their first component.
TOP = ("roles/", "molecule/", "bench/", "scripts/", "lab/", "tests/", "docs/", "inventory/", "playbooks/", "files/",
       "templates/", "tasks/", "meta/", "defaults/", "handlers/", "vars/", ".ci/")
# Paths documented as gone (history) or created at run time.
NOT_IN_TREE = ("library/", "action_plugins/", "templates/role_files.json.j2", "tasks/record.yml", "bench/results/", ".lab/")


def test_roles_found():
    assert {r.name for r in ROLES} >= {"celery_workers", "celery_flower"}


def _options(options):
    """The variables and the keys of their entries (the two levels of the generated tables)."""
    for name, opt in options.items():
        yield "", name
        for key in opt.get("options", {}):
            yield f"{name}.", key


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_option_is_in_the_role_readme(role):
    readme = (role / "README.md").read_text()
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    options = list(_options(spec))
    assert len(options) > len(spec), "the entries' keys are missing: the walk is broken"
    missing = [where + name for where, name in options if f"| `{name}` |" not in readme]
    assert not missing, f"{role.name}/README.md does not document {missing}"


def _named_paths(text):
    for token in re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)\s#]+)\)", text):
        token = token.rstrip(".,:;")
        if token.startswith(TOP) and not token.startswith(NOT_IN_TREE) and not any(c in token for c in "<>*{}$"):
            yield token


@pytest.mark.parametrize("readme", READMES, ids=[str(r.relative_to(ROOT)) for r in READMES])
def test_named_paths_exist(readme):
    text = readme.read_text()
    missing = []
    for path in _named_paths(text):
        # Relative to the repository, to the README's directory, or to a role ("defaults/main.yml").
        if not any((base / path).exists() for base in (ROOT, readme.parent, *ROLES)):
            missing.append(path)
    assert not missing, f"{readme.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_root_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_bad_input_counts_match_the_tests():
    """A count of bad inputs a README gives is the test file's."""
    import test_flower_preflight  # pylint: disable=import-outside-toplevel
    import test_preflight  # pylint: disable=import-outside-toplevel
    expected = {"test_preflight.py": len(test_preflight.BAD), "test_flower_preflight.py": len(test_flower_preflight.BAD)}
    for readme in READMES:
        text = readme.read_text()
        counts = re.findall(r"(test_(?:flower_)?preflight\.py)`[^.]*?(\d+) bad inputs", text)
        # Every "N bad inputs" is one of these (else the pattern no longer reads the README).
        assert len(counts) == len(re.findall(r"\d+ bad inputs", text)), f"{readme.relative_to(ROOT)}: a count of bad inputs of no test file"
        for test_file, count in counts:
            assert int(count) == expected[test_file], f"{readme.relative_to(ROOT)}: {count} bad inputs for {test_file}, the test has {expected[test_file]}"

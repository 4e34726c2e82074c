"""The READMEs stay true to the code they describe.

* every public variable of a role (its defaults/main.yml) is documented in
  that role's README.md;
* every repository path a README names in backticks or a link exists, so a
  file that is removed or moved cannot stay documented;
* the root README stays short (issue 13: at most ~250 lines).
"""

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/defaults/main.yml"))
READMES = [ROOT / "README.md", ROOT / "docs" / "testing.md"] + [r / "README.md" for r in ROLES]
# Paths are recognised by their first component.
TOP = ("roles/", "molecule/", "bench/", "scripts/", "lab/", "tests/", "docs/", "inventory/", "playbooks/", "files/",
       "templates/", "tasks/", "meta/", "defaults/", "handlers/", "vars/", ".ci/")
# Paths documented as gone (history) or created at run time.
NOT_IN_TREE = ("library/", "action_plugins/", "templates/role_files.json.j2", "tasks/record.yml", "bench/results/", ".lab/")


def test_roles_found():
    assert {r.name for r in ROLES} >= {"celery_workers", "celery_flower"}


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_public_variable_is_in_the_role_readme(role):
    readme = (role / "README.md").read_text()
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    missing = [name for name in defaults if f"`{name}`" not in readme]
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
    import test_flower_preflight  # pylint: disable=import-outside-toplevel
    import test_preflight  # pylint: disable=import-outside-toplevel
    expected = {"test_preflight.py": len(test_preflight.BAD), "test_flower_preflight.py": len(test_flower_preflight.BAD)}
    found = 0
    for readme in READMES:
        for test_file, count in re.findall(r"(test_(?:flower_)?preflight\.py)`[^.]*?(\d+) bad inputs", readme.read_text()):
            found += 1
            assert int(count) == expected[test_file], f"{readme.relative_to(ROOT)}: {count} bad inputs for {test_file}"
    assert found >= 3, "the pattern no longer finds the documented counts"

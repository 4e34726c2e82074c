"""The collection as users get it: built from this checkout, installed into an
empty collections path, used by FQCN from a directory that knows nothing of
the checkout.

* scripts/collection build makes the tarball; its size is bounded and it
  holds the roles, every filter plugin and plugin util, meta/runtime.yml and
  the changelog, and none of the lab, bench, molecule, tests or docs.
* Each filter is documented: `ansible-doc -t filter -l` lists none
  UNDOCUMENTED, and `ansible-doc -t filter` shows each one (from the
  installed collection).
* No Python file of the collection (plugins/, roles/*/files/, files/) is
  over 400 lines.
* ansible-galaxy installs it (offline) into a temporary collections path.
* A playbook that names only celery_fleet.celery.celery_workers and
  celery_fleet.celery.celery_flower runs, in check mode and limited to the
  preflight tags, on local fake hosts: argument-spec validation, then
  preflight: the good hosts pass, the bad ones are refused with their
  messages, nothing changes.
* Control: the same run with an empty collections path does not find the
  roles, so the run above used the installed copy (the checkout is not on
  any path: another working directory, no ansible.cfg, no roles_path).

molecule/options converges through the installed collection too (its
dependency step runs scripts/collection install).
"""

from __future__ import annotations

import json
import subprocess
import tarfile

import pytest
import yaml

from preflight_harness import ANSIBLE_PLAYBOOK, FILTER_DIR, LOCAL, ROOT, results_by_host

GALAXY = ANSIBLE_PLAYBOOK.parent / "ansible-galaxy"
ANSIBLE_DOC = ANSIBLE_PLAYBOOK.parent / "ansible-doc"
MAX_PYTHON_LINES = 400
BROKER = "amqp://celery:secret@mq.example.org:5672/celery"
MAX_TARBALL_BYTES = 150_000


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([str(ROOT / "scripts" / "collection"), "build", str(out)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    path = out / proc.stdout.strip().split("/")[-1]
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    assert path.name == f"celery_fleet-celery-{version}.tar.gz"
    return path


@pytest.fixture(scope="module")
def installed(tarball, tmp_path_factory):
    dest = tmp_path_factory.mktemp("collections")
    proc = subprocess.run([str(GALAXY), "collection", "install", str(tarball), "-p", str(dest), "--offline", "--force"],
                          capture_output=True, text=True, timeout=300, check=False, cwd=dest)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (dest / "ansible_collections" / "celery_fleet" / "celery" / "roles" / "celery_workers" / "tasks" / "main.yml").is_file()
    return dest


def test_tarball_holds_the_roles_and_nothing_of_the_lab(tarball):
    print(f"\n{tarball.name}: {tarball.stat().st_size} bytes")
    assert tarball.stat().st_size < MAX_TARBALL_BYTES
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    plugins = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "plugins").glob("*/*.py"))]
    assert len(plugins) > 10, plugins
    for wanted in ["MANIFEST.json", "meta/runtime.yml", "CHANGELOG.md", "changelogs/changelog.yaml",
                   "roles/celery_workers/tasks/main.yml", "roles/celery_workers/meta/argument_specs.yml",
                   "roles/celery_workers/files/celery_workers_check.py", "roles/celery_flower/tasks/main.yml", "README.md",
                   *plugins]:
        assert wanted in names, wanted
    for unwanted in ["lab", "bench", "molecule", "tests", "docs", "scripts", "inventory", "collections", ".lab", ".venv", "ansible.cfg"]:
        assert not any(n == unwanted or n.startswith(unwanted + "/") for n in names), unwanted
    manifest = json.loads(tarfile.open(tarball).extractfile("MANIFEST.json").read())
    assert manifest["collection_info"]["namespace"] == "celery_fleet" and manifest["collection_info"]["name"] == "celery"


def test_runtime_requires_the_tested_ansible():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    import ansible.release  # pylint: disable=import-outside-toplevel
    tested = ".".join(ansible.release.__version__.split(".")[:2])
    assert runtime["requires_ansible"] == f">={tested}.0", (runtime, tested)


def _run_fqcn(work, collections_path):
    inventory = {"all": {"vars": LOCAL, "children": {
        "workers_good": {"hosts": {"good": {"celery_workers_broker_url": BROKER}}},
        "workers_bad": {"hosts": {"bad": {"celery_workers_broker_url": BROKER,
                                          "celery_workers": [{"name": "../x", "queues": ["default"]}]}}},
        "flower_good": {"hosts": {"flower": {"celery_flower_broker_url": BROKER,
                                             "celery_flower_basic_auth": [{"user": "ops", "password": "long-enough-pw"}]}}},
    }}}
    playbook = [
        {"name": "Workers through the installed collection", "hosts": "workers_good:workers_bad", "gather_facts": False,
         "roles": [{"role": "celery_fleet.celery.celery_workers"}]},
        {"name": "Flower through the installed collection", "hosts": "flower_good", "gather_facts": False,
         "roles": [{"role": "celery_fleet.celery.celery_flower"}]},
    ]
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (work / "playbook.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    (work / "ansible.cfg").write_text("[defaults]\n")  # nothing of the checkout's configuration
    env = {"PATH": f"{ANSIBLE_PLAYBOOK.parent}:/usr/bin:/bin", "HOME": str(work), "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
           "ANSIBLE_COLLECTIONS_PATH": str(collections_path), "ANSIBLE_ROLES_PATH": str(work / "no-roles"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "inventory.yml", "playbook.yml", "--check",
                           "--tags", "celery_workers_preflight,celery_flower_preflight"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False)
    return proc


def test_fqcn_roles_run_from_the_installed_collection(installed, tmp_path):
    proc = _run_fqcn(tmp_path, installed)
    data = json.loads(proc.stdout)
    results = {host: dict(tasks) for host, tasks in results_by_host(data).items()}
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert results["good"]["celery_fleet.celery.celery_workers : Assert the configuration is valid"]["msg"] == "celery_workers preflight passed for 1 worker(s)"
    assert any(name.startswith("celery_fleet.celery.celery_workers : Validating arguments against arg spec") for name in results["good"])
    assert "celery_fleet.celery.celery_workers : Assert the workers fit in the host's memory" in results["good"]
    assert "celery_fleet.celery.celery_flower : Assert the configuration is valid" in results["flower"]
    assert not results["flower"]["celery_fleet.celery.celery_flower : Assert the configuration is valid"].get("failed")
    assert data["stats"]["good"]["failures"] == 0 and data["stats"]["flower"]["failures"] == 0
    assert data["stats"]["bad"]["failures"] == 1
    refused = results["bad"]["celery_fleet.celery.celery_workers : Assert the configuration is valid"]["msg"]
    assert "celery_workers[0] (name '../x'): field name must match" in refused
    assert all(stats["changed"] == 0 for stats in data["stats"].values())


def test_control_without_the_collection_the_roles_are_not_found(tmp_path):
    empty = tmp_path / "empty-collections"
    empty.mkdir()
    proc = _run_fqcn(tmp_path, empty)
    assert proc.returncode != 0
    assert "celery_fleet.celery.celery_workers" in proc.stdout + proc.stderr
    assert "was not found" in proc.stdout + proc.stderr


def _ansible_doc(collections_path, *args, check=False):
    """ansible-doc seeing only the installed collection (nothing of the checkout's configuration)."""
    (collections_path / "ansible.cfg").write_text("[defaults]\n")
    env = {"PATH": f"{ANSIBLE_PLAYBOOK.parent}:/usr/bin:/bin", "HOME": str(collections_path), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CONFIG": str(collections_path / "ansible.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(collections_path)}
    return subprocess.run([str(ANSIBLE_DOC), *args], env=env, cwd=collections_path, capture_output=True, text=True,
                          timeout=120, check=check)


def test_every_filter_is_documented(installed):
    names = sorted(f"celery_fleet.celery.{path.stem}" for path in FILTER_DIR.glob("*.py"))
    listed = _ansible_doc(installed, "-t", "filter", "-l", "celery_fleet.celery")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "UNDOCUMENTED" not in listed.stdout, listed.stdout
    assert sorted(line.split()[0] for line in listed.stdout.splitlines() if line.strip()) == names
    # Each filter's page, in one call (ansible-doc shows several plugins at once).
    shown = _ansible_doc(installed, "-t", "filter", *names)
    assert shown.returncode == 0 and "ERROR" not in shown.stdout + shown.stderr, shown.stdout[-2000:] + shown.stderr
    for name in names:
        short = name.rsplit(".", 1)[1]
        assert f"> FILTER {name} ({installed}/ansible_collections/celery_fleet/celery/plugins/filter/{short}.py)" in shown.stdout, name
    docs = json.loads(_ansible_doc(installed, "-t", "filter", "--json", *names, check=True).stdout)
    assert sorted(docs) == names
    for name, doc in docs.items():
        assert doc["doc"]["name"] == name.rsplit(".", 1)[1] and doc["doc"].get("short_description"), name
        assert doc["examples"] and doc["return"], name


def test_no_python_file_of_the_collection_is_over_400_lines():
    files = [*ROOT.glob("plugins/**/*.py"), *ROOT.glob("roles/*/files/**/*.py"), *ROOT.glob("files/**/*.py")]
    assert len(files) > 10, files
    long = {str(path.relative_to(ROOT)): n for path in files if (n := len(path.read_text().splitlines())) > MAX_PYTHON_LINES}
    assert not long, f"over {MAX_PYTHON_LINES} lines: {long}"

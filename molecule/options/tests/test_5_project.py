"""A user's own project: the Django project examples/django_project on opt-worker2.

The converge installed it the three ways README "Your own project" names at
once: no application file, the app is the package `shopsite` from a private
index with credentials (files/index_server.py: 401 without them), its
requirements a pinned file with hashes, every other wheel from a wheelhouse
made on the controller; pip knows no other index there, so nothing came from
PyPI. Here, from outside: the Django task runs on its queue, with Django's
settings and its ORM on SQLite in the workers' state directory; the packages
are the pinned ones; the index's password is in no process, unit, journal
line, readable file or Ansible output; a new version of the package rolls the
workers; a requirements file pip must refuse (a wrong hash, another
Celery) fails before anything restarts, with pip's own reason; and a changed
requirements file that changes what is installed rolls the workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import pathlib
import uuid

import celery
import pytest

import fleet
from conftest import report

HOST = "opt-worker2"
PROJECT_DIR = fleet.PROJECT / "examples" / "django_project"
REQUIREMENTS = PROJECT_DIR / "requirements.txt"
# The private index's packages, made by files/make_packages.sh.
INDEX_DIR = fleet.PROJECT / ".lab" / "index" / "options" / "shopsite"


def _index_password() -> str:
    return (fleet.PROJECT / ".lab" / "options_index_password").read_text().split()[0]


@contextlib.contextmanager
def client():
    """A plain Celery client of the scenario's broker: tasks are sent by name, no Django here."""
    app = celery.Celery("options-project-test", broker=fleet.broker_url(), backend="rpc://")
    try:
        yield app
    finally:
        app.close()


def _pids() -> dict[str, str]:
    return {w["name"]: fleet.unit_props(HOST, w["unit"], "MainPID")["MainPID"] for w in fleet.workers_of(HOST)}


def _pip_freeze() -> dict[str, str]:
    out = fleet.node(HOST).check_output("/opt/celery/venv/bin/pip freeze --disable-pip-version-check")
    # Names as PEP 503 normalises them (prompt_toolkit is prompt-toolkit).
    return dict(line.lower().replace("_", "-").split("==", 1) for line in out.splitlines() if "==" in line)


@pytest.mark.deadline(90)
def test_the_django_task_runs_on_its_queue_with_the_orm():
    (shop,) = fleet.workers_of(HOST)
    with client() as app:
        first = app.send_task("shop.tasks.record_order", args=["book"], queue=shop["queue"]).get(timeout=60)
        second = app.send_task("shop.tasks.record_order", args=["pen"], queue=shop["queue"]).get(timeout=60)
    report("django task", first=first, second=second)
    assert first["settings"] == "shopsite.settings" and first["queue"] == shop["queue"]
    assert first["worker"] == shop["node"] and first["host"] == HOST
    # The ORM wrote to SQLite in the workers' state directory, which the worker user owns.
    assert second["id"] == first["id"] + 1 and second["orders"] == first["orders"] + 1
    database = first["database"]
    assert database == fleet.setting("celery_workers_environment", HOST)["SHOPSITE_DB"]
    assert database.startswith(fleet.setting("celery_workers_state_dir", HOST) + "/")
    db_file = fleet.node(HOST).file(database)
    assert db_file.exists and db_file.user == fleet.setting("celery_workers_user", HOST)


def test_the_pinned_packages_from_the_wheelhouse_and_the_index():
    host = fleet.node(HOST)
    installed = _pip_freeze()
    pinned = dict(line.split(" ")[0].lower().split("==") for line in REQUIREMENTS.read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    assert {name: installed.get(name) for name in pinned} == pinned, installed
    assert installed["shopsite"] == fleet.setting("celery_workers_pip_packages", HOST)[0].split("==")[1]
    assert installed["celery"] == fleet.setting("celery_workers_celery_version")
    # The requirements file and the constraint beside the app, the wheelhouse, no application file.
    assert host.file("/opt/celery/requirements.txt").content_string == REQUIREMENTS.read_text()
    assert host.file("/opt/celery/constraints.txt").content_string == f"celery=={installed['celery']}\n"
    wheels = host.check_output("ls /opt/celery/wheelhouse").split()
    assert sorted(wheels) == sorted(p.name for p in (fleet.PROJECT / ".lab" / "wheelhouse" / "options").glob("*.whl"))
    assert host.check_output("ls -A /opt/celery/app") == ""
    # pip knows only the private index: a package that is neither there nor in the wheelhouse cannot come from PyPI.
    out = host.run("PIP_CONFIG_FILE=/etc/celery/pip.conf /opt/celery/venv/bin/pip download --no-deps --no-cache-dir"
                   " -d /tmp/zz-pip-probe six==1.16.0 --disable-pip-version-check")
    assert out.rc != 0 and "No matching distribution found for six==1.16.0" in out.stderr, out


def test_the_index_password_stays_secret():
    password = _index_password()
    host = fleet.node(HOST)
    pip_conf = host.file("/etc/celery/pip.conf")
    # Control: root finds it where it belongs, a file only root reads.
    assert (pip_conf.user, pip_conf.group, pip_conf.mode) == ("root", "root", 0o600)
    assert password in pip_conf.content_string
    assert host.check_output(f"grep -rlF -- '{password}' /etc /opt /var/lib/celery /run /tmp || true").split() == ["/etc/celery/pip.conf"]
    assert password not in host.check_output("ps -eo args")
    assert host.check_output(f"journalctl --no-pager -o cat | grep -cF -- '{password}' || true") == "0"
    for unit_file in host.check_output("find /etc/systemd/system -path '*celery*' -type f").split():
        assert password not in host.file(unit_file).content_string, unit_file


@contextlib.contextmanager
def _at_shopsite_101(tmp_path: pathlib.Path, host_vars: dict, *args: str):
    """site.yml on HOST with host_vars that ask for shopsite 1.0.1: pip installs it and every worker of the
    host restarts onto it (yields the run's output); then the scenario's settings bring 1.0.0 back (pip
    installs the version asked for)."""
    before = _pids()
    rc, output = fleet.run_playbook(tmp_path / "v101.log", fleet.write_override(tmp_path / "v101", {HOST: host_vars}),
                                    "--limit", HOST, *args, timeout=240)
    try:
        assert rc == 0, output[-4000:]
        assert fleet.recap(output)[HOST]["failed"] == 0
        assert _pip_freeze()["shopsite"] == "1.0.1"
        after = _pids()
        report("shopsite 1.0.1", through=sorted(host_vars), restarted=sorted(n for n in before if after[n] != before[n]))
        assert all(after[name] not in ("0", pid) for name, pid in before.items()), (before, after)
        yield output
    finally:
        rc, output = fleet.run_playbook(tmp_path / "back.log", None, "--limit", HOST, timeout=240)
        assert rc == 0, output[-4000:]
    assert _pip_freeze()["shopsite"] == "1.0.0"


def _with_shopsite_101(sha256: str) -> str:
    """The project's requirements and shopsite 1.0.1 with the given hash."""
    return REQUIREMENTS.read_text() + f"shopsite==1.0.1 \\\n    --hash=sha256:{sha256}\n"


@pytest.mark.deadline(300)
def test_a_new_version_of_the_package_rolls_the_workers_and_no_secret_is_shown(tmp_path):
    entries = fleet.setting("celery_workers_pip_packages", HOST)
    assert entries == ["shopsite==1.0.0"]
    with _at_shopsite_101(tmp_path, {"celery_workers_pip_packages": ["shopsite==1.0.1"]}, "-vvv") as output:
        # pip itself prints the index with its password masked; Ansible never shows it.
        assert _index_password() not in output
        assert "shop:****@127.0.0.1" in output
        with client() as app:
            assert app.send_task("shop.tasks.record_order", args=["v101"], queue="shop").get(timeout=60)["settings"] == "shopsite.settings"


def _bad_requirements(tmp_path: pathlib.Path, kind: str) -> pathlib.Path:
    if kind == "hash":
        # A package pip must download (installed ones are not fetched again), with a wrong hash.
        text = _with_shopsite_101("0" * 64)
    else:
        text = REQUIREMENTS.read_text().replace("celery==5.7.0", "celery==5.6.3")
    path = tmp_path / f"requirements-{kind}-{uuid.uuid4().hex[:6]}.txt"
    path.write_text(text)
    return path


@pytest.mark.deadline(300)
def test_a_requirements_file_pip_refuses_fails_before_anything_restarts(tmp_path):
    before = _pids()
    for kind, reason in [("hash", "THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE"),
                         ("celery", "The user requested (constraint) celery==5.7.0")]:
        rc, output = fleet.run_playbook(tmp_path / f"{kind}.log", fleet.write_override(tmp_path / kind, {HOST: {
            "celery_workers_requirements_src": str(_bad_requirements(tmp_path, kind))}}), "--limit", HOST, timeout=200)
        assert rc != 0 and fleet.recap(output)[HOST]["failed"] == 1, output[-3000:]
        failed = output.split("TASK [celery_fleet.celery.celery_workers : Install the requirements file in the virtualenv]", 1)[1]
        failed = failed.split("TASK [", 1)[0]
        report(f"requirements refused ({kind})", reason=reason, shown=reason in failed)
        assert f"fatal: [{HOST}]" in failed and reason in failed, failed[-3000:]
        assert "Restart shop" not in output
        assert _pids() == before
    # The scenario's file back on the host: what is installed did not change, nothing restarts.
    rc, output = fleet.run_playbook(tmp_path / "back.log", None, "--limit", HOST, timeout=200)
    assert rc == 0, output[-3000:]
    assert _pids() == before


@pytest.mark.deadline(300)
def test_a_changed_requirements_file_rolls_the_workers(tmp_path):
    """The package moved into the requirements file at another version, with its hash."""
    path = tmp_path / "requirements-1.0.1.txt"
    path.write_text(_with_shopsite_101(hashlib.sha256((INDEX_DIR / "shopsite-1.0.1-py3-none-any.whl").read_bytes()).hexdigest()))
    with _at_shopsite_101(tmp_path, {"celery_workers_requirements_src": str(path), "celery_workers_pip_packages": []}):
        assert fleet.node(HOST).file("/opt/celery/requirements.txt").content_string == path.read_text()

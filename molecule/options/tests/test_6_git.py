"""A package from a git repository: opt-worker1's celery_workers_pip_packages
has `optextras @ git+git://127.0.0.1:<lab_git_port>/optextras.git@v1.0.0`
(files/make_packages.sh made the repository, prepare.yml serves it). The role
installed git on the host for it; pip cloned the tag; the workers import it.
A second converge (molecule's idempotence step) changed nothing."""

from __future__ import annotations

import json
import subprocess

import fleet
from conftest import GROUP_VARS, WORKER_HOST, all_workers, call, node, report, setting

REPO = fleet.PROJECT / ".lab" / "git" / "options" / "optextras.git"
VENV = "/opt/celery/venv"


def test_package_from_a_git_repository(optapp):
    # The inventory's entry, its port filled in (the inventory says it as {{ lab_git_port }}).
    (spec,) = [p for p in setting("celery_workers_pip_packages") if p.startswith("optextras @ git+")]
    spec = spec.replace("{{ lab_git_port }}", str(GROUP_VARS["lab_git_port"]))
    url, tag = spec.split(" @ git+", 1)[1].rsplit("@", 1)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", f"{tag}^{{commit}}"], capture_output=True, text=True,
                            check=True).stdout.strip()
    host = node()
    assert host.package("git").is_installed
    # pip's record of where it came from: the URL, the tag asked for, the commit it resolved to.
    record = host.check_output(f"cat {VENV}/lib/python3*/site-packages/optextras-*.dist-info/direct_url.json")
    assert json.loads(record) == {"url": url, "vcs_info": {"vcs": "git", "requested_revision": tag, "commit_id": commit}}, record
    # A worker imports it (the first one: every worker of the host has the same virtualenv).
    w = all_workers()[0]
    run = call(optapp, w, "extras")
    report("git package", host=WORKER_HOST, spec=spec, commit=commit[:12], seen_by=w["node"], version=run["version"])
    assert run["version"] == "1.0.0" and run["file"].startswith(f"{VENV}/lib/"), run

"""A run refused by preflight leaves a real host exactly as it was.

tests/test_preflight.py proves, in check mode on the controller, that every
bad input fails in preflight. Here the playbook really runs (no check mode,
no tag filter) on both hosts, each with its own bad input, and the snapshot
of each host (conftest.SNAPSHOT) is the same before and after. Every bad
input comes with a valid change (the first worker's concurrency), so a run
that got past preflight would change the host: test_check_mode.py shows that
change reported on the same input without the bad part.

An empty worker list passes preflight and, in check mode, would remove only
the workers this role wrote (files carrying its marker), nothing else.
"""

from __future__ import annotations

import pytest

from conftest import assert_same, snapshots
from fleet import LEGACY_FORMAT, node, results_by_host, run_site, unit, workers_of

TASKS = {
    "assert": "celery_fleet.celery.celery_workers : Assert the configuration is valid",
    "spec": "celery_fleet.celery.celery_workers : Validating arguments against arg spec 'main'",
    "root": "celery_fleet.celery.celery_workers : Assert the workers' user and group are not root",
    "fit": "celery_fleet.celery.celery_workers : Assert the workers fit in the host's memory",
}


def _with(host: str, extra_entry: dict | None = None, **variables) -> dict:
    """The host's workers with the first one's concurrency changed, plus an entry and variables."""
    entries = [{"name": w["name"], "queues": w["queues"], "concurrency": w["concurrency"]} for w in workers_of(host)]
    entries[0]["concurrency"] += 1
    return {"celery_workers": entries + ([extra_entry] if extra_entry else []), **variables}


@pytest.fixture()
def root_alias():
    """An account `toor` with uid 0 on mol-worker1, as some hosts have; the account files are restored afterwards."""
    host = node("mol-worker1")
    files = "/etc/passwd /etc/group /etc/shadow /etc/gshadow"
    host.check_output(f"for f in {files}; do cp -p $f $f.test-backup; done")
    host.check_output("useradd -o -u 0 -g 0 -M -N -s /usr/sbin/nologin toor")
    yield "toor"
    host.check_output(f"for f in {files}; do mv $f.test-backup $f; done")
    assert host.run("getent passwd toor").rc != 0


def _refused(case: dict[str, tuple[dict, str, str]]):
    before = snapshots()
    proc = run_site([], json_output=True, host_vars={h: v for h, (v, _, _) in case.items()})
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = results_by_host(proc.stdout)
    for host, (_, task, fragment) in case.items():
        failed = [(name, r) for name, r in results[host] if r.get("failed")]
        # (Ansible names the spec's task after the entry point's short description.)
        assert len(failed) == 1 and failed[0][0].startswith(TASKS[task]), failed
        assert fragment in failed[0][1]["msg"], failed[0][1]["msg"]
        assert not any(r.get("changed") for _, r in results[host])
    assert_same(before, snapshots())
    for host in case:
        assert not node(host).file("/tmp/pwned").exists


def test_refused_by_a_rule_or_by_what_the_host_has(steady):
    _refused({
        # A newline in a name would inject a directive into the unit.
        "mol-worker1": (_with("mol-worker1", {"name": "evil\nExecStartPre=/bin/touch /tmp/pwned", "queues": ["x"]}),
                        "assert", "field name must match"),
        # Refused after reading the host (nproc, MemTotal), still before any change.
        "mol-worker2": (_with("mol-worker2", {"name": "big", "queues": ["x"], "concurrency": {"per_cpu": 2000}}),
                        "fit", "the workers do not fit in memory"),
    })


def test_refused_by_the_argument_spec_or_an_account_with_uid_0(steady, root_alias):
    _refused({
        # Passes the controller-side checks, refused by the read-only look at the host.
        "mol-worker1": (_with("mol-worker1", celery_workers_user=root_alias), "root", f"celery_workers_user '{root_alias}'"),
        "mol-worker2": (_with("mol-worker2", {"name": "extra", "queues": ["x"], "colour": "red"}), "spec", "colour"),
    })


@pytest.fixture()
def foreign_files():
    """Files named like the role's but without its marker, on both hosts."""
    paths = ["/etc/systemd/system/" + LEGACY_FORMAT % "foreign", f"/etc/systemd/system/{unit('foreign')}.d/worker.conf"]
    for host in ("mol-worker1", "mol-worker2"):
        node(host).check_output(f"mkdir -p {paths[1].rsplit('/', 1)[0]} && for f in {' '.join(paths)}; do "
                                "printf '[Service]\\nExecStart=/bin/true\\n' > $f; done")
    yield paths
    for host in ("mol-worker1", "mol-worker2"):
        node(host).check_output(f"rm -rf {paths[0]} {paths[1].rsplit('/', 1)[0]}")


def test_empty_worker_list_would_touch_only_the_roles_workers(steady, foreign_files):
    before = snapshots()
    proc = run_site(["--check", "--tags", "celery_workers"], json_output=True, host_vars={
        "mol-worker1": {"celery_workers": [], "celery_workers_remove_absent": True},
        "mol-worker2": {"celery_workers": [], "celery_workers_remove_absent": False}})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = results_by_host(proc.stdout)
    for host, remove in (("mol-worker1", True), ("mol-worker2", False)):
        tasks = dict(results[host])
        assert tasks["celery_fleet.celery.celery_workers : Assert the configuration is valid"]["msg"] == "celery_workers preflight passed for 0 worker(s)"
        stop = tasks["celery_fleet.celery.celery_workers : Stop and disable the workers no longer listed, and the units of 1.x"]
        stopped = sorted(r["item"] for r in stop.get("results", []) if not r.get("skipped"))
        assert stopped == (sorted(unit(w["name"]) for w in workers_of(host)) if remove else []), (host, stopped)
        deleted = tasks["celery_fleet.celery.celery_workers : Delete the files no longer needed"]
        deleted = sorted(r["item"] for r in deleted.get("results", []) if r.get("changed"))
        assert not any("foreign" in path for path in deleted), deleted
        if remove:
            assert deleted and all(path.startswith("/etc/") for path in deleted), deleted
        # No other task would stop or disable a unit.
        for name, r in results[host]:
            for one in r.get("results", [r]):
                if one.get("changed") and one.get("invocation", {}).get("module_args", {}).get("enabled") is False:
                    assert one["name"] in stopped, (name, one.get("name"))
    assert_same(before, snapshots())

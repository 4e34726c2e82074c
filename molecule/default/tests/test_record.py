"""The record of the last run, and the fast path it opens (tasks/preflight.yml).

After a complete run the role writes, root only, the fingerprint of its
settings and the SHA-256, owner, group and mode of every file it manages. A
run with the same settings reads only that record and the live state: it
ends after one call when the host is still as the last run left it. Any
drift (a file edited or chmod-ed, a worker stopped, the record itself
tampered with) sends the run down the full path, which repairs the host, and
the run after that is fast again.
"""

from __future__ import annotations

import json

import pytest

from ansible_run import podman_host, results_by_host, run_site
from conftest import broker_password, workers_of

HOST = "mol-worker1"
STATE = "/etc/celery/.celery_workers_state.json"
FAST = "celery_workers : Look up the host's state against the record of the last run"
FAST_END = "celery_workers : End the role on a host as the last run with these settings left it"
SPEC = "celery_workers : Validating arguments against arg spec 'main'"
COLLECT = "celery_workers : Collect configuration errors"
FIRST = workers_of(HOST)[0]["name"]
UNIT = f"/etc/systemd/system/celery-worker-{FIRST}.service"
ENV = f"/etc/celery/worker-{FIRST}.env"
APP = "/opt/celery/app/celery_app.py"


def ran(results):
    """Names of the tasks that ran (not skipped), without the argument spec."""
    return [name for name, r in results if not r.get("skipped") and not name.startswith(SPEC)]


def files_state(host) -> str:
    return host.check_output(f"stat -c '%n %a %U %G' {UNIT} {ENV} {APP} && sha256sum {UNIT} {ENV} {APP}")


def test_record_is_root_only_and_holds_no_secret():
    host = podman_host(HOST)
    record = host.file(STATE)
    assert record.exists and record.user == "root" and record.group == "root" and record.mode == 0o600
    content = record.content_string
    assert broker_password() not in content
    data = json.loads(content)
    assert len(data["fingerprint"]) == 64
    recorded = {f["path"]: f for f in data["files"]}
    for w in workers_of(HOST):
        unit = recorded[f"/etc/systemd/system/celery-worker-{w['name']}.service"]
        assert (unit["owner"], unit["group"], unit["mode"]) == ("root", "root", "0644")
        assert unit["sha256"] == host.check_output(f"sha256sum /etc/systemd/system/celery-worker-{w['name']}.service").split()[0]
    assert set(data["options"]["units"]) == {f"celery-worker-{w['name']}.service" for w in workers_of(HOST)}
    # What the verdict of the fast path compares the host with (vars/main.yml: __celery_workers_expect).
    assert data["options"]["expect"]["account"] == ["Celery workers", "/var/lib/celery", "/usr/sbin/nologin"]
    assert data["options"]["expect"]["celery_version"] == host.check_output(
        "/opt/celery/venv/bin/python -c 'import celery; print(celery.__version__)'")


def test_same_settings_take_the_fast_path():
    proc = run_site(["--limit", HOST], json_output=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = results_by_host(proc.stdout)[HOST]
    assert dict(results)[FAST]["recorded"] is True
    assert dict(results)[FAST]["in_shape"] is True
    assert ran(results) == [FAST, FAST_END]  # then meta: end_role (not reported by the json callback)
    assert not any(r.get("changed") for _, r in results)


def test_other_settings_take_the_full_path():
    """Check mode, one worker's concurrency changed: no record for that fingerprint."""
    workers = [{"name": w["name"], "queues": w["queues"], "concurrency": w["concurrency"]} for w in workers_of(HOST)]
    workers[0]["concurrency"] += 1
    proc = run_site(["--limit", HOST, "--check"], json_output=True, host_vars={HOST: {"celery_workers": workers}})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = dict(results_by_host(proc.stdout)[HOST])
    assert results[FAST]["recorded"] is False
    assert not results[COLLECT].get("skipped")
    assert results["celery_workers : Write the worker units"].get("changed")


DRIFT = {
    "unit_file_edited": f"echo '# drift' >> {UNIT}",
    "env_file_mode": f"chmod 0644 {ENV}",
    "app_file_owner": f"chown celery {APP}",
    "worker_stopped": f"systemctl stop celery-worker-{FIRST}.service",
    "worker_disabled": f"systemctl disable celery-worker-{FIRST}.service",
    "record_tampered": f"sed -i 's/\"fingerprint\": \"./\"fingerprint\": \"x/' {STATE}",
    "record_removed": f"rm {STATE}",
}


@pytest.mark.parametrize("case", sorted(DRIFT))
def test_drift_takes_the_full_path_and_is_repaired(case):
    host = podman_host(HOST)
    before = files_state(host)
    host.check_output(DRIFT[case])
    proc = run_site(["--limit", HOST], json_output=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = results_by_host(proc.stdout)[HOST]
    assert dict(results)[FAST]["in_shape"] is False
    names = ran(results)
    assert COLLECT in names, names  # the full path: preflight's checks, then the probe
    assert files_state(host) == before
    assert host.service(f"celery-worker-{FIRST}.service").is_running
    assert host.service(f"celery-worker-{FIRST}.service").is_enabled
    record = json.loads(host.file(STATE).content_string)
    assert not record["fingerprint"].startswith("x")
    # And the next run is fast again, and changes nothing.
    again = run_site(["--limit", HOST], json_output=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    results = results_by_host(again.stdout)[HOST]
    assert ran(results)[:2] == [FAST, FAST_END]
    assert not any(r.get("changed") for _, r in results)

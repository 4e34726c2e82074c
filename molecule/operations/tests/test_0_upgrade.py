"""Upgrade from the released 1.0.0 in one run, under load.

The fleet is first put back to what 1.0.0 leaves: the 2.0 units and files
are removed and 1.0.0's own site.yml (its git tag, scripts/release-tree)
converges both hosts: one unit `celery-worker-NAME.service` per worker.
Then, while short tasks go to every queue, this checkout's site.yml runs
once: each old unit is replaced by its new instance `celery-worker@NAME`,
one worker of the fleet at a time, each gated (the old one stopped only
once the one before was back and consuming), so that `default` (one worker
on each host) always has a consumer. No task is lost (at-least-once:
duplicates are counted and reported); afterwards no unit or environment file
of 1.0.0 is left, and every worker runs under its new unit and the target.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import (LEGACY_FORMAT, PROJECT, TARGET, WORKER_HOSTS, assert_rolling, celery_client, fleet_answers, journal, node,
                      playbook_command, playbook_env, recap, start_playbook, unit, unit_events, unit_props, wait_for, workers_of)
from fleet import Stream

RELEASE = "1.0.0"
# What 2.0 writes, removed so that the host is what 1.0.0 alone would leave.
TEARDOWN = ("systemctl disable --now celery-workers.target 'celery-worker@*.service' 2>/dev/null; "
            "rm -rf /etc/systemd/system/celery-worker@* /etc/systemd/system/celery-workers.target* "
            "/etc/celery/worker-*.env /opt/celery/bin; systemctl daemon-reload")


@pytest.mark.deadline(600)
def test_upgrade_from_1_0_0_replaces_each_unit_one_at_a_time_under_load(tmp_path):
    tree = tmp_path / f"release-{RELEASE}"
    subprocess.run([str(PROJECT / "scripts" / "release-tree"), RELEASE, str(tree)], check=True, timeout=60)
    for hostname in WORKER_HOSTS:
        node(hostname).check_output(TEARDOWN)
    env = {**playbook_env(), "ANSIBLE_COLLECTIONS_PATH": str(tree / "collections"), "ANSIBLE_ROLES_PATH": str(tree / "roles")}
    old = subprocess.run(playbook_command(None, playbook=tree / "site.yml"), cwd=tree, env=env,
                         capture_output=True, text=True, timeout=400, check=False)
    assert old.returncode == 0, old.stdout[-4000:] + old.stderr[-2000:]
    legacy = {(w["host"], w["name"]): LEGACY_FORMAT % w["name"] for h in WORKER_HOSTS for w in workers_of(h)}
    for (hostname, _), legacy_unit in legacy.items():
        assert unit_props(hostname, legacy_unit, "ActiveState")["ActiveState"] == "active", legacy_unit
    with celery_client() as client:
        wait_for("the 1.0.0 fleet", lambda: fleet_answers(client.app), timeout=60)
        stream = Stream(client, ["default", "other", "reports"], rate=10, max_count=3000)
        proc = start_playbook(tmp_path / "upgrade.log")
        try:
            stream.run_while(proc, timeout=420)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        output = (tmp_path / "upgrade.log").read_text()
        assert rc == 0, output[-4000:]
        assert all(h["failed"] == 0 for h in recap(output).values()), recap(output)
        summary = stream.summary(stream.results(timeout=180))

    # Each worker: its old unit stopped once, then its new unit started once and ready;
    # across the fleet, one worker at a time.
    windows = []
    for (hostname, name), legacy_unit in legacy.items():
        stops = [ts for ts, word, _ in unit_events(hostname, legacy_unit, stream.since) if word == "Stopping"]
        starts = [ts for ts, word, _ in unit_events(hostname, unit(name), stream.since) if word == "Started"]
        assert len(stops) == 1 and len(starts) == 1, (hostname, name, stops, starts)
        assert stops[0] < starts[0], (hostname, name)
        ready = wait_for(f"{name}@{hostname} ready", lambda: [
            e["ts"] for e in journal(hostname, since=stream.since, grep=f"{name}@{hostname} ready.") if e["ts"] > starts[0] - 1], timeout=30)
        windows.append((stops[0], starts[0], ready[-1], f"{name}@{hostname}"))
    assert_rolling(sorted(windows))

    # Nothing of 1.0.0 is left, and every worker runs under its new unit.
    for hostname in WORKER_HOSTS:
        host = node(hostname)
        assert host.check_output("ls /etc/systemd/system | grep '^celery-worker-' || true") == ""
        assert host.check_output("systemctl list-units --all --plain --no-legend 'celery-worker-*' || true") == ""
        assert host.check_output("ls /etc/celery | grep '^worker-' || true") == ""
        for w in workers_of(hostname):
            assert unit_props(hostname, unit(w["name"]), "ActiveState", "UnitFileState") == {
                "ActiveState": "active", "UnitFileState": "enabled"}, w["name"]
        assert unit_props(hostname, TARGET, "ActiveState")["ActiveState"] == "active"

    print(f"\nupgrade {RELEASE} -> this checkout under load: {len(windows)} units replaced one at a time "
          f"({[name for *_, name in sorted(windows)]}); tasks {summary}")
    assert summary["lost"] == 0 and summary["missing_in_journals"] == [], summary

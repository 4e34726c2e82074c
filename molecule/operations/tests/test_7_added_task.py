"""The trap of issue 13: a task a maintainer adds runs on a converged host.

A copy of the role gets one more task at the end of tasks/configure.yml (a
logrotate file, the example of the issue). The copy is applied to a host the
scenario has already converged, through a playbook whose roles/ directory
holds the copy. The new task must run there and report `changed`, the file
must be on the host, and nothing else may change: no worker restarts.
Then the real role runs with one worker's concurrency raised (through
celery_workers_overrides) and celery_workers_drain_timeout 0: that worker
alone restarts, undrained, with its new pool, every other worker of the fleet
keeps its main process; the scenario's inventory puts it back the same way,
drained, and the file is removed, so the host is as the scenario left it.

With a role that decides from a record or a prediction of the host ("in
shape, end here") the new task would be skipped on a converged host and
nothing would fail; this test would.
"""

import shutil
import subprocess
import time

import pytest
import yaml

from conftest import (PROJECT, WORKER_HOSTS, celery_client, new_run_id, node, playbook_command, playbook_env, recap,
                      run_playbook, unit_events, unit_props, unit, wait_for, workers_of, write_override)


def _site_play() -> dict:
    """The workers' play of site.yml, with the role by its short name (the copy beside the playbook)."""
    (play,) = [p for p in yaml.safe_load((PROJECT / "site.yml").read_text()) if p.get("hosts") == "celery_workers"]
    assert play["roles"] == [{"role": "celery_fleet.celery.celery_workers"}], play["roles"]
    play["roles"] = [{"role": "celery_workers"}]
    return play


@pytest.mark.deadline(420)
def test_a_task_added_to_the_role_runs_on_a_converged_host(tmp_path):
    hostname = WORKER_HOSTS[0]
    host = node(hostname)
    trap = f"/etc/logrotate.d/celery-trap-{new_run_id()}"
    assert not host.file(trap).exists

    copy = tmp_path / "roles" / "celery_workers"
    shutil.copytree(PROJECT / "roles" / "celery_workers", copy)
    shutil.copytree(PROJECT / "files", tmp_path / "files")
    configure = copy / "tasks" / "configure.yml"
    tasks = yaml.safe_load(configure.read_text())
    tasks.append({
        "name": "Rotate the workers' logs (added by the trap test)",
        "ansible.builtin.copy": {
            "content": "/var/log/celery/*.log {\n  weekly\n  rotate 4\n  missingok\n}\n",
            "dest": trap, "owner": "root", "group": "root", "mode": "0644"},
    })
    configure.write_text(yaml.safe_dump(tasks, sort_keys=False))
    # roles/ beside the playbook comes before any roles_path: the copy is the role used.
    playbook = tmp_path / "site.yml"
    playbook.write_text(yaml.safe_dump([_site_play()], sort_keys=False))

    names = [w["name"] for w in workers_of(hostname)]
    pids = {n: unit_props(hostname, unit(n), "MainPID")["MainPID"] for n in names}
    since = time.time() - 1
    log = tmp_path / "ansible-copy.log"
    with log.open("wb") as out:
        proc = subprocess.run(playbook_command(None, "--limit", hostname, playbook=playbook),
                              cwd=PROJECT, env=playbook_env(), stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False)
    output = log.read_text()
    assert proc.returncode == 0, output[-4000:]
    section = output.split("TASK [celery_workers : Rotate the workers' logs (added by the trap test)]", 1)
    assert len(section) == 2, "the added task never ran:\n" + output[-4000:]
    assert f"changed: [{hostname}]" in section[1].split("TASK [", 1)[0], section[1][:2000]
    assert recap(output)[hostname]["changed"] == 1, recap(output)
    try:
        assert host.file(trap).is_file
        assert host.file(trap).mode == 0o644
        after = {n: unit_props(hostname, unit(n), "MainPID")["MainPID"] for n in names}
        assert after == pids
        assert all(unit_events(hostname, unit(n), since) == [] for n in names)

        # The real role, one worker changed: that one restarts with its new pool, no other worker of the fleet.
        first = workers_of(hostname)[0]
        override = write_override(tmp_path / "override", {hostname: {
            "celery_workers_overrides": {first["name"]: {"concurrency": first["concurrency"] + 1}},
            "celery_workers_drain_timeout": 0}})
        _only_that_worker_restarts(tmp_path / "ansible-one.log", override, first, first["concurrency"] + 1, drained=False)
        # And back (the scenario's inventory): the same worker once more, drained, nothing else.
        _only_that_worker_restarts(tmp_path / "ansible-back.log", None, first, first["concurrency"], drained=True)
    finally:
        host.run(f"rm -f {trap}")
    assert not host.file(trap).exists


def _only_that_worker_restarts(log, override, worker: dict, concurrency: int, drained: bool) -> None:
    fleet = [(h, w["name"]) for h in WORKER_HOSTS for w in workers_of(h)]
    pids = {(h, n): unit_props(h, unit(n), "MainPID")["MainPID"] for h, n in fleet}
    rc, output = run_playbook(log, override, timeout=300)
    assert rc == 0, output[-4000:]
    after = {(h, n): unit_props(h, unit(n), "MainPID")["MainPID"] for h, n in fleet}
    # The drain of the restarted worker ran (ok) or, with celery_workers_drain_timeout 0, did not (skipping).
    drain = output.split(f"TASK [celery_fleet.celery.celery_workers : Drain {worker['name']}]", 1)[1].split("TASK [", 1)[0]
    assert f"{'ok' if drained else 'skipping'}: [{worker['host']}]" in drain, drain
    changed = sorted(k for k in pids if after[k] != pids[k])
    assert changed == [(worker["host"], worker["name"])], (pids, after)
    assert after[changed[0]] != "0"
    with celery_client() as client:
        stats = wait_for(f"{worker['node']} to answer", lambda: (client.app.control.inspect(
            destination=[worker["node"]], timeout=2.0).stats() or {}).get(worker["node"]), timeout=30)
    assert stats["pool"]["max-concurrency"] == concurrency, stats["pool"]
    print(f"\none worker changed ({worker['node']}, concurrency {concurrency}, {'' if drained else 'not '}drained): it alone restarted, "
          f"{len(fleet) - 1} others kept their main process")

"""A change of the application restarts every worker of the fleet, one at a time.

ansible-playbook runs against both worker hosts with only
celery_workers_app_src changed: a copy of the application with one more
comment line. No unit and no environment file changes, yet every worker must
get a new main process (the old one would keep the old code), one worker of
the whole fleet at a time: each worker, on either host, stopped only after the
previous one was back and ready. Both hosts have a worker named `default` on
queue `default`: stopping them together would leave the queue with no
consumer. Then the same with the original application, which puts the hosts
back as the scenario left them (and is the same kind of change once more).
"""

import time

import pytest

from conftest import (APP_FILE, WORKER_HOSTS, assert_rolling, celery_client, fleet_answers, node, recap,
                      restart_windows, run_playbook, unit_props, worker_unit, workers_of, wait_for,
                      write_override, new_run_id)

APP_DEST = "/opt/celery/app/celery_app.py"


def _roll(tmp_path, override, label):
    names = {h: [w["name"] for w in workers_of(h)] for h in WORKER_HOSTS}
    pids = {(h, n): unit_props(h, worker_unit(n), "MainPID")["MainPID"] for h in WORKER_HOSTS for n in names[h]}
    since = time.time() - 1
    rc, output = run_playbook(tmp_path / f"ansible-{label}.log", override, timeout=420)
    assert rc == 0, output[-4000:]
    for hostname in WORKER_HOSTS:
        assert recap(output)[hostname]["failed"] == 0, recap(output)
    # Only the application changed: no unit or environment file was rewritten.
    for task in ("Write the worker units", "Write the per-worker environment files",
                 "Write the shared environment file (broker URL)"):
        section = output.split(f"TASK [celery_fleet.celery.celery_workers : {task}]", 1)[1].split("TASK [", 1)[0]
        assert "changed:" not in section, (task, section)
    deploy = output.split("TASK [celery_fleet.celery.celery_workers : Deploy the application]", 1)[1].split("TASK [", 1)[0]
    for hostname in WORKER_HOSTS:
        assert f"changed: [{hostname}]" in deploy, deploy

    after = {(h, n): unit_props(h, worker_unit(n), "MainPID")["MainPID"] for h, n in pids}
    assert all(after[k] not in ("0", pids[k]) for k in pids), (label, pids, after)
    # One timeline for the fleet (the containers share the machine's clock).
    windows = sorted((stopping, started, ready, f"{name}@{h}")
                     for h in WORKER_HOSTS for stopping, started, ready, name in restart_windows(h, names[h], since))
    assert_rolling(windows)
    with celery_client() as client:
        wait_for("every worker", lambda: fleet_answers(client.app), timeout=30)
    return windows


@pytest.mark.deadline(900)
def test_app_change_restarts_every_worker_of_the_fleet_one_at_a_time(tmp_path):
    originals = {h: node(h).check_output(f"sha256sum {APP_DEST}").split()[0] for h in WORKER_HOSTS}

    changed_app = tmp_path / "app" / "celery_app.py"
    changed_app.parent.mkdir()
    marker = f"# application change {new_run_id()}"
    changed_app.write_text(APP_FILE.read_text() + marker + "\n")
    override = write_override(tmp_path / "override", {h: {"celery_workers_app_src": str(changed_app)}
                                                      for h in WORKER_HOSTS})
    windows = _roll(tmp_path, override, "changed")
    for hostname in WORKER_HOSTS:
        assert node(hostname).check_output(f"tail -n 1 {APP_DEST}") == marker

    # Back to the scenario's application: the same kind of change again.
    _roll(tmp_path, None, "restored")
    for hostname in WORKER_HOSTS:
        assert node(hostname).check_output(f"sha256sum {APP_DEST}").split()[0] == originals[hostname]
    print(f"\napplication change on {', '.join(WORKER_HOSTS)}: {len(windows)} workers restarted one at a time "
          f"({[name for *_, name in windows]}), then again for the original application")

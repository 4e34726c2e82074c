"""A change of the application restarts every worker of the host, rolling.

ansible-playbook runs against ops-worker2 (limited to it) with only
celery_workers_app_src changed: a copy of the application with one more
comment line. No unit and no environment file changes, yet every worker of
the host must get a new main process (the old one would keep the old code),
one at a time: each worker stopped only after the previous one was back and
ready. Then the same with the original application, which puts the host
back as the scenario left it (and is the same kind of change once more).
The other host is not touched.
"""

import time

import pytest

from conftest import (APP_FILE, WORKER_HOSTS, assert_rolling, celery_client, consumers_of, fleet_answers, node, recap,
                      restart_windows, run_playbook, unit_events, unit_props, worker_unit, workers_of, wait_for,
                      write_override, new_run_id)

APP_DEST = "/opt/celery/app/celery_app.py"


def _roll(tmp_path, hostname, override, label):
    names = [w["name"] for w in workers_of(hostname)]
    pids = {n: unit_props(hostname, worker_unit(n), "MainPID")["MainPID"] for n in names}
    others = {(h, w["name"]): unit_props(h, worker_unit(w["name"]), "MainPID")["MainPID"]
              for h in WORKER_HOSTS if h != hostname for w in workers_of(h)}
    since = time.time() - 1
    rc, output = run_playbook(tmp_path / f"ansible-{label}.log", override, "--limit", hostname, timeout=300)
    assert rc == 0, output[-4000:]
    assert recap(output)[hostname]["failed"] == 0, recap(output)
    # Only the application changed: no unit or environment file was rewritten.
    for task in ("Write the worker units", "Write the per-worker environment files",
                 "Write the shared environment file (broker URL)"):
        section = output.split(f"TASK [celery_fleet.celery.celery_workers : {task}]", 1)[1].split("TASK [", 1)[0]
        assert "changed:" not in section, (task, section)
    assert f"changed: [{hostname}]" in output.split("TASK [celery_fleet.celery.celery_workers : Deploy the application]", 1)[1].split("TASK [", 1)[0]

    after = {n: unit_props(hostname, worker_unit(n), "MainPID")["MainPID"] for n in names}
    assert all(after[n] not in ("0", pids[n]) for n in names), (label, pids, after)
    windows = restart_windows(hostname, names, since)
    assert_rolling(windows)
    for (h, name), pid in others.items():
        assert unit_props(h, worker_unit(name), "MainPID")["MainPID"] == pid, (h, name)
        assert unit_events(h, worker_unit(name), since) == [], (h, name)
    with celery_client() as client:
        wait_for("every worker", lambda: fleet_answers(client.app), timeout=30)
    return windows


@pytest.mark.deadline(600)
def test_app_change_restarts_every_worker_of_the_host_rolling(tmp_path):
    (target,) = consumers_of("reports")
    hostname = target["host"]
    host = node(hostname)
    original = host.check_output(f"sha256sum {APP_DEST}").split()[0]

    changed_app = tmp_path / "app" / "celery_app.py"
    changed_app.parent.mkdir()
    marker = f"# application change {new_run_id()}"
    changed_app.write_text(APP_FILE.read_text() + marker + "\n")
    override = write_override(tmp_path / "override", {hostname: {"celery_workers_app_src": str(changed_app)}})
    windows = _roll(tmp_path, hostname, override, "changed")
    assert host.check_output(f"tail -n 1 {APP_DEST}") == marker

    # Back to the scenario's application: the same kind of change again.
    _roll(tmp_path, hostname, None, "restored")
    assert host.check_output(f"sha256sum {APP_DEST}").split()[0] == original
    print(f"\napplication change on {hostname}: {len(windows)} workers restarted one at a time "
          f"({[name for *_, name in windows]}), then again for the original application")

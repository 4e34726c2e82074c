"""Parallel restarts and the health gate, in one run on one host.

ansible-playbook runs against ops-worker2 with:
  * celery_workers_restart_strategy: parallel and a new shared environment
    variable (a change of celery.env restarts every worker of the host);
  * a new worker `broken` with pool gevent, which is not installed: its
    process exits at start-up with ModuleNotFoundError and systemd keeps
    restarting it;
  * celery_workers_health_timeout: 10.
The host's workers restart together (every one of them was stopping before
any started again), the healthy ones pass the gate, and the gate fails the
host on `broken` with the last lines of its journal. The next test file
restores the inventory, which removes `broken` again.
"""

import time

import pytest

from conftest import (HOST_VARS, celery_client, consumers_of, fleet_answers, new_run_id, recap, run_playbook,
                      unit_events, wait_for, worker_unit, workers_of, write_override)

HEALTH_TIMEOUT = 6


@pytest.mark.deadline(420)
def test_parallel_restart_and_health_gate_failure(tmp_path):
    (target,) = consumers_of("reports")
    hostname = target["host"]
    broken = {"name": "broken", "queue": "broken", "pool": "gevent", "concurrency": 1}
    override = write_override(tmp_path / "override", {hostname: {
        "celery_workers": HOST_VARS[hostname]["celery_workers"] + [broken],
        "celery_workers_restart_strategy": "parallel",
        "celery_workers_environment": {"OPS_ROLLOUT": new_run_id()},
        "celery_workers_health_timeout": HEALTH_TIMEOUT,
    }})
    since = time.time() - 1
    rc, output = run_playbook(tmp_path / "ansible.log", override, "--limit", hostname, timeout=300)

    # The gate failed the host, naming the worker and quoting its journal.
    assert rc != 0, output[-4000:]
    assert recap(output)[hostname]["failed"] == 1, recap(output)
    assert "Worker broken is not healthy" in output
    assert f"broken@{hostname} not healthy after {HEALTH_TIMEOUT}" in output
    assert "Last journal lines of celery-worker-broken.service" in output
    assert "ModuleNotFoundError: No module named 'gevent'" in output

    # The workers that were running restarted together: all were stopping before any started.
    windows = {}
    for w in workers_of(hostname):
        events = unit_events(hostname, worker_unit(w["name"]), since)
        stopping = [ts for ts, word, _ in events if word == "Stopping"]
        started = [ts for ts, word, _ in events if word == "Started"]
        assert len(stopping) == 1 and len(started) == 1, (w["name"], events)
        windows[w["name"]] = (stopping[0], started[0])
    assert max(s for s, _ in windows.values()) < min(e for _, e in windows.values()), windows
    spread = max(s for s, _ in windows.values()) - min(s for s, _ in windows.values())

    # They passed the gate and consume their queues; `broken` never answered.
    with celery_client() as client:
        wait_for("the healthy workers", lambda: fleet_answers(client.app, workers_of(hostname)), timeout=30)
        assert not (client.app.control.inspect(destination=[f"broken@{hostname}"], timeout=2.0).ping() or {})
    print(f"\nparallel restart of {sorted(windows)} on {hostname}: stops began within {spread:.2f}s, "
          f"all before the first start; health gate failed the host on broken after {HEALTH_TIMEOUT}s")

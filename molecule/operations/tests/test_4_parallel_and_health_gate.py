"""The health gate, and parallel restarts.

First the gate's check program itself, run on a host against its running
workers with wrong expectations: each kind of unhealthy worker (wrong
queues, wrong pool size, pool size outside an autoscale range, no answer)
exits 1 with a line naming the worker, what was seen and what was expected.

Then ansible-playbook runs against ops-worker2 with:
  * celery_workers_restart_strategy: parallel and a new shared environment
    variable (a change of celery.env restarts every worker of the host);
  * a new worker `broken` with pool gevent, which is not installed: its
    process exits at start-up with ModuleNotFoundError and systemd keeps
    restarting it;
  * a new healthy worker `extra` (started in the same health check as `broken`);
  * celery_workers_health_timeout: HEALTH_TIMEOUT.
The host's workers restart together (every one of them was stopping before
any started again, each has a new main process), the healthy ones pass the
gate, and the gate fails the host on `broken` alone, with the last lines of
its journal. A second run adds `broken2` with celery_workers_health_check:
false: it cannot become healthy either, and the run passes. The next test
file restores the inventory, which removes `broken`, `broken2` and `extra`.
"""

import json
import shlex
import time

import pytest

from conftest import (HOST_VARS, celery_client, consumers_of, fleet_answers, new_run_id, node, recap, run_playbook,
                      unit_props, unit_events, wait_for, unit, workers_of, write_override)

# Seconds the gate waits: it applies to every worker of one check, the healthy
# ones restarting beside `broken` included, so it must cover a slow start-up
# on a loaded 2-core machine; `broken` makes the run wait for all of it.
HEALTH_TIMEOUT = 40
CHECK = "/opt/celery/venv/bin/python /opt/celery/bin/celery_workers_check.py"


def _run_check(hostname: str, expect: list[dict], timeout: float):
    """The gate's check, as the role runs it (as the workers' user), with expect on stdin."""
    cmd = (f"printf '%s' {shlex.quote(json.dumps(expect))}"
           f" | runuser -u celery -- {CHECK} --env-file /etc/celery/celery.env gate --timeout {timeout}")
    return node(hostname).run(cmd)


@pytest.mark.deadline(180)
def test_health_check_names_the_worker_and_what_it_saw():
    hostname = "ops-worker1"
    workers = workers_of(hostname)
    assert len(workers) >= 2
    right = [{"name": w["name"], "queues": w["queues"], "min": w["concurrency"], "max": w["concurrency"]} for w in workers]
    a, b = right[0], right[1]

    # Controls: the right expectations, and a range holding each pool size, are healthy.
    for expect in (right, [dict(e, min=1, max=e["max"] + 2) for e in right]):
        res = _run_check(hostname, expect, 30)
        assert res.rc == 0 and res.stdout.startswith("healthy after "), (expect, res)

    def qs(queues):
        return ",".join(sorted(queues))

    cases = {
        "wrong queues, wrong size, no answer": (
            [dict(a, queues=a["queues"] + ["not-consumed"]), dict(b, min=b["min"] + 1, max=b["max"] + 1),
             {"name": "ghost", "queues": ["x"], "min": 1, "max": 1}],
            {f"{a['name']}@{hostname} not healthy after 5.0s: queues={qs(a['queues'])} pool={a['min']}"
             f" (expected queues={qs(a['queues'] + ['not-consumed'])} pool={a['min']})",
             f"{b['name']}@{hostname} not healthy after 5.0s: queues={qs(b['queues'])} pool={b['min']}"
             f" (expected queues={qs(b['queues'])} pool={b['min'] + 1})",
             f"ghost@{hostname} not healthy after 5.0s: no answer to ping"}),
        "a queue missing, pool size outside a range": (
            [dict(a, queues=["not-consumed"]), dict(b, min=b["min"] + 1, max=b["min"] + 3)],
            {f"{a['name']}@{hostname} not healthy after 5.0s: queues={qs(a['queues'])} pool={a['min']}"
             f" (expected queues=not-consumed pool={a['min']})",
             f"{b['name']}@{hostname} not healthy after 5.0s: queues={qs(b['queues'])} pool={b['min']}"
             f" (expected queues={qs(b['queues'])} pool={b['min'] + 1}..{b['min'] + 3})"}),
    }
    for what, (expect, lines) in cases.items():
        # The program reports the last round it saw: a broadcast reply that came
        # too late makes that round "no answer to ping". A few attempts, each
        # of which must exit 1; one of them must say exactly what is wrong.
        seen = []
        for _ in range(3):
            res = _run_check(hostname, expect, 5)
            assert res.rc == 1, (what, res)
            seen.append(set(res.stdout.splitlines()))
            if seen[-1] == lines:
                break
        assert seen[-1] == lines, (what, seen)


@pytest.mark.deadline(600)
def test_parallel_restart_and_health_gate_failure(tmp_path):
    (target,) = consumers_of("reports")
    hostname = target["host"]
    broken = {"name": "broken", "queue": "broken", "pool": "gevent", "concurrency": 1}
    extra = {"name": "extra", "queue": "extra", "concurrency": 1}
    variables = {
        "celery_workers": HOST_VARS[hostname]["celery_workers"] + [broken, extra],
        "celery_workers_restart_strategy": "parallel",
        "celery_workers_environment": {"OPS_ROLLOUT": new_run_id()},
        "celery_workers_health_timeout": HEALTH_TIMEOUT,
    }
    override = write_override(tmp_path / "override", {hostname: variables})
    units = {w["name"]: unit(w["name"]) for w in workers_of(hostname)}
    pids = {name: unit_props(hostname, u, "MainPID")["MainPID"] for name, u in units.items()}
    since = time.time() - 1
    rc, output = run_playbook(tmp_path / "ansible.log", override, "--limit", hostname, timeout=400)

    # The gate failed the host, naming the worker and quoting its journal.
    assert rc != 0, output[-4000:]
    assert recap(output)[hostname]["failed"] == 1, recap(output)
    assert f"broken@{hostname} not healthy after {HEALTH_TIMEOUT}" in output
    assert "Last journal lines:" in output
    assert "ModuleNotFoundError: No module named 'gevent'" in output
    # ... and nothing else: the healthy workers checked with it passed.
    for name in [*units, "extra"]:
        assert f"{name}@{hostname} not healthy" not in output, name

    # The workers that were running restarted together: all were stopping before any started.
    windows = {}
    for name, unit_name in units.items():
        events = unit_events(hostname, unit_name, since)
        stopping = [ts for ts, word, _ in events if word == "Stopping"]
        started = [ts for ts, word, _ in events if word == "Started"]
        assert len(stopping) == 1 and len(started) == 1, (name, events)
        windows[name] = (stopping[0], started[0])
    assert max(s for s, _ in windows.values()) < min(e for _, e in windows.values()), windows
    spread = max(s for s, _ in windows.values()) - min(s for s, _ in windows.values())
    new_pids = {name: unit_props(hostname, u, "MainPID")["MainPID"] for name, u in units.items()}
    assert all(new_pids[n] not in ("0", pids[n]) for n in units), (pids, new_pids)

    # They passed the gate and consume their queues, `extra` too; `broken` never answered.
    assert unit_props(hostname, unit("extra"), "ActiveState", "UnitFileState") == {
        "ActiveState": "active", "UnitFileState": "enabled"}
    with celery_client() as client:
        extra_node = {"node": f"extra@{hostname}", "queues": ["extra"]}
        wait_for("the healthy workers", lambda: fleet_answers(client.app, workers_of(hostname) + [extra_node]), timeout=30)
        assert not (client.app.control.inspect(destination=[f"broken@{hostname}"], timeout=2.0).ping() or {})
    print(f"\nparallel restart of {sorted(windows)} on {hostname}: stops began within {spread:.2f}s, "
          f"all before the first start; health gate failed the host on broken after {HEALTH_TIMEOUT}s, passed extra")

    # celery_workers_health_check: false: a worker that cannot become healthy does not fail the run.
    broken2 = dict(broken, name="broken2", queue="broken2")
    override2 = write_override(tmp_path / "override2", {hostname: dict(
        variables, celery_workers=variables["celery_workers"] + [broken2], celery_workers_health_check=False)})
    rc2, output2 = run_playbook(tmp_path / "ansible2.log", override2, "--limit", hostname, timeout=300)
    assert rc2 == 0, output2[-4000:]
    assert recap(output2)[hostname]["failed"] == 0, recap(output2)
    # Control: the first run had the gate's task, this one did not run it.
    gate = "TASK [celery_fleet.celery.celery_workers : Wait for the workers to answer and consume their queues]"
    assert gate in output and gate not in output2
    assert "changed: [" + hostname + "] => (item=broken2)" in output2, output2[-4000:]
    # broken2 was started, is enabled, and keeps failing.
    assert unit_props(hostname, unit("broken2"), "UnitFileState")["UnitFileState"] == "enabled"
    wait_for("broken2 to crash and be restarted by systemd", lambda: int(
        unit_props(hostname, unit("broken2"), "NRestarts")["NRestarts"]) >= 1, timeout=60)
    # Nothing else restarted in the second run.
    assert {name: unit_props(hostname, u, "MainPID")["MainPID"] for name, u in units.items()} == new_pids

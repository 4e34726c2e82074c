"""Fault recovery: kill -9 of a worker, a broker outage, a host restart.

Each test ends with the whole fleet answering again, so the next one starts
from a healthy fleet. Tasks are acknowledged late (at-least-once): every task
must run (none lost); a duplicate is counted and reported, not forbidden.
"""

import subprocess
import time

import pytest

from conftest import (report, BEAT_HOSTS, BEAT_UNIT, BROKER, HOST_IMAGE, PROJECT, all_workers, celery_client,
                      children_of, consumers_of, fleet_answers, fleet_state, journal,
                      new_run_id, node, run_tasks, unit_props, wait_for, wait_for_tokens, unit,
                      workers_of)

TASKS_AFTER = 30  # tasks sent to each queue after a fault


def _only_consumer(queue):
    consumers = consumers_of(queue)
    assert len(consumers) == 1, consumers
    return consumers[0]


LONG_TASK = 20  # seconds: long enough that the kill lands while it runs, even on a slow machine


@pytest.mark.deadline(200)
def test_kill_9_of_a_worker_redelivers_its_task_and_systemd_restarts_it():
    """kill -9 of the main process of the only consumer of `other`, while it runs a task:
    systemd restarts the worker, the unacknowledged task is redelivered and runs
    to completion once, and the queue is consumed again."""
    w = _only_consumer("other")
    unit_name = unit(w["name"])
    run = new_run_id()
    since = time.time() - 1
    before = unit_props(w["host"], unit_name, "MainPID", "NRestarts")
    old_children = children_of(w["host"], before["MainPID"])
    with celery_client() as app:
        long_task = app.sleep.apply_async((LONG_TASK,), {"token": f"{run}-long"}, queue="other")
        inspect = app.app.control.inspect(destination=[w["node"]], timeout=1.0)
        (active,) = wait_for("the task to run on the worker", lambda: (inspect.active() or {}).get(w["node"]), timeout=30)
        assert active["id"] == long_task.id and active["worker_pid"] in old_children, (active, old_children)

        node(w["host"]).check_output(f"kill -9 {before['MainPID']}")
        t_kill = time.monotonic()
        # The kill landed mid-task: the task had started less than LONG_TASK seconds before.
        ran_for = time.time() - active["time_start"]
        assert ran_for < LONG_TASK - 1, f"the task may have finished before the kill ({ran_for:.1f}s)"
        after = wait_for("systemd to restart the worker", lambda: (
            lambda p: p if p["ActiveState"] == "active" and p["MainPID"] not in ("0", before["MainPID"]) else None
        )(unit_props(w["host"], unit_name, "MainPID", "NRestarts", "ActiveState")), timeout=60)
        restarted_in = time.monotonic() - t_kill
        assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1

        # The message was not acknowledged (acks_late): the broker hands it to the new worker.
        result = long_task.get(timeout=LONG_TASK + 60)
        assert result["token"] == f"{run}-long"
        assert result["pid"] in children_of(w["host"], after["MainPID"])
        # systemd killed the old pool with the main process (KillMode=mixed): the task ran to its end once.
        assert wait_for_tokens(run, since, {f"{run}-long"}) == {f"{run}-long": 1}

        # The queue is consumed again.
        results = run_tasks(app, "other", TASKS_AFTER, f"{run}-after", timeout=60)
        assert {r["worker"] for r in results} == {w["node"]}
        after_tokens = {f"{run}-after-{i}" for i in range(TASKS_AFTER)}
        counts = wait_for_tokens(f"{run}-after", since, after_tokens)
        assert set(counts) == after_tokens, counts
        report("tasks after the kill", sent=len(after_tokens), duplicated=sum(counts.values()) - len(counts))
    log = "\n".join(e["MESSAGE"] for e in journal(w["host"], f"-u {unit_name}", since=since))
    assert "Main process exited, code=killed, status=9/KILL" in log
    print(f"kill -9 {unit_name}@{w['host']}: {ran_for:.1f}s into a {LONG_TASK}s task, back in {restarted_in:.1f}s, "
          f"redelivered task done once, {TASKS_AFTER}/{TASKS_AFTER} tasks after")


BROKER_DOWN_SECONDS = 30


@pytest.mark.deadline(200)
def test_broker_outage_workers_reconnect_without_restart():
    """The broker is stopped for 30 s then started: every worker (and beat) reconnects
    with the same process, and tasks sent afterwards complete on every queue."""
    run = new_run_id()
    since = time.time() - 1
    before = fleet_state()
    broker = node(BROKER)
    broker.check_output("systemctl stop rabbitmq-server.service")
    try:
        time.sleep(BROKER_DOWN_SECONDS)
        # Still running while the broker is away: nothing restarted them.
        during = fleet_state()
        assert all(s["ActiveState"] == "active" for s in during.values()), during
    finally:
        broker.check_output("systemctl start rabbitmq-server.service")
    broker.check_output("rabbitmqctl await_startup --timeout 60")
    t_up = time.monotonic()
    with celery_client() as app:
        wait_for("every worker to consume its queues again", lambda: fleet_answers(app.app), timeout=90, interval=1)
        reconnected_in = time.monotonic() - t_up
        after = fleet_state()
        for key, state in before.items():
            assert after[key]["MainPID"] == state["MainPID"], (key, "restarted")
            assert after[key]["NRestarts"] == state["NRestarts"], (key, "restarted")
        for queue in ("default", "other", "reports"):
            results = run_tasks(app, queue, TASKS_AFTER, f"{run}-{queue}", timeout=60)
            assert {r["worker"] for r in results} <= {w["node"] for w in consumers_of(queue)}
        sent = {f"{run}-{q}-{i}" for q in ("default", "other", "reports") for i in range(TASKS_AFTER)}
        counts = wait_for_tokens(run, since, sent)
        assert set(counts) == sent, counts
        report("tasks after the fault", sent=len(sent), duplicated=sum(counts.values()) - len(counts))
    for w in all_workers():
        log = "\n".join(e["MESSAGE"] for e in journal(w["host"], f"-u {unit(w['name'])}", since=since))
        assert "Connection to broker lost" in log, w["node"]
    print(f"broker down {BROKER_DOWN_SECONDS}s: {len(before)} units kept their PID, fleet answering "
          f"{reconnected_in:.1f}s after the broker was up, {len(counts)}/{3 * TASKS_AFTER} tasks once")


def _container_started_at(name):
    return subprocess.run(["podman", "container", "inspect", "--format", "{{ .State.StartedAt }}", name],
                          check=True, timeout=30, capture_output=True, text=True).stdout.strip()


@pytest.mark.deadline(240)
def test_host_restart_brings_the_workers_back():
    """Stop and start the beat host's container (a host reboot): its workers and beat come back
    enabled and running, and consume their queues."""
    hostname = BEAT_HOSTS[0]
    run = new_run_id()
    started_before = _container_started_at(hostname)
    t0 = time.monotonic()
    subprocess.run(["podman", "stop", "--time", "90", hostname], check=True, timeout=120, capture_output=True)
    subprocess.run([str(PROJECT / "lab" / "host.sh"), "start", hostname, HOST_IMAGE],
                   check=True, timeout=120, capture_output=True)
    since = time.time() - 1
    assert _container_started_at(hostname) != started_before, "the container did not restart"
    units = [unit(w["name"]) for w in workers_of(hostname)] + [BEAT_UNIT]

    def all_up():
        props = {u: unit_props(hostname, u, "ActiveState", "UnitFileState") for u in units}
        return props if all(p == {"ActiveState": "active", "UnitFileState": "enabled"} for p in props.values()) else None

    wait_for("the units to be active", all_up, timeout=60)
    with celery_client() as app:
        wait_for("the host's workers to consume their queues", lambda: fleet_answers(app.app), timeout=90, interval=1)
        back_in = time.monotonic() - t0
        for queue in ("other",):  # only consumed on this host
            results = run_tasks(app, queue, TASKS_AFTER, f"{run}-{queue}", timeout=60)
            assert {r["host"] for r in results} == {hostname}
    sent = {f"{run}-other-{i}" for i in range(TASKS_AFTER)}
    counts = wait_for_tokens(run, since, sent)
    assert set(counts) == sent, counts
    report("tasks after the fault", sent=len(sent), duplicated=sum(counts.values()) - len(counts))
    print(f"host restart of {hostname}: {len(units)} units active+enabled, fleet answering after {back_in:.1f}s")

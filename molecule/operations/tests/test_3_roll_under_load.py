"""A change of the application rolls the whole fleet, one worker at a time,
drained, under load, and no task waits behind a warm shutdown.

Queue `default` has two consumers, one on each host, each with two pool
processes. When the playbook (celery_workers_app_src: a copy of the
application with one more line, on both hosts) reaches its restarts, each of
them is given a long task (LONG seconds), and a stream of short tasks goes to
`default` the whole time. No unit or environment file changes, yet every
worker of the fleet gets a new main process, one at a time: each one stopped
only after the previous one was back and ready. A worker due to restart is
drained first (its consumer cancelled, what it had reserved started on its
free process), so no short task waits for the long task's end: the longest
wait of a short task stays far below LONG. Nothing is lost; Celery's
acks_late is at-least-once, so duplicates are counted and reported, not
forbidden. The long task of the first worker reached finishes on its old process
during its warm shutdown.
Then the original application rolls the fleet back, without load.
"""

from __future__ import annotations

import re
import time

import pytest

from conftest import (APP_FILE, WORKER_HOSTS, assert_rolling, celery_client, consumers_of, fleet_answers, new_run_id, node, recap,
                      restart_windows, run_playbook, start_playbook, token_entries, unit, unit_props, wait_for, workers_of,
                      write_override)
from fleet import Stream

APP_DEST = "/opt/celery/app/celery_app.py"
LONG = 35  # seconds: at least 30 (the long task), longer than the roll of the first worker
# The long tasks are given when configure begins, well before the first drain.
CONFIGURE = b"TASK [celery_fleet.celery.celery_workers : Deploy the application]"


def _pids():
    return {(h, w["name"]): unit_props(h, w["unit"], "MainPID")["MainPID"] for h in WORKER_HOSTS for w in workers_of(h)}


def _give_each_a_long_task(client, stream, consumers) -> None:
    """Send long tasks to `default` until each of its consumers runs one (RabbitMQ deals them round-robin)."""
    nodes = {w["node"] for w in consumers}
    for n in range(2 * len(nodes) + 2):
        active = client.app.control.inspect(destination=list(nodes), timeout=1.5).active() or {}
        busy = {node_name for node_name, tasks in active.items() if any(t["args"] and t["args"][0] == LONG for t in tasks)}
        if busy == nodes:
            return
        stream.send(f"{stream.prefix}-l{n}", LONG, "default")
        time.sleep(0.5)
    pytest.fail(f"could not give each of {sorted(nodes)} a long task")


@pytest.mark.deadline(900)
def test_app_change_rolls_the_fleet_drained_under_load(tmp_path):
    consumers = consumers_of("default")
    assert len(consumers) == 2 and all(w["concurrency"] >= 2 for w in consumers), consumers
    changed_app = tmp_path / "app" / "celery_app.py"
    changed_app.parent.mkdir()
    marker = f"# application change {new_run_id()}"
    changed_app.write_text(APP_FILE.read_text() + marker + "\n")
    override = write_override(tmp_path / "override", {h: {"celery_workers_app_src": str(changed_app)} for h in WORKER_HOSTS})
    log = tmp_path / "ansible.log"
    before = _pids()

    with celery_client() as client:
        stream = Stream(client, ["default"], rate=10, max_count=4000)
        proc = start_playbook(log, override, "-v")
        state = {"long": False}

        def at_configure(_now):
            if not state["long"] and CONFIGURE in log.read_bytes():
                state["long"] = True
                _give_each_a_long_task(client, stream, consumers)

        try:
            stream.run_while(proc, timeout=600, also=at_configure)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        output = log.read_text()
        assert rc == 0, output[-4000:]
        assert state["long"], "the playbook never reached its restarts"
        assert all(h["failed"] == 0 for h in recap(output).values()), recap(output)
        results = stream.results(timeout=LONG + 120)
        summary = stream.summary(results)

    # Only the application changed: no drop-in or environment file was rewritten, every worker restarted.
    for task in ("Write each worker's drop-in", "Write the environment files of the workers with env", "Write the workers' template unit and target"):
        section = output.split(f"TASK [celery_fleet.celery.celery_workers : {task}]", 1)[1].split("TASK [", 1)[0]
        assert not re.search(r"^changed: \[", section, re.M), (task, section)
    after = _pids()
    assert all(after[k] not in ("0", before[k]) for k in before), (before, after)
    for hostname in WORKER_HOSTS:
        assert node(hostname).check_output(f"tail -n 1 {APP_DEST}") == marker
    # One timeline for the fleet (the containers share the machine's clock): one worker down at a time.
    windows = restart_windows([(w["host"], w["unit"]) for h in WORKER_HOSTS for w in workers_of(h)], stream.since)
    assert_rolling(windows)
    drains = [line.strip() for line in output.splitlines() if " drained in " in line or "not drained" in line]
    print(f"\ndrains: {drains}")
    assert len([d for d in drains if " drained in " in d]) >= len(consumers), drains

    # Each long task ran once, to its end. The roll reached at least one worker while its long task ran: that
    # task ended after its worker began to stop, on the old process, in its warm shutdown. (The roll waits for
    # that shutdown, so the other consumer's long task, given at the same moment, has ended by its turn.)
    longs = token_entries(f"{stream.prefix}-l", stream.since)
    stopping = {name: s for s, _, _, name in windows}
    assert len(longs) >= len(consumers), longs
    assert all(len(entries) == 1 for entries in longs.values()), longs
    in_shutdown = []
    for token, entries in longs.items():
        worker_name, hostname = results[token]["worker"].split("@")
        if entries[0]["ts"] > stopping[f"{hostname}/{unit(worker_name)}"] - 1:
            in_shutdown.append(token)
    assert in_shutdown, (longs, stopping)

    print(f"application change under load on {', '.join(WORKER_HOSTS)}: {len(windows)} workers rolled one at a time "
          f"({[name for *_, name in windows]}); short tasks to default: {summary}")
    assert summary["lost"] == 0 and summary["missing_in_journals"] == [], summary
    # No short task held back by a restarting worker: far below the long task's length.
    assert summary["max_wait"] < LONG / 4, summary

    # Back to the scenario's application, without load: the same kind of roll once more.
    since = time.time() - 1
    rc, output = run_playbook(tmp_path / "restore.log", None, timeout=420)
    assert rc == 0, output[-4000:]
    assert_rolling(restart_windows([(w["host"], w["unit"]) for h in WORKER_HOSTS for w in workers_of(h)], since))
    with celery_client() as client:
        wait_for("every worker", lambda: fleet_answers(client.app), timeout=30)

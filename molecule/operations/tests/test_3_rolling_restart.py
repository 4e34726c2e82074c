"""A rolling restart under load loses and duplicates nothing.

While 2,000 short tasks (sleep 0.01-0.05 s, each with a unique token) and a
long task (sleep 5) every few seconds are sent, ansible-playbook runs
playbooks/site.yml with one change: the concurrency of the only consumer of
`reports`, reports@ops-worker2 (and serial: 1, hosts one at a time). Half of
the short tasks and all the long ones go to `reports`, the rest to `default`.

Then: only that worker has a new main process; every token's result came
back exactly once; the journals of all workers show each token executed
exactly once; `reports` tasks ran both on the old and on the new process
(the load spanned the restart); and at least one long task that was running
when systemd began to stop the worker finished on the old process after the
stop began (warm shutdown), once.
"""

import collections
import random
import time

import pytest

from conftest import (HOST_VARS, all_workers, celery_client, consumers_of, fleet_state, new_run_id, recap,
                      start_playbook, token_entries, unit_events, wait_for_tokens, worker_unit, write_override)

SHORT_TASKS = 2000
SHORT_BEFORE_RESTART = 600      # at most this many before the restart handler starts
RATE_BEFORE, RATE_DURING = 20.0, 50.0  # short tasks per second
# Long tasks go on for as long as the load does (at most LONG_MAX, enough for
# PLAYBOOK_TIMEOUT): on a slow machine the playbook may reach the restart
# minutes after the start, and one must still be running when it does.
LONG_SECONDS, LONG_EVERY, LONG_MAX = 5, 4.0, 120
PLAYBOOK_TIMEOUT, RESULTS_TIMEOUT = 300, 180
HANDLER = b"RUNNING HANDLER [celery_fleet.celery.celery_workers : Restart changed celery workers]"


@pytest.mark.deadline(600)
def test_rolling_restart_under_load(tmp_path):
    (target,) = consumers_of("reports")
    key = (target["host"], target["name"])
    unit = worker_unit(target["name"])
    new_concurrency = target["concurrency"] + 1
    entries = [dict(e, concurrency=new_concurrency) if e["name"] == target["name"] else e
               for e in HOST_VARS[target["host"]]["celery_workers"]]
    override = write_override(tmp_path / "override", {target["host"]: {"celery_workers": entries}})
    log = tmp_path / "ansible.log"

    run = new_run_id()
    since = time.time() - 1
    before = fleet_state()
    rng = random.Random(run)
    sent = {}  # token -> (queue, AsyncResult)

    with celery_client() as client:
        def send(token, seconds, queue):
            sent[token] = (queue, client.sleep.apply_async((seconds,), {"token": token}, queue=queue))

        proc = start_playbook(log, override)
        try:
            start = time.monotonic()
            next_short = next_long = next_log_check = start
            handler_at = None
            shorts = longs = 0
            while shorts < SHORT_TASKS:
                now = time.monotonic()
                if handler_at is None and now >= next_log_check:
                    next_log_check = now + 0.5
                    if HANDLER in log.read_bytes():
                        handler_at = now
                        next_short = now
                    elif proc.poll() is not None:
                        pytest.fail(f"the playbook ended without restarting a worker:\n{log.read_text()[-4000:]}")
                    elif now - start > PLAYBOOK_TIMEOUT:
                        pytest.fail("the restart handler did not start in time")
                if now >= next_long and longs < LONG_MAX:
                    send(f"{run}-long-{longs}", LONG_SECONDS, "reports")
                    longs += 1
                    next_long += LONG_EVERY
                if now >= next_short and (handler_at is not None or shorts < SHORT_BEFORE_RESTART):
                    send(f"{run}-short-{shorts}", round(rng.uniform(0.01, 0.05), 3), ("reports", "default")[shorts % 2])
                    shorts += 1
                    next_short += 1.0 / (RATE_DURING if handler_at is not None else RATE_BEFORE)
                time.sleep(max(0.0, min(next_short, next_long, next_log_check) - time.monotonic()))
            rc = proc.wait(timeout=max(1.0, PLAYBOOK_TIMEOUT - (time.monotonic() - start)))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output = log.read_text()
        assert rc == 0, output[-4000:]
        assert all(h["failed"] == 0 for h in recap(output).values()), recap(output)

        # Every result came back, each token once.
        end = time.monotonic() + RESULTS_TIMEOUT
        results = {token: r.get(timeout=max(1.0, end - time.monotonic())) for token, (_, r) in sent.items()}
        returned = collections.Counter(r["token"] for r in results.values())
        assert set(returned) == set(sent) and set(returned.values()) == {1}

        stats = client.app.control.inspect(destination=[target["node"]], timeout=3.0).stats() or {}
        assert stats[target["node"]]["pool"]["max-concurrency"] == new_concurrency

    # Only the changed worker has a new main process.
    after = fleet_state()
    for k, state in before.items():
        if k == key:
            assert after[k]["MainPID"] != state["MainPID"], "the changed worker was not restarted"
        else:
            assert (after[k]["MainPID"], after[k]["NRestarts"]) == (state["MainPID"], state["NRestarts"]), k
    for w in all_workers():
        if (w["host"], w["name"]) != key:
            assert unit_events(w["host"], worker_unit(w["name"]), since) == [], w["node"]
    stops = [ts for ts, word, _ in unit_events(target["host"], unit, since) if word == "Stopping"]
    assert len(stops) == 1, "the changed worker was restarted more than once"

    # Each token executed exactly once, according to the journals of all the workers.
    executed = wait_for_tokens(run, since, set(sent), timeout=60)
    assert set(executed) == set(sent), set(sent) ^ set(executed)
    assert set(executed.values()) == {1}, {t: n for t, n in executed.items() if n != 1}

    # The load spanned the restart: `reports` tasks ran on the old and on the new process.
    old, new = before[key]["children"], after[key]["children"]
    on_reports = [results[t] for t, (q, _) in sent.items() if q == "reports"]
    ran_old = sum(r["pid"] in old for r in on_reports)
    ran_new = sum(r["pid"] in new for r in on_reports)
    assert ran_old > 0 and ran_new > 0 and ran_old + ran_new == len(on_reports), (ran_old, ran_new)

    # Warm shutdown: long tasks running when the stop began finished on the old process.
    entries = token_entries(f"{run}-long-", since)
    straddled = [t for t, (e,) in entries.items() if results[t]["pid"] in old and e["ts"] > stops[0]]
    long_ends = sorted(e["ts"] for (e,) in entries.values())
    assert straddled, (f"no long task was running when the worker was stopped (stop at {stops[0]:.1f}; "
                       f"{longs} long tasks sent, last one done at {long_ends[-1] if long_ends else None})")

    counts = collections.Counter(q for q, _ in sent.values())
    print(f"\nrolling restart under load: sent {len(sent)} tasks ({shorts} short, {longs} long; "
          f"{counts['reports']} to reports, {counts['default']} to default); results {len(results)}, "
          f"executed {sum(executed.values())}, duplicates {sum(n - 1 for n in executed.values())}; "
          f"reports tasks on the old process {ran_old}, on the new {ran_new}; "
          f"long tasks finished by the old process during its warm shutdown: {len(straddled)}; "
          f"restarted units: 1 of {len(before)}")

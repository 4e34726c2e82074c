"""Prefork pool processes: max_tasks_per_child, max_memory_per_child,
soft_time_limit and time_limit.

The pids come back in the tasks' results; a recycled or killed pool process
shows as a new pid for the next task (concurrency 1: one child at a time).
"""

from __future__ import annotations

import itertools
import time

import pytest

from conftest import main_pid, report, worker


def pids_of(optapp, w: dict, count: int) -> list[int]:
    """Run count `where` tasks one after the other; their pids in order."""
    pids = []
    for _ in range(count):
        run = optapp.where.apply_async(queue=w["queue"]).get(timeout=30)
        pids.append(run["pid"])
    return pids


@pytest.mark.deadline(120)
def test_max_tasks_per_child(optapp):
    w = worker("maxtasks")
    n = int(w["max_tasks_per_child"])
    assert int(w["concurrency"]) == 1, "the test needs one pool process"
    pids = pids_of(optapp, w, 2 * n + 1)
    runs = [len(list(g)) for _, g in itertools.groupby(pids)]
    report("max_tasks_per_child", n=n, pids=pids, runs=runs, mainpid=main_pid(w))
    # The first run may have started before this test (earlier tasks), the last is cut by the test.
    assert len(runs) >= 2, f"all {len(pids)} tasks ran in one process {pids[0]}: max_tasks_per_child={n} ignored"
    assert runs[0] <= n and runs[-1] <= n, f"a process ran more than {n} tasks: {pids}"
    assert all(r == n for r in runs[1:-1]), f"a process was recycled after other than {n} tasks: runs {runs}"
    assert n in runs, f"no process ran exactly {n} tasks: runs {runs}"
    assert len(set(pids)) == len(runs), f"a pid came back after being recycled: {pids}"


@pytest.mark.deadline(120)
def test_max_memory_per_child(optapp):
    w = worker("maxmem")
    limit = int(w["max_memory_per_child"])  # KiB
    assert int(w["concurrency"]) == 1, "the test needs one pool process"
    # Below the limit the process stays (else the limit is too low to prove anything).
    quiet = pids_of(optapp, w, 3)
    assert len(set(quiet)) == 1, f"the pool process changed without growing: {quiet} (limit {limit} KiB too low?)"
    mib = limit // 1024 + 64
    grown = optapp.grow.apply_async((mib,), queue=w["queue"]).get(timeout=60)
    after = pids_of(optapp, w, 2)
    report("max_memory_per_child", limit_kib=limit, quiet_pids=quiet, grow_mib=mib, grow_pid=grown["pid"],
           maxrss_before_kib=grown["maxrss_before_kib"], maxrss_after_kib=grown["maxrss_after_kib"], pids_after=after)
    assert grown["pid"] == quiet[-1]
    assert grown["maxrss_before_kib"] < limit < grown["maxrss_after_kib"], \
        f"the task did not cross the limit: {grown['maxrss_before_kib']} -> {grown['maxrss_after_kib']} KiB"
    assert after[0] != grown["pid"], \
        f"pid {grown['pid']} at {grown['maxrss_after_kib']} KiB ran the next task: max_memory_per_child={limit} ignored"
    assert after[0] == after[1], f"the new process did not stay: {after}"


@pytest.mark.deadline(90)
def test_soft_time_limit(optapp):
    w = worker("limits")
    soft = float(w["soft_time_limit"])
    hard = float(w["time_limit"])
    seconds = (soft + hard) / 2  # ends by itself before the hard limit if the soft one is ignored
    run = optapp.soft_catch.apply_async((seconds,), queue=w["queue"]).get(timeout=hard + 30)
    report("soft_time_limit", soft=soft, task_sleep=seconds, marker=run["marker"], elapsed=run["elapsed"])
    assert run["marker"] == "soft-limit-caught", \
        f"the task slept {run['elapsed']}s without SoftTimeLimitExceeded: soft_time_limit={soft} ignored"
    assert soft - 0.5 <= run["elapsed"] < seconds, f"interrupted after {run['elapsed']}s, soft limit {soft}s"


@pytest.mark.deadline(120)
def test_time_limit(optapp):
    w = worker("limits")
    hard = float(w["time_limit"])
    seconds = hard + 20  # survives the soft limit; only the hard limit can end it early
    before = pids_of(optapp, w, 1)[0]
    start = time.monotonic()
    result = optapp.ignore_soft.apply_async((seconds,), queue=w["queue"])
    try:
        result.get(timeout=hard + 15, propagate=False)
    except Exception as exc:  # pylint: disable=broad-except
        pytest.fail(f"no result {hard + 15}s after sending a {seconds}s task: time_limit={hard} ignored? ({exc!r})")
    elapsed = time.monotonic() - start
    after = pids_of(optapp, w, 1)[0]
    report("time_limit", hard=hard, task_sleep=seconds, state=result.state,
           exception=type(result.result).__name__, detail=str(result.result), elapsed=round(elapsed, 2),
           pid_before=before, pid_after=after)
    assert result.state == "FAILURE" and type(result.result).__name__ == "TimeLimitExceeded", \
        f"the task ended {result.state} with {result.result!r}, not TimeLimitExceeded"
    assert hard - 0.5 <= elapsed < seconds, f"killed after {elapsed:.1f}s, hard limit {hard}s"
    assert after != before, f"the killed pool process {before} still runs tasks"

"""pool: threads, solo, gevent and eventlet.

Each of these pools runs tasks inside the worker's main process (prefork,
the default, runs them in child processes), so a task's pid must be the
unit's MainPID; the thread name and the monkey-patching tell the pools apart;
and the start/end times of concurrent sleeps show whether the pool runs
tasks side by side (threads, gevent, eventlet) or one after the other (solo).
"""

from __future__ import annotations

import time

import pytest

from conftest import HOST_VARS, all_workers, drained, main_pid, report, stats, worker

POOLS = [w["name"] for w in all_workers() if w["pool"] in ("threads", "solo", "gevent", "eventlet")]
IMPLEMENTATION = {
    "threads": "celery.concurrency.thread:TaskPool",
    "solo": "celery.concurrency.solo:TaskPool",
    "gevent": "celery.concurrency.gevent:TaskPool",
    "eventlet": "celery.concurrency.eventlet:TaskPool",
}


def test_every_pool_is_tested():
    assert {worker(n)["pool"] for n in POOLS} >= set(IMPLEMENTATION), f"a pool has no worker in the inventory: {POOLS}"


@pytest.mark.deadline(90)
@pytest.mark.parametrize("name", ["threads", "solo", "gevent", "eventlet"])
def test_pool(optapp, name):
    w = worker(name)
    pool = w["pool"]
    pong = optapp.app.control.ping(destination=[w["node"]], timeout=3.0)
    assert pong and w["node"] in pong[0], f"{w['node']} did not answer ping: {pong!r}"

    implementation = stats(optapp, w)["pool"].get("implementation")
    assert implementation == IMPLEMENTATION[pool], f"{w['node']} runs pool {implementation}, not {pool}"

    mainpid = main_pid(w)
    # Sleeps sent together: as many as the pool runs at once (solo: 2).
    width = 2 if pool == "solo" else int(w["concurrency"])
    results = [optapp.sleep.apply_async((2.0,), queue=w["queue"]) for _ in range(width)]
    with drained(results, 30):
        runs = [r.get(timeout=40) for r in results]
    pids = {r["pid"] for r in runs}
    threads = {r["thread"] for r in runs}
    spans = sorted((r["started"], r["ended"]) for r in runs)
    overlap = max(s for s, _ in spans) < min(e for _, e in spans)
    report(f"pool {name}", implementation=implementation, mainpid=mainpid, task_pids=sorted(pids),
           threads=sorted(threads), patched=runs[0]["patched"], tasks=width,
           spans=[(round(s - spans[0][0], 2), round(e - spans[0][0], 2)) for s, e in spans])

    assert pids == {mainpid}, f"{name}: tasks ran in pids {pids}, not in the worker's main process {mainpid}"
    if pool == "solo":
        assert threads == {"MainThread"}, f"solo: tasks ran in threads {threads}"
        assert all(spans[i + 1][0] >= spans[i][1] for i in range(len(spans) - 1)), \
            f"solo: tasks overlapped {spans}"
    else:
        assert overlap, f"{name}: the {width} sleeps did not run side by side: {spans}"
    if pool == "threads":
        assert "MainThread" not in threads, f"threads: a task ran in the main thread {threads}"
        assert runs[0]["patched"] == {"gevent": False, "eventlet": False}
    if pool in ("gevent", "eventlet"):
        other = "eventlet" if pool == "gevent" else "gevent"
        assert all(r["patched"][pool] for r in runs), f"{name}: socket not monkey-patched by {pool}: {runs[0]['patched']}"
        assert not any(r["patched"][other] for r in runs), f"{name}: patched by {other} too"


def test_default_pool_is_prefork_for_contrast(optapp):
    """The same check on a worker without `pool` gives a child process: the check can fail."""
    w = worker("maxtasks")
    assert "pool" not in next(e for e in HOST_VARS["celery_workers"] if e["name"] == "maxtasks")
    start = time.monotonic()
    run = optapp.where.apply_async(queue=w["queue"]).get(timeout=30)
    mainpid = main_pid(w)
    report("pool prefork (contrast)", mainpid=mainpid, task_pid=run["pid"], task_ppid=run["ppid"],
           seconds=round(time.monotonic() - start, 2))
    assert run["pid"] != mainpid and run["ppid"] == mainpid

"""prefetch_multiplier and autoscale: how many messages a worker takes, and
how many pool processes it runs, under a bounded load.

The app's own worker_prefetch_multiplier is 1: a worker holds more than its
concurrency only if its --prefetch-multiplier says so. The broker's count of
unacknowledged messages (the app acknowledges late) is the outside view;
`celery inspect` the worker's own.
"""

from __future__ import annotations

import time

import pytest

from conftest import HOST_VARS, children_of, drained, inspect, main_pid, queue_counts, report, stats, wait_for, worker


@pytest.mark.deadline(150)
def test_prefetch_multiplier(optapp):
    w = worker("prefetch")
    concurrency = int(w["concurrency"])
    multiplier = int(w["prefetch_multiplier"])
    expected = multiplier * concurrency
    assert multiplier > 1, "a multiplier of 1 is the app's own: nothing to prove"

    prefetch_count = stats(optapp, w)["prefetch_count"]
    assert queue_counts(w["queue"]) == (0, 0), "work left in the queue by an earlier run"

    sent = expected + 2 * concurrency  # some stay in the queue: the worker takes no more than its prefetch
    results = [optapp.sleep.apply_async((4.0,), queue=w["queue"]) for _ in range(sent)]
    with drained(results, 90):
        unacked = wait_for(f"{expected} unacknowledged messages on {w['queue']}",
                           lambda: (lambda c: c if c[1] >= expected else None)(queue_counts(w["queue"])), 20)
        view = inspect(optapp, w)
        reserved = wait_for(f"{expected - concurrency} reserved tasks in inspect reserved",
                            lambda: (lambda r: r if len(r) == expected - concurrency else None)(
                                (view.reserved() or {}).get(w["node"])), 20)
        active = (view.active() or {}).get(w["node"], [])
        ready, unacknowledged = queue_counts(w["queue"])
        report("prefetch_multiplier", concurrency=concurrency, multiplier=multiplier,
               stats_prefetch_count=prefetch_count, sent=sent, broker_ready_unacked=unacked,
               inspect_reserved=len(reserved), inspect_active=len(active), broker_after=(ready, unacknowledged))
    assert prefetch_count == expected, f"inspect stats prefetch_count {prefetch_count}, expected {multiplier} x {concurrency}"
    assert unacked == (sent - expected, expected), f"broker (ready, unacked) {unacked}, expected {(sent - expected, expected)}"
    assert unacknowledged <= expected, f"the worker took {unacknowledged} messages, more than {expected}"


def pool_size(optapp, w: dict, mainpid: int) -> tuple[int, int]:
    """(pool processes seen from the host: children of the main process, autoscaler's `current`)."""
    return len(children_of(mainpid)), stats(optapp, w)["autoscaler"]["current"]


@pytest.mark.deadline(180)
def test_autoscale(optapp):
    w = worker("autoscale")
    low, high = int(w["autoscale"]["min"]), int(w["autoscale"]["max"])
    # max is relative to the host's CPUs in the inventory; the worker must run the resolved number.
    assert isinstance(next(e for e in HOST_VARS["celery_workers"] if e["name"] == "autoscale")["autoscale"]["max"], dict)
    keepalive = float(w.get("env", {}).get("AUTOSCALE_KEEPALIVE", 30))
    mainpid = main_pid(w)
    info = stats(optapp, w)
    assert info["autoscaler"]["max"] == high and info["autoscaler"]["min"] == low, f"autoscaler {info['autoscaler']}"
    idle = wait_for(f"the idle pool at min={low}", lambda: (lambda s: s if s == (low, low) else None)(
        pool_size(optapp, w, mainpid)), keepalive + 30, interval=1)

    sent = 2 * high
    results = [optapp.sleep.apply_async((6.0,), queue=w["queue"]) for _ in range(sent)]
    peak = (0, 0)
    with drained(results, 120):
        grown = wait_for(f"the pool to grow beyond min={low}", lambda: (lambda s: s if s[0] > low else None)(
            pool_size(optapp, w, mainpid)), 30, interval=0.5)
        peak = grown
        end = time.monotonic() + 60
        while not all(r.ready() for r in results) and time.monotonic() < end:
            size = pool_size(optapp, w, mainpid)
            peak = max(peak, size)
            time.sleep(0.5)
        runs = [r.get(timeout=5) for r in results]
    start_shrink = time.monotonic()
    shrunk = wait_for(f"the pool to shrink back to min={low} (keepalive {keepalive}s)",
                      lambda: (lambda s: s if s[0] == low and s[1] == low else None)(pool_size(optapp, w, mainpid)),
                      keepalive + 30, interval=1)
    pids = {r["pid"] for r in runs}
    report("autoscale", min=low, max=high, keepalive=keepalive, idle=idle, sent=sent,
           peak_children_current=peak, task_pids=len(pids), shrunk=shrunk,
           shrink_seconds=round(time.monotonic() - start_shrink, 1))
    assert low < peak[0] <= high, f"pool grew to {peak[0]} processes, expected between {low} and {high}"
    assert len(pids) > low, f"the {sent} tasks ran in only {len(pids)} processes"

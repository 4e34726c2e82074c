"""The fleet seen through the broker, as Flower shows it: every worker
answers, consumes exactly its queues with its pool size, and tasks land on
workers of the queue they were routed to."""

import collections
import time

import pytest

from fleet import WORKER_HOSTS, all_workers, cpus_of, resolve, setting

EXPECTED = {w["node"]: w for w in all_workers()}
TASKS_PER_QUEUE = 12
REPLY_DEADLINE = 30  # seconds: a reply lost or late in one broadcast is asked for again


def broadcast(inspect, method):
    """Replies of every node to one inspect method, asking again (bounded) until each answered.

    A node that should not be there makes the set differ on every round: the
    caller's equality check then fails with the last replies.
    """
    end = time.monotonic() + REPLY_DEADLINE
    while True:
        replies = getattr(inspect, method)() or {}
        if set(replies) == set(EXPECTED) or time.monotonic() >= end:
            return replies
        time.sleep(1)


def test_every_worker_answers_and_no_other(inspect):
    replies = broadcast(inspect, "ping")
    assert set(replies) == set(EXPECTED)
    assert all(reply == {"ok": "pong"} for reply in replies.values())


def test_each_worker_consumes_exactly_its_queues(inspect):
    active = broadcast(inspect, "active_queues")
    assert set(active) == set(EXPECTED)
    for node, queues in active.items():
        assert sorted(q["name"] for q in queues) == sorted(EXPECTED[node]["queues"]), node
        for q in queues:
            # Each queue is bound to a direct exchange of its name, routing key = queue.
            assert q["exchange"]["name"] == q["name"] and q["exchange"]["type"] == "direct", q
            assert q["routing_key"] == q["name"], q


def test_pool_size_is_the_configured_concurrency(inspect):
    stats = broadcast(inspect, "stats")
    assert set(stats) == set(EXPECTED)
    for node, data in stats.items():
        assert data["pool"]["max-concurrency"] == EXPECTED[node]["concurrency"], node
        assert len(data["pool"]["processes"]) == EXPECTED[node]["concurrency"], node
        if "max_tasks_per_child" in EXPECTED[node]:
            assert data["pool"]["max-tasks-per-child"] == EXPECTED[node]["max_tasks_per_child"], node


def test_a_relative_size_resolves_against_the_hosts_cpus(inspect):
    """A worker sized {per_cpu: ...} runs with per_cpu x `nproc` of its host (within min and max)."""
    relative = [(h, e) for h in WORKER_HOSTS for e in setting("celery_workers", h) if isinstance(e.get("concurrency"), dict)]
    assert relative, "the scenario must size a worker relative to the host's CPUs"
    stats = broadcast(inspect, "stats")
    for hostname, entry in relative:
        expected = resolve(entry["concurrency"], cpus_of(hostname))
        size = entry["concurrency"]
        print(f"{entry['name']}@{hostname}: {size} on {cpus_of(hostname)} CPUs -> {expected}")
        # Not what the role would use without the host's CPU count (its default or min).
        assert expected != int(size.get("min", 1)), "choose per_cpu so that the resolved size differs from min"
        pool = stats[f"{entry['name']}@{hostname}"]["pool"]
        assert pool["max-concurrency"] == expected and len(pool["processes"]) == expected, pool


def _consumers(queue):
    return {node for node, w in EXPECTED.items() if queue in w["queues"]}


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [("whoami", "default"), ("other_whoami", "other"), ("report", "reports")],
)
def test_tasks_run_on_a_worker_of_their_queue(celery_app, task_name, queue):
    task = getattr(celery_app, task_name)
    results = [task.delay() for _ in range(TASKS_PER_QUEUE)]
    ran = [r.get(timeout=30) for r in results]
    seen = collections.Counter(r["worker"] for r in ran)
    assert set(seen) <= _consumers(queue), (seen, _consumers(queue))
    assert all(r["queue"] == queue and r["exchange"] == queue for r in ran), ran


def test_explicit_queue_overrides_the_route(celery_app):
    """apply_async(queue=...) sends a default task to the `other` workers."""
    ran = celery_app.whoami.apply_async(queue="other").get(timeout=30)
    assert ran["worker"] in _consumers("other")
    assert ran["queue"] == "other" and ran["exchange"] == "other"

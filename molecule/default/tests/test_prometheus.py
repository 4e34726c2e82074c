"""The fleet's alerts, proven against a real Prometheus.

This scenario's prepare (molecule/default/prepare.yml) runs lab/prometheus.yml:
Debian's Prometheus on the broker host, with the rules of prometheus/alerts.yml
(every for: shortened to lab_prometheus_rule_for, group_vars/all.yml) and the
scrape jobs of prometheus/scrape.example.yml: celery_flower (this scenario's
Flower, /metrics) and rabbitmq (the broker's rabbitmq_prometheus endpoint,
per-queue series). Everything listens on 127.0.0.1 of the shared host network,
so the test reads Prometheus' HTTP API from the controller.

Faults, each on the real fleet, each wait bounded:

1. stop other@mol-worker1, whose queue `other` keeps a consumer
   (reports@mol-worker2): CeleryWorkerDown fires naming it, and no
   CeleryQueueNoConsumer for `other`;
2. stop reports@mol-worker2 too, the only consumer of `reports` (and now the
   last one of `other`), and send BACKLOG tasks to `reports`:
   CeleryQueueNoConsumer fires for both queues (never for `default`),
   CeleryWorkerDown for the second worker as well, CeleryQueueBacklogGrowing
   for `reports` only;
3. start both again: every one of these alerts resolves;
4. (the next test) a task that fails: CeleryTaskFailureRatioHigh fires for it,
   and resolves once it mostly succeeds; Flower stopped:
   CeleryFlowerMetricsAbsent; the broker's metrics plugin disabled:
   CeleryBrokerMetricsAbsent; each resolves when its fault is undone.

Each test prints the time from each fault to its alert firing and from its
undoing to resolution, and restores the fleet (workers running and answering,
Flower and the broker's metrics served) even when it fails.
"""

from __future__ import annotations

import datetime
import json
import re
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from fleet import (BROKER, FLOWER_HOSTS, FLOWER_UNIT, FLOWER_VARS, GROUP_VARS, HOST_VARS, PROJECT, all_workers,
                   consumers_of, fleet_answers, listeners, node, report, unit, wait_for)

PORT = int(GROUP_VARS["lab_prometheus_port"])
API = f"http://127.0.0.1:{PORT}/api/v1"
BROKER_METRICS_PORT = int(GROUP_VARS["lab_broker_prometheus_port"])
VHOST = GROUP_VARS["lab_broker_vhost"]
RULES = {r["alert"]: r for g in yaml.safe_load((PROJECT / "prometheus" / "alerts.yml").read_text())["groups"]
         for r in g["rules"] if "alert" in r}

WORKERS = {w["node"]: w for w in all_workers()}
WORK_QUEUES = sorted({q for w in WORKERS.values() for q in w["queues"]})
# Fault 1: a worker whose every queue has another consumer.
FIRST = "other@mol-worker1"
# Fault 2: the only consumer of a queue.
QUEUE = "reports"
SECOND = "reports@mol-worker2"
STOPPED = [FIRST, SECOND]
# Queues left without any consumer once both are stopped.
EMPTIED = sorted(q for q in WORK_QUEUES if all(w["node"] in STOPPED for w in consumers_of(q)))
# Tasks sent to QUEUE while it has no consumer: above the alert's threshold (100 ready).
BACKLOG = 150
# A task of the application no other test of this scenario runs, made to fail by its arguments
# (add("x", 1): TypeError); FAILURES runs of it fail, then SUCCESSES succeed. Sent to QUEUE, whose
# one consumer makes one series of each kind (a series' first sample is its baseline, not an increase).
FAILING_TASK = "celery_app.add"
FAILURES = 7
SUCCESSES = 120
BROKER_PLUGIN = "rabbitmq_prometheus"

HTTP_TIMEOUT = 10  # one API request
READY_TIMEOUT = 90  # targets up, every worker and queue in the metrics
SYSTEMCTL_TIMEOUT = 90  # one systemctl stop/start (the workers' stop timeout is 60 s)
POLL = 0.5  # the alerts are read this often


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", str(duration))
    assert match, duration
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


RULE_FOR = _seconds(GROUP_VARS["lab_prometheus_rule_for"])
# From a fault to firing: a scrape, an evaluation, for:, the next evaluation, and
# RabbitMQ's statistics interval (5 s) for the queue series; generously bounded.
FIRE_TIMEOUT = RULE_FOR + 10 * _seconds(GROUP_VARS["lab_prometheus_scrape_interval"]) + 40
# From `systemctl start` to resolution: the worker boots and says worker-online.
RESOLVE_TIMEOUT = 90


def _api(path: str, **params) -> dict | list:
    url = f"{API}/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def _query(expr: str) -> dict[tuple, float]:
    """An instant query: {tuple of sorted labels (without __name__): value}."""
    data = _api("query", query=expr)
    assert data["resultType"] == "vector", data
    return {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
            for r in data["result"]}


def _by(expr: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for labels, value in _query(expr).items() if label in dict(labels)}


# An alert as the test tracks it: (alertname, the label that names what is wrong, its value).
KEY_LABEL = {"CeleryWorkerDown": "worker", "CeleryQueueNoConsumer": "queue", "CeleryQueueBacklogGrowing": "queue",
             "CeleryTaskFailureRatioHigh": "task", "CeleryFlowerMetricsAbsent": "job", "CeleryBrokerMetricsAbsent": "job"}
assert set(KEY_LABEL) == set(RULES), "every alert of alerts.yml is faulted here"


def _active() -> dict[tuple[str, str], dict]:
    """Prometheus' active alerts (pending or firing), by (alertname, worker|queue|task|job)."""
    out = {}
    for alert in _api("alerts")["alerts"]:
        name = alert["labels"]["alertname"]
        if name in KEY_LABEL:
            out[(name, alert["labels"].get(KEY_LABEL[name], ""))] = alert
    return out


def _ours(active: dict) -> dict:
    """Only the alerts about this inventory's workers and work queues, the failing task and the two jobs."""
    about = {"CeleryWorkerDown": WORKERS, "CeleryQueueNoConsumer": WORK_QUEUES, "CeleryQueueBacklogGrowing": WORK_QUEUES,
             "CeleryTaskFailureRatioHigh": [FAILING_TASK], "CeleryFlowerMetricsAbsent": ["celery_flower"],
             "CeleryBrokerMetricsAbsent": ["rabbitmq"]}
    return {k: a for k, a in active.items() if k[1] in about[k[0]]}


def _active_at(alert: dict) -> float:
    """Prometheus' activeAt (when the alert became pending), as a time.time() value."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", alert["activeAt"]).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()


class Watch:
    """Polls the alerts; remembers for each key when it became pending (Prometheus' activeAt),
    when the test first saw it firing, and when it saw it gone (wall-clock times: the containers
    share the machine's clock)."""

    def __init__(self):
        self.pending: dict = {}
        self.firing: dict = {}
        self.gone: dict = {}
        self.last: dict = {}

    def poll(self) -> dict:
        active = _ours(_active())
        now = time.time()
        for key, alert in active.items():
            self.pending.setdefault(key, _active_at(alert))
            if alert["state"] == "firing":
                self.firing.setdefault(key, now)
            self.gone.pop(key, None)
        for key in set(self.last) - set(active):
            self.gone.setdefault(key, now)
        self.last = active
        return active

    def until(self, what: str, condition, timeout: float) -> dict:
        """Poll until condition(active alerts) holds; fail after timeout seconds."""
        end = time.monotonic() + timeout
        while True:
            active = self.poll()
            if condition(active):
                return active
            if time.monotonic() >= end:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; active alerts: "
                            f"{ {k: a['state'] for k, a in active.items()} }")
            time.sleep(POLL)


def _run_systemctl(verb: str, hostname: str, unit_name: str) -> None:
    """systemctl VERB a unit on a host, bounded."""
    node(hostname).run_expect([0], f"timeout {SYSTEMCTL_TIMEOUT} systemctl {verb} {unit_name}")


def _systemctl(verb: str, worker_node: str) -> float:
    """systemctl VERB the worker's unit on its host; returns how long it took."""
    w = WORKERS[worker_node]
    start = time.time()
    _run_systemctl(verb, w["host"], unit(w["name"]))
    return time.time() - start


def _firing(*keys):
    return lambda active: all(k in active and active[k]["state"] == "firing" for k in keys)


def _targets() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for target in _api("targets", state="active")["activeTargets"]:
        out.setdefault(target["labels"]["job"], []).append(target)
    return out


def test_the_faults_are_what_the_inventory_says():
    """The premises of the faults, from the inventory (host_vars): fail here if it changes."""
    assert WORKERS[FIRST]["queues"] == ["other"]
    assert all(len(consumers_of(q)) > 1 for q in WORKERS[FIRST]["queues"])
    assert [w["node"] for w in consumers_of(QUEUE)] == [SECOND]
    assert EMPTIED == ["other", "reports"] and "default" in WORK_QUEUES and "default" not in EMPTIED
    assert FLOWER_HOSTS == ["mol-worker1"] and not HOST_VARS["mol-worker1"].get("celery_flower_url_prefix")


@pytest.mark.deadline(120)
def test_prometheus_scrapes_flower_and_the_broker_with_the_fleet_rules():
    """Prometheus and the broker's endpoint listen on loopback only; both targets are up; the rules
    loaded are alerts.yml's (names, severities) with the scenario's for:; the series are per worker
    and per queue."""
    for port in (PORT, BROKER_METRICS_PORT):
        local = listeners(port)
        assert local and all(a.startswith("127.0.0.1:") for a in local), (port, local)

    rules = {r["name"]: r for g in _api("rules", type="alert")["groups"] for r in g["rules"]}
    assert set(rules) == set(RULES)
    for name, rule in rules.items():
        assert rule["duration"] == RULE_FOR, (name, rule["duration"])
        assert rule["labels"] == RULES[name]["labels"], name

    flower = f"http://{FLOWER_VARS['celery_flower_address']}:{FLOWER_VARS['celery_flower_port']}/metrics"
    broker = f"http://127.0.0.1:{BROKER_METRICS_PORT}/metrics"

    def ready():
        targets = _targets()
        urls = {job: [(t["scrapeUrl"], t["health"]) for t in ts] for job, ts in targets.items()}
        assert urls.keys() == {"celery_flower", "rabbitmq"}, urls
        assert [u for u, _ in urls["celery_flower"]] == [flower] and [u for u, _ in urls["rabbitmq"]] == [broker], urls
        return all(h == "up" for ts in urls.values() for _, h in ts)

    start = time.monotonic()
    wait_for("both targets up", ready, timeout=READY_TIMEOUT, interval=1)
    online = wait_for("flower_worker_online = 1 for every worker", lambda: (
        lambda seen: seen if all(seen.get(n) == 1 for n in WORKERS) else None)(_by("flower_worker_online", "worker")),
        timeout=READY_TIMEOUT, interval=1)
    consumers = wait_for("rabbitmq_queue_consumers of every work queue", lambda: (
        lambda seen: seen if all(seen.get(q) == len(consumers_of(q)) for q in WORK_QUEUES) else None)(
        _by(f'rabbitmq_queue_consumers{{vhost="{VHOST}"}}', "queue")), timeout=READY_TIMEOUT, interval=1)
    report("prometheus ready", after=f"{time.monotonic() - start:.1f}s", flower_worker_online=online,
           consumers={q: consumers[q] for q in WORK_QUEUES})


@pytest.mark.deadline(600)
def test_alerts_fire_on_faults_and_resolve(celery_app):
    watch = Watch()
    times: dict[str, float] = {}
    try:
        # Nothing about this fleet is alerting before the faults.
        watch.until("no alert about the fleet", lambda active: not active, READY_TIMEOUT)
        worker_down = {n: ("CeleryWorkerDown", n) for n in STOPPED}
        no_consumer = {q: ("CeleryQueueNoConsumer", q) for q in EMPTIED}
        backlog = ("CeleryQueueBacklogGrowing", QUEUE)

        # 1. A worker whose queue keeps another consumer.
        t_fault1 = time.time()
        times["stop 1"] = _systemctl("stop", FIRST)
        watch.until(f"CeleryWorkerDown firing for {FIRST}", _firing(worker_down[FIRST]), FIRE_TIMEOUT)
        # `other` still has a consumer (the metric says so), and no alert about it.
        wait_for("rabbitmq_queue_consumers{queue=other} = 1", lambda: _by(
            f'rabbitmq_queue_consumers{{vhost="{VHOST}", queue="other"}}', "queue").get("other") == 1, timeout=30)
        active = watch.poll()
        assert set(active) == {worker_down[FIRST]}, active
        alert = active[worker_down[FIRST]]
        assert alert["labels"]["job"] == "celery_flower" and alert["labels"]["severity"] == "warning", alert
        assert alert["annotations"]["summary"] == f"Celery worker {FIRST} is offline", alert

        # 2. The only consumer of QUEUE (and now the last one of `other`).
        t_fault2 = time.time()
        times["stop 2"] = _systemctl("stop", SECOND)
        send_start = time.monotonic()
        for _ in range(BACKLOG):
            celery_app.app.send_task("celery_app.noop", queue=QUEUE)
        times[f"send {BACKLOG} to {QUEUE}"] = time.monotonic() - send_start
        expected = [worker_down[SECOND], backlog] + list(no_consumer.values())
        active = watch.until(f"CeleryQueueNoConsumer firing for {EMPTIED}, CeleryWorkerDown for {SECOND}, "
                             f"CeleryQueueBacklogGrowing for {QUEUE}", _firing(*expected), FIRE_TIMEOUT)
        # No backlog alert for `other`, which has no consumer but no task either.
        assert set(active) == set(worker_down.values()) | set(no_consumer.values()) | {backlog}, active
        assert active[backlog]["labels"]["severity"] == RULES[backlog[0]]["labels"]["severity"], active[backlog]
        for queue, key in no_consumer.items():
            labels = active[key]["labels"]
            assert (labels["vhost"], labels["job"], labels["severity"]) == (VHOST, "rabbitmq", "critical"), labels
            assert active[key]["annotations"]["summary"] == f"Queue {queue} (vhost {VHOST}) has no consumer"

        # 3. Start both again: everything resolves.
        t_restart = time.time()
        for n in STOPPED:
            times[f"start {n}"] = _systemctl("start", n)
        watch.until("every alert about the fleet to resolve", lambda active: not active, RESOLVE_TIMEOUT)
    finally:
        restore_start = time.monotonic()
        for n in STOPPED:
            _systemctl("start", n)
        wait_for("every worker running and answering", lambda: fleet_answers(celery_app.app), timeout=90, interval=2)
        times["restore"] = time.monotonic() - restore_start

    def since(t0, key, table):
        return f"{table[key] - t0:.1f}s"

    lines = []
    for n in STOPPED:
        t0 = t_fault1 if n == FIRST else t_fault2
        lines.append(f"CeleryWorkerDown {n}: stop -> pending {since(t0, worker_down[n], watch.pending)}, "
                     f"-> firing {since(t0, worker_down[n], watch.firing)}; start -> resolved "
                     f"{since(t_restart, worker_down[n], watch.gone)}")
    for q in EMPTIED:
        lines.append(f"CeleryQueueNoConsumer {q}: stop of its last consumer -> pending "
                     f"{since(t_fault2, no_consumer[q], watch.pending)}, -> firing {since(t_fault2, no_consumer[q], watch.firing)}; "
                     f"start -> resolved {since(t_restart, no_consumer[q], watch.gone)}")
    lines.append(f"CeleryQueueBacklogGrowing {QUEUE}: stop of its last consumer and {BACKLOG} tasks sent -> pending "
                 f"{since(t_fault2, backlog, watch.pending)}, -> firing {since(t_fault2, backlog, watch.firing)}; "
                 f"start -> resolved {since(t_restart, backlog, watch.gone)}")
    print(f"\n  [prometheus alerts] for: {RULE_FOR:g}s, scrape/evaluation every "
          f"{GROUP_VARS['lab_prometheus_scrape_interval']}/{GROUP_VARS['lab_prometheus_evaluation_interval']}; "
          + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()) + "\n  " + "\n  ".join(lines), flush=True)
    for key in list(worker_down.values()) + list(no_consumer.values()) + [backlog]:
        _assert_timeline(watch, key, t_fault1 if key == worker_down[FIRST] else t_fault2, t_restart)


def _assert_timeline(watch: Watch, key: tuple[str, str], t_fault: float, t_undo: float) -> None:
    """Pending only after its fault, firing no earlier than for: after that, resolved only after the fault's undoing."""
    assert key in watch.firing and key in watch.gone, key
    assert t_fault - 1 <= watch.pending[key], (key, t_fault, watch.pending[key])
    assert watch.firing[key] >= watch.pending[key] + RULE_FOR, (key, watch.pending[key], watch.firing[key])
    assert watch.gone[key] >= t_undo, key


def _send_and_wait(app, n: int, args: tuple) -> None:
    """n runs of FAILING_TASK with args, waited for (a failure is what some of them are for)."""
    results = [app.send_task(FAILING_TASK, args=args, queue=QUEUE) for _ in range(n)]
    for result in results:
        result.get(timeout=60, propagate=False)


def _events(kind: str) -> float:
    """Prometheus' count of Flower's FAILING_TASK events of a kind (task-failed, task-succeeded) over the fleet."""
    return sum(_query(f'flower_events_total{{task="{FAILING_TASK}", type="{kind}"}}').values())


def _fault(watch: Watch, key: tuple[str, str], cause, undo, lines: list[str], what: str) -> None:
    """Cause a fault, wait for its alert to fire (and nothing else of ours), undo it, wait for resolution."""
    t_fault = time.time()
    cause()
    active = watch.until(f"{key[0]} firing for {key[1]}", _firing(key), FIRE_TIMEOUT)
    assert set(active) == {key}, active
    assert active[key]["labels"]["severity"] == RULES[key[0]]["labels"]["severity"], active[key]
    t_undo = time.time()
    undo()
    watch.until(f"{key[0]} to resolve", lambda active: key not in active, RESOLVE_TIMEOUT)
    lines.append(f"{key[0]} {key[1]}: {what} -> pending {watch.pending[key] - t_fault:.1f}s, "
                 f"-> firing {watch.firing[key] - t_fault:.1f}s; undone -> resolved {watch.gone[key] - t_undo:.1f}s")
    _assert_timeline(watch, key, t_fault, t_undo)


def _serving(*jobs: str) -> bool:
    """Every target of the jobs up (one request of the targets), and Flower, if one of them, seeing every worker online."""
    targets = _targets()
    return all(t["health"] == "up" for job in jobs for t in targets[job]) and (
        "celery_flower" not in jobs or all(_by("flower_worker_online", "worker").get(n) == 1 for n in WORKERS))


@pytest.mark.deadline(480)
def test_failures_and_missing_metrics_alert_and_resolve(celery_app):
    """A task that mostly fails; Flower stopped; the broker's metrics plugin disabled."""
    watch = Watch()
    lines: list[str] = []
    broker = node(BROKER)
    try:
        watch.until("no alert about the fleet", lambda active: not active, READY_TIMEOUT)

        # A new series' first sample is its baseline: one failure and one success first, seen by Prometheus.
        _send_and_wait(celery_app.app, 1, ("x", 1))
        _send_and_wait(celery_app.app, 1, (1, 1))
        wait_for(f"Prometheus sees {FAILING_TASK}'s first events",
                 lambda: _events("task-failed") >= 1 and _events("task-succeeded") >= 1, timeout=READY_TIMEOUT, interval=1)
        _fault(watch, ("CeleryTaskFailureRatioHigh", FAILING_TASK),
               lambda: _send_and_wait(celery_app.app, FAILURES, ("x", 1)),
               lambda: _send_and_wait(celery_app.app, SUCCESSES, (1, 1)),
               lines, f"{FAILURES} failed runs (then {SUCCESSES} successful ones)")

        _fault(watch, ("CeleryFlowerMetricsAbsent", "celery_flower"),
               lambda: _run_systemctl("stop", FLOWER_HOSTS[0], FLOWER_UNIT),
               lambda: _run_systemctl("start", FLOWER_HOSTS[0], FLOWER_UNIT),
               lines, f"systemctl stop {FLOWER_UNIT}")
        wait_for("Flower scraped with every worker online", lambda: _serving("celery_flower"), timeout=READY_TIMEOUT, interval=1)

        _fault(watch, ("CeleryBrokerMetricsAbsent", "rabbitmq"),
               lambda: broker.run_expect([0], f"rabbitmq-plugins disable {BROKER_PLUGIN}"),
               lambda: broker.run_expect([0], f"rabbitmq-plugins enable {BROKER_PLUGIN}"),
               lines, f"rabbitmq-plugins disable {BROKER_PLUGIN}")
    finally:
        node(FLOWER_HOSTS[0]).run(f"systemctl start {FLOWER_UNIT}")
        broker.run(f"rabbitmq-plugins enable {BROKER_PLUGIN}")
        wait_for("Flower and the broker's metrics scraped", lambda: _serving("celery_flower", "rabbitmq"),
                 timeout=READY_TIMEOUT, interval=1)
    print("\n  " + "\n  ".join(lines), flush=True)

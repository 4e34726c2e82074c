"""Counts what a playbook run did, for bench/run (not a stdout callback).

Writes JSON to $BENCH_COUNT_FILE at the end of the run:
  tasks     host-task results that ran (ok + changed + failed; skipped excluded),
            a loop counts once, as in the recap's ok=
  calls     module executions on the hosts: a loop counts once per item that ran
  changed   host-task results that changed (the recap's changed=)
  failed, skipped, unreachable
  per_host  the same per host
  health    each run of the role's health gate ("Wait for the workers to answer
            ..."): host, seconds (the command's delta) and its stdout
  drain     each run of the role's drain before a restart (2.x: "Drain NAME"):
            host, seconds and its stdout
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: bench_count
    type: aggregate
    short_description: count tasks, module calls and changes for bench/run
    description: Writes the counts as JSON to the file named by $BENCH_COUNT_FILE.
    requirements:
      - enabled in ANSIBLE_CALLBACKS_ENABLED
"""

KEYS = ("tasks", "calls", "changed", "failed", "skipped", "unreachable")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_count"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hosts = defaultdict(lambda: dict.fromkeys(KEYS, 0))
        self.health = []
        self.drain = []

    def _count(self, result, status):
        host = result._host.get_name()  # pylint: disable=protected-access
        res = result._result  # pylint: disable=protected-access
        c = self.hosts[host]
        if status == "skipped":
            c["skipped"] += 1
            return
        if status == "unreachable":
            c["unreachable"] += 1
            return
        c["tasks"] += 1
        items = res.get("results") if isinstance(res.get("results"), list) else None
        if items is not None and any(isinstance(i, dict) and "ansible_loop_var" in i for i in items):
            c["calls"] += sum(1 for i in items if isinstance(i, dict) and not i.get("skipped"))
        elif result._task.action not in ("ansible.builtin.set_fact", "set_fact", "ansible.builtin.assert", "assert",  # pylint: disable=protected-access
                                          "ansible.builtin.fail", "fail", "ansible.builtin.include_tasks", "include_tasks",
                                          "ansible.builtin.meta", "meta", "ansible.builtin.debug", "debug"):
            c["calls"] += 1
        name = result._task.get_name()  # pylint: disable=protected-access
        gate = name.endswith("Wait for the workers to answer and consume their queues")
        drain = name.split(" : ")[-1].startswith("Drain ")
        if (gate or drain) and "delta" in res:
            h, m, sec = res["delta"].split(":")
            (self.health if gate else self.drain).append({"host": host, "seconds": round(int(h) * 3600 + int(m) * 60 + float(sec), 3),
                                                          "rc": res.get("rc"), "stdout": res.get("stdout", "")})
        if res.get("changed"):
            c["changed"] += 1
        if status == "failed":
            c["failed"] += 1

    def v2_runner_on_ok(self, result):
        self._count(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._count(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._count(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("BENCH_COUNT_FILE")
        if not path:
            return
        total = dict.fromkeys(KEYS, 0)
        for c in self.hosts.values():
            for k in KEYS:
                total[k] += c[k]
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"total": total, "per_host": self.hosts, "health": self.health, "drain": self.drain}, handle, indent=1)

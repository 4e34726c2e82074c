"""What the units and the journal show: env, extra_args, celery_workers_unit_extra,
loglevel, TimeoutStopSec >= time_limit, and beat."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from conftest import (HOST_VARS, all_workers, journal_messages, main_pid, node, report, setting, unit_props,
                      wait_for, worker)

LEVEL_RE = re.compile(r": (DEBUG|INFO|WARNING|ERROR|CRITICAL)/")


def test_env(optapp):
    w = worker("env")
    name, expected = next(iter(w["env"].items()))
    run = optapp.getenv.apply_async((name,), queue=w["queue"]).get(timeout=30)
    other = optapp.getenv.apply_async((name,), queue=worker("solo")["queue"]).get(timeout=30)
    report("env", name=name, expected=repr(expected), seen=repr(run["value"]), seen_by_solo=repr(other["value"]))
    assert run["value"] == expected, f"{w['node']} sees {name}={run['value']!r}, expected {expected!r}"
    assert other["value"] is None, f"worker solo sees {name} too: env is not per worker"


def test_extra_args():
    w = worker("extra")
    (arg,) = [a for a in w["extra_args"] if a.startswith("--statedb=")]
    template = arg.split("=", 1)[1]
    expected = template.replace("%n", w["name"])  # Celery's %n: the node name without the host
    directory = expected.rsplit("/", 1)[0]
    host = node()
    cmdline = host.check_output(f"tr '\\0' '\\n' < /proc/{main_pid(w)}/cmdline")
    files = host.check_output(f"find {directory} -maxdepth 1 -type f -printf '%f %u\\n'").splitlines()
    report("extra_args", arg=arg, expected_prefix=expected, files_in_state_dir=files,
           in_cmdline=arg in cmdline.splitlines())
    assert arg in cmdline.splitlines(), f"the worker's command line lacks {arg!r}:\n{cmdline}"
    base = expected.rsplit("/", 1)[1]
    ours = [f for f in files if f.split()[0] == base or f.split()[0].startswith(base + ".")]
    assert ours, f"no state db {expected}[.*] in {directory}: {files}"
    assert all(f.split()[1] == setting("celery_workers_user") for f in ours), ours
    assert not [f for f in files if "%" in f or ".service" in f], f"a placeholder was not expanded by Celery: {files}"


def to_bytes(size: str) -> int:
    units = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
    match = re.fullmatch(r"(\d+)([KMGT]?)", size)
    assert match, f"unexpected size {size!r}"
    return int(match.group(1)) * units[match.group(2)]


def test_unit_extra():
    lines = setting("celery_workers_unit_extra")
    (line,) = [x for x in lines if x.startswith("MemoryMax=")]
    expected = to_bytes(line.split("=", 1)[1])
    seen = {w["name"]: unit_props(w["unit"], "MemoryMax")["MemoryMax"] for w in all_workers()}
    beat = unit_props("celery-beat.service", "MemoryMax")["MemoryMax"]
    directive = line.split("=", 1)[0]
    # Written once, in the template unit every worker is an instance of.
    written = node().check_output(f"grep -rh -- '{directive}=' /etc/systemd/system/celery-worker@* | sort | uniq -c")
    report("celery_workers_unit_extra", line=line, expected=expected, units=seen, beat_unit=beat,
           unit_files=written.strip())
    assert all(v == str(expected) for v in seen.values()), \
        f"MemoryMax of the worker units {seen}, expected {expected}; the unit files have:\n{written}"


def invocation_messages(w: dict) -> list[str]:
    """Everything the unit's current run (its InvocationID) logged."""
    invocation = unit_props(w["unit"], "InvocationID")["InvocationID"]
    assert invocation, f"{w['unit']} has no invocation"
    out = node().check_output(f"journalctl --no-pager -o json --output-fields=MESSAGE _SYSTEMD_INVOCATION_ID={invocation}")
    return [str(json.loads(x).get("MESSAGE", "")) for x in out.splitlines()]


@pytest.mark.deadline(60)
def test_loglevel_debug(optapp):
    w = worker("debuglog")
    assert w["loglevel"].lower() == "debug"
    marker = f"debug-marker-{uuid.uuid4().hex[:8]}"
    optapp.log.apply_async(("debug", marker), queue=w["queue"]).get(timeout=30)
    wait_for(f"{marker} in the journal of {w['unit']}", lambda: any(marker in m for m in invocation_messages(w)), 20)
    levels = sorted({m.group(1) for m in map(LEVEL_RE.search, invocation_messages(w)) if m})
    debug_lines = sum(1 for m in invocation_messages(w) if ": DEBUG/" in m)
    report("loglevel debug", levels=levels, debug_lines=debug_lines)
    assert debug_lines > 0


@pytest.mark.deadline(60)
def test_loglevel_warning(optapp):
    w = worker("quietlog")
    assert w["loglevel"].lower() == "warning"
    # The entry says debug; warning comes from celery_workers_overrides, which this proves applied.
    assert next(e for e in HOST_VARS["celery_workers"] if e["name"] == "quietlog")["loglevel"] == "debug"
    tag = uuid.uuid4().hex[:8]
    optapp.log.apply_async(("info", f"info-marker-{tag}"), queue=w["queue"]).get(timeout=30)
    optapp.log.apply_async(("warning", f"warning-marker-{tag}"), queue=w["queue"]).get(timeout=30)
    # The warning shows up: the journal is read at all; then the info line must be missing.
    wait_for("the warning marker in the journal", lambda: any(f"warning-marker-{tag}" in m for m in invocation_messages(w)), 20)
    messages = invocation_messages(w)
    levels = sorted({m.group(1) for m in map(LEVEL_RE.search, messages) if m})
    info = [m for m in messages if ": INFO/" in m or ": DEBUG/" in m or f"info-marker-{tag}" in m]
    report("loglevel warning", lines=len(messages), levels=levels, info_or_debug_lines=len(info))
    assert not info, f"{w['unit']} logged below WARNING: {info[:3]}"
    # For contrast: a worker at the default level logs INFO lines in the same journal.
    default = next(worker(e["name"]) for e in HOST_VARS["celery_workers"] if "loglevel" not in e)
    assert any(": INFO/" in m for m in invocation_messages(default)), f"{default['unit']} has no INFO line either"


def timespan_seconds(value: str) -> float:
    """systemd's time span ("40s", "1min 30s", "500ms") in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600, "d": 86400}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(us|ms|min|s|h|d)", value):
        total += float(number) * units[unit]
    assert total or value == "0", f"cannot read the time span {value!r}"
    return total


def test_stop_timeout_covers_time_limit():
    stop = int(setting("celery_workers_stop_timeout"))
    limited = [w for w in all_workers() if "time_limit" in w]
    assert limited and all(stop < int(w["time_limit"]) for w in limited), \
        "the scenario must set celery_workers_stop_timeout below a time_limit for this test to mean anything"
    seen = {w["name"]: unit_props(w["unit"], "TimeoutStopUSec")["TimeoutStopUSec"] for w in all_workers()}
    report("TimeoutStopSec", celery_workers_stop_timeout=stop,
           time_limits={w["name"]: w["time_limit"] for w in limited}, units=seen)
    for w in limited:
        assert timespan_seconds(seen[w["name"]]) >= int(w["time_limit"]), \
            f"{w['unit']}: TimeoutStopSec {seen[w['name']]} < time_limit {w['time_limit']}s: a stop kills a task inside its limit"
    for w in all_workers():
        if "time_limit" not in w:
            assert timespan_seconds(seen[w["name"]]) == stop, f"{w['unit']}: TimeoutStopSec {seen[w['name']]}, expected {stop}s"


@pytest.mark.deadline(90)
def test_beat():
    assert setting("celery_workers_beat_enabled") is True
    period = float(setting("celery_workers_environment")["OPTAPP_TICK_SECONDS"])
    queue = setting("celery_workers_environment")["OPTAPP_TICK_QUEUE"]
    (w,) = [x for x in all_workers() if queue in x["queues"]]
    since = time.time()
    ticks = wait_for(f"two runs of optapp.tick on {w['node']} (period {period}s)",
                     lambda: (lambda t: t if len(t) >= 2 else None)(
                         [m for m in journal_messages(w, since) if "optapp.tick ran on" in m]), 4 * period + 30, interval=1)
    beat = node().check_output(f"journalctl --no-pager -o cat -t celery-beat --since=@{since:.0f}")
    sent = [x for x in beat.splitlines() if "Sending due task tick (optapp.tick)" in x]
    report("beat", period=period, queue=queue, worker=w["node"], ticks=len(ticks), beat_sent=len(sent),
           seconds=round(time.time() - since, 1))
    assert sent, "celery-beat's journal does not show it sending the tick"
    assert all(w["node"] in t for t in ticks)

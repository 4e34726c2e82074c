"""Back to the scenario's inventory, one host at a time (serial: 1): the
workers added by the previous test (`extra`, healthy, enabled and running;
`broken` and `broken2`, enabled and crash-looping) are stopped, disabled and
deleted (a hand-written unit with the same prefix is left alone); the shared
environment file changes back, so every other worker of the host restarts
(new main process), one at a time (rolling); and the other host, which no
test reconfigured, has nothing to change."""

import time

import pytest

from conftest import (LEGACY_FORMAT, TARGET, WORKER_HOSTS, assert_rolling, celery_client, consumers_of, fleet_answers, node,
                      recap, restart_windows, run_playbook, unit_events, unit_props, wait_for, unit, workers_of)

# Named like a unit of 1.x, without the role's marker.
MANUAL_UNIT = LEGACY_FORMAT % "manual"
MANUAL_TEXT = """[Unit]
Description=Hand-written unit with the role's prefix, without its marker

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""


REMOVED = ["extra", "broken", "broken2"]


@pytest.mark.deadline(420)
def test_removed_worker_is_stopped_disabled_deleted_others_roll(tmp_path):
    (target,) = consumers_of("reports")
    hostname = target["host"]
    host = node(hostname)
    removed = {name: unit(name) for name in REMOVED}
    for unit_name in removed.values():
        assert host.file(f"/etc/systemd/system/{unit_name}.d/worker.conf").exists, f"test_4 should have left {unit_name} behind"
        assert host.file(f"/etc/systemd/system/{TARGET}.wants/{unit_name}").is_symlink, f"{unit_name} is not enabled"
    # `extra` is enabled, running and serving before its removal.
    before_extra = unit_props(hostname, removed["extra"], "ActiveState", "UnitFileState", "MainPID")
    assert before_extra["ActiveState"] == "active" and before_extra["UnitFileState"] == "enabled", before_extra
    assert host.run(f"kill -0 {before_extra['MainPID']}").rc == 0
    with celery_client() as client:
        wait_for("extra to answer", lambda: fleet_answers(client.app, [{"node": f"extra@{hostname}", "queues": ["extra"]}]),
                 timeout=30)
    pids = {w["name"]: unit_props(hostname, unit(w["name"]), "MainPID")["MainPID"] for w in workers_of(hostname)}
    host.check_output(f"cat > /etc/systemd/system/{MANUAL_UNIT} <<'EOF'\n{MANUAL_TEXT}EOF")
    try:
        host.check_output(f"systemctl daemon-reload && systemctl enable --now {MANUAL_UNIT}")
        since = time.time() - 1
        rc, output = run_playbook(tmp_path / "ansible.log", None, "-e", "celery_workers_serial=1", timeout=300)
        assert rc == 0, output[-4000:]
        assert output.count("PLAY [Provision Celery worker hosts]") == len(WORKER_HOSTS)  # one batch per host
        summary = recap(output)
        assert all(s["failed"] == 0 for s in summary.values()), summary
        assert all(summary[h]["changed"] == 0 for h in WORKER_HOSTS if h != hostname), summary

        # The removed workers: stopped, disabled, their drop-in and environment file deleted
        # (an instance of the template without its drop-in has no command: it cannot start).
        for name, unit_name in removed.items():
            assert unit_props(hostname, unit_name, "ActiveState", "UnitFileState", "DropInPaths") == {
                "ActiveState": "inactive", "UnitFileState": "disabled", "DropInPaths": ""}, unit_name
            assert not host.file(f"/etc/systemd/system/{TARGET}.wants/{unit_name}").exists, f"{unit_name} still enabled"
            assert not host.file(f"/etc/systemd/system/{unit_name}.d").exists
            assert not host.file(f"/etc/celery/worker-{name}.env").exists
            assert host.run(f"pgrep -f '[{name[0]}]{name[1:]}@'").rc != 0, name
        assert host.run(f"kill -0 {before_extra['MainPID']}").rc != 0, "extra's process survived"
        # Not the role's unit: untouched.
        assert unit_props(hostname, MANUAL_UNIT, "ActiveState", "UnitFileState") == {
            "ActiveState": "active", "UnitFileState": "enabled"}
    finally:
        host.run(f"systemctl disable --now {MANUAL_UNIT}; rm -f /etc/systemd/system/{MANUAL_UNIT};"
                 " systemctl daemon-reload")

    # The shared environment changed back: every worker of the host has a new main process.
    after = {w["name"]: unit_props(hostname, unit(w["name"]), "MainPID")["MainPID"] for w in workers_of(hostname)}
    assert all(after[n] not in ("0", pids[n]) for n in pids), (pids, after)
    # Rolling: each worker of the host was back and ready before the next one was stopped.
    windows = restart_windows([(hostname, w["unit"]) for w in workers_of(hostname)], since)
    assert_rolling(windows)
    # The other host had nothing to change.
    for other in WORKER_HOSTS:
        if other != hostname:
            for w in workers_of(other):
                assert unit_events(other, unit(w["name"]), since) == [], w["node"]
    with celery_client() as client:
        wait_for("every worker", lambda: fleet_answers(client.app), timeout=30)
    print(f"\nremoval: {sorted(removed.values())} stopped, disabled, deleted; {MANUAL_UNIT} kept; "
          f"rolling restart order on {hostname}: {[name for _, _, _, name in windows]}")


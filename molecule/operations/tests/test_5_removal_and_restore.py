"""Back to the scenario's inventory, one host at a time (serial: 1): the
worker added by the previous test is stopped, disabled and deleted (a
hand-written unit with the same prefix is left alone), the host's other
workers restart one at a time (rolling), and the other host, which no test
reconfigured, has nothing to change."""

import time

import pytest

from conftest import (UNIT_PREFIX, WORKER_HOSTS, celery_client, consumers_of, fleet_answers, node, recap,
                      run_playbook, unit_events, unit_props, wait_for, worker_unit, workers_of)

MANUAL_UNIT = f"{UNIT_PREFIX}manual.service"
MANUAL_TEXT = """[Unit]
Description=Hand-written unit with the role's prefix, without its marker

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""


@pytest.mark.deadline(420)
def test_removed_worker_is_stopped_disabled_deleted_others_roll(tmp_path):
    (target,) = consumers_of("reports")
    hostname = target["host"]
    host = node(hostname)
    removed = worker_unit("broken")
    assert host.file(f"/etc/systemd/system/{removed}").exists, "test_4 should have left `broken` behind"
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

        # The removed worker: stopped, disabled, its unit and environment file deleted.
        assert unit_props(hostname, removed, "LoadState", "ActiveState") == {
            "LoadState": "not-found", "ActiveState": "inactive"}
        assert not host.file(f"/etc/systemd/system/{removed}").exists
        assert not host.file("/etc/celery/worker-broken.env").exists
        assert host.run("pgrep -f '[b]roken@'").rc != 0
        # Not the role's unit: untouched.
        assert unit_props(hostname, MANUAL_UNIT, "ActiveState", "UnitFileState") == {
            "ActiveState": "active", "UnitFileState": "enabled"}
    finally:
        host.run(f"systemctl disable --now {MANUAL_UNIT}; rm -f /etc/systemd/system/{MANUAL_UNIT};"
                 " systemctl daemon-reload")

    # Rolling: each worker of the host was started again before the next one was stopped.
    windows = []
    for w in workers_of(hostname):
        events = unit_events(hostname, worker_unit(w["name"]), since)
        stopping = [ts for ts, word, _ in events if word == "Stopping"]
        started = [ts for ts, word, _ in events if word == "Started"]
        assert len(stopping) == 1 and len(started) == 1, (w["name"], events)
        windows.append((stopping[0], started[0], w["name"]))
    windows.sort()
    for (_, started, first), (stopping, _, second) in zip(windows, windows[1:]):
        assert stopping > started, f"{second} was stopped before {first} was back"
    # The other host had nothing to change.
    for other in WORKER_HOSTS:
        if other != hostname:
            for w in workers_of(other):
                assert unit_events(other, worker_unit(w["name"]), since) == [], w["node"]
    with celery_client() as client:
        wait_for("every worker", lambda: fleet_answers(client.app), timeout=30)
    print(f"\nremoval: {removed} stopped, disabled, deleted; {MANUAL_UNIT} kept; "
          f"rolling restart order on {hostname}: {[name for _, _, name in windows]}")


"""The fleet after converge: marked, enabled units with a warm-shutdown
budget from the inventory, beat on its one host with its schedule in the
state directory sending the app's heartbeat, acks_late defaults in the
application, every worker up."""

import pytest
import testinfra

from conftest import (BEAT_HOSTS, BEAT_SCHEDULE, BEAT_UNIT, GROUP_VARS, TARGET, WORKER_HOSTS,
                      all_workers, celery_client, fleet_answers, unit_props, wait_for, unit, workers_of)

MARKER = "X-Celery-Workers-Role=managed"


@pytest.fixture()
def worker_host(host):
    name = host.check_output("hostname")
    if name not in WORKER_HOSTS:
        pytest.skip(f"{name} is not a worker host")
    return name


def test_scenario_shape():
    """One beat host, and a worker that is the only consumer of its queue (the rolling test needs it)."""
    assert BEAT_HOSTS == ["ops-worker1"]
    assert [w["node"] for w in all_workers() if w["queues"] == ["reports"]] == ["reports@ops-worker2"]


def test_units_marked_enabled_active_with_warm_shutdown(host, worker_host):
    listed = host.check_output("ls -d /etc/systemd/system/celery-worker@*.service.d").split()
    assert sorted(listed) == sorted(f"/etc/systemd/system/{unit(w['name'])}.d" for w in workers_of(worker_host))
    assert sorted(host.check_output(f"systemctl show -P Wants {TARGET}").split()) == sorted(unit(w["name"]) for w in workers_of(worker_host))
    for w in workers_of(worker_host):
        unit_name = unit(w["name"])
        assert f"\n{MARKER}\n" in host.file(f"/etc/systemd/system/{unit_name}.d/worker.conf").content_string
        props = unit_props(worker_host, unit_name, "ActiveState", "UnitFileState", "TimeoutStopUSec",
                           "KillMode", "KillSignal", "Restart")
        assert props == {
            "ActiveState": "active",
            "UnitFileState": "enabled",
            # TimeoutStopSec comes from celery_workers_stop_timeout.
            "TimeoutStopUSec": f"{GROUP_VARS['celery_workers_stop_timeout']}s",
            # Warm shutdown: SIGTERM to the main process only.
            "KillMode": "mixed",
            "KillSignal": "15",
            "Restart": "always",
        }, unit_name


def test_beat_on_its_host_only(host, worker_host):
    beat_file = host.file(f"/etc/systemd/system/{BEAT_UNIT}")
    if worker_host not in BEAT_HOSTS:
        assert not beat_file.exists
        assert host.run("pgrep -f 'celery --app=[^ ]* [b]eat '").rc != 0
        return
    props = unit_props(worker_host, BEAT_UNIT, "ActiveState", "UnitFileState", "User", "ReadWritePaths",
                       "ProtectSystem")
    assert props == {"ActiveState": "active", "UnitFileState": "enabled", "User": "celery",
                     "ReadWritePaths": "/var/lib/celery/beat", "ProtectSystem": "strict"}
    # The schedule file is written by beat itself, in its writable state
    # directory (the dbm module may add a suffix such as .db).
    files = host.check_output(f"ls {BEAT_SCHEDULE}*").split()
    assert files, "no schedule file"
    assert all(host.file(f).user == "celery" for f in files), files
    assert host.file("/var/lib/celery/beat").mode == 0o750
    log = host.check_output("journalctl --no-pager -o cat -u celery-beat.service")
    assert "beat: Starting..." in log
    assert "Traceback" not in log
    # It schedules the app's heartbeat (every CELERY_HEARTBEAT_SECONDS of the
    # inventory) and a worker runs it.
    period = float(GROUP_VARS["celery_workers_environment"]["CELERY_HEARTBEAT_SECONDS"])
    wait_for("beat to send the heartbeat", lambda: "Sending due task heartbeat (celery_app.heartbeat)" in host.check_output(
        "journalctl --no-pager -o cat -u celery-beat.service"), timeout=3 * period + 10)
    wait_for("a worker to run the heartbeat", lambda: any(
        "celery_app.heartbeat worker=" in h.check_output("journalctl --no-pager -o cat -t celery-worker-default")
        for h in (testinfra.get_host(f"podman://{name}") for name in WORKER_HOSTS)), timeout=3 * period + 10)


def test_app_defaults_redeliver_the_task_of_a_killed_worker():
    with celery_client() as app:
        conf = app.app.conf
        assert conf.task_acks_late is True
        assert conf.task_reject_on_worker_lost is True
        assert conf.worker_prefetch_multiplier == 1


def test_every_worker_answers_with_its_queues():
    with celery_client() as app:
        wait_for("every worker to answer", lambda: fleet_answers(app.app), timeout=30)

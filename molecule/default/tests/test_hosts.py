"""What the role left on each worker host: user, files, units, processes."""

import pytest

from conftest import GROUP_VARS, broker_password, workers_of

UNIT_DIR = "/etc/systemd/system"
HARDENING = {
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictRealtime": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
    "User": "celery",
    "Group": "celery",
    "Type": "exec",
    "KillMode": "mixed",
    "KillSignal": "15",
    "Restart": "always",
    "ReadWritePaths": "/var/lib/celery",
}


def test_system_user(host, worker_host):
    user = host.user("celery")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert 0 < user.uid < 1000
    assert user.group == "celery"


def test_app_owned_by_root_not_writable_by_workers(host, worker_host):
    app = host.file("/opt/celery/app/celery_app.py")
    assert app.user == "root" and app.group == "celery" and app.mode == 0o640
    directory = host.file("/opt/celery/app")
    assert directory.user == "root" and directory.mode == 0o750
    # The worker user can read it but cannot write it nor the venv.
    assert host.run("runuser -u celery -- test -r /opt/celery/app/celery_app.py").rc == 0
    for path in ("/opt/celery/app/celery_app.py", "/opt/celery/app", "/opt/celery/venv/bin", "/etc/celery"):
        assert host.run(f"runuser -u celery -- test -w {path}").rc != 0, path


def test_venv_has_pinned_celery(host, worker_host):
    version = host.check_output("/opt/celery/venv/bin/celery --version")
    assert version.startswith("5.7.0"), version


def test_environment_file(host, worker_host):
    env = host.file("/etc/celery/celery.env")
    assert env.user == "root" and env.group == "celery" and env.mode == 0o640
    assert f'CELERY_BROKER_URL="amqps://celery:{broker_password()}@127.0.0.1:{GROUP_VARS["lab_broker_amqps_port"]}/' in env.content_string
    # Another user cannot read it. `runuser -u USER` runs its command without a
    # shell (-s is ignored), so the command here is setpriv, whose failure can
    # only come from the file: the control reads a world-readable file of the
    # same directory tree with the same identity.
    as_nobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups -- cat"
    control = host.run(f"{as_nobody} /etc/hostname")
    assert control.rc == 0 and control.stdout.strip() == host.check_output("hostname"), control
    denied = host.run(f"{as_nobody} /etc/celery/celery.env")
    assert denied.rc == 1 and "Permission denied" in denied.stderr, denied
    assert broker_password() not in denied.stdout


@pytest.fixture()
def workers(worker_host):
    return workers_of(worker_host)


def test_unit_files(host, workers):
    for w in workers:
        unit = host.file(f"{UNIT_DIR}/celery-worker-{w['name']}.service")
        assert unit.exists and unit.user == "root" and unit.mode == 0o644
        text = unit.content_string
        assert "\nType=exec\n" in text and "Type=forking" not in text
        assert f"-n {w['name']}@%%h" in text
        assert f"--queues={','.join(w['queues'])} " in text
        # The warm-shutdown budget, never below the hard time limit plus 30 s.
        stop = max(GROUP_VARS["celery_workers_stop_timeout"], w["time_limit"] + 30 if "time_limit" in w else 0)
        assert f"\nTimeoutStopSec={stop}\n" in text
        assert f"--concurrency={w['concurrency']}" in text
        assert f"SyslogIdentifier=celery-worker-{w['name']}" in text
        assert "X-Celery-Workers-Role=managed" in text
        assert broker_password() not in text
        assert "CELERY_BROKER_URL" not in text


def test_units_enabled_running_as_worker_user(host, workers):
    for w in workers:
        service = host.service(f"celery-worker-{w['name']}")
        assert service.is_enabled and service.is_running
        pid = int(host.check_output(f"systemctl show -P MainPID celery-worker-{w['name']}"))
        assert pid > 0
        user, args = host.check_output(f"ps -o user=,args= -p {pid}").split(None, 1)
        assert user == "celery"
        assert "celery" in args and " worker " in args and f"-n {w['name']}@%h" in args
        assert f"--queues={','.join(w['queues'])} " in args


def test_hardening_properties(host, workers):
    for w in workers:
        out = host.check_output(
            f"systemctl show celery-worker-{w['name']} -p " + " -p ".join(HARDENING))
        props = dict(line.split("=", 1) for line in out.splitlines())
        for key, value in HARDENING.items():
            assert props[key] == value, f"{w['name']}: {key}={props[key]!r}, expected {value!r}"


def test_per_worker_environment_reaches_the_process(host, workers):
    for w in workers:
        pid = host.check_output(f"systemctl show -P MainPID celery-worker-{w['name']}")
        environ = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
        env = dict(line.split("=", 1) for line in environ.splitlines() if "=" in line)
        assert env["CELERY_WORKER_NAME"] == w["name"]
        for key, value in w.get("env", {}).items():
            assert env[key] == str(value)


def test_secrets_not_in_process_list(host):
    assert broker_password() not in host.check_output("ps -eo args")


def test_journal_has_one_identifier_per_worker(host, workers):
    for w in workers:
        # The start-up banner names the node, whatever the log level.
        lines = host.check_output(f"journalctl -t celery-worker-{w['name']} --no-pager -o cat")
        assert f"-------------- {w['name']}@{host.check_output('hostname')} v" in lines
        for other in workers:
            if other["name"] != w["name"]:
                assert f"-------------- {other['name']}@" not in lines

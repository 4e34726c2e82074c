"""What the role left on each worker host: user, files, units, processes."""

import shlex

from fleet import GROUP_VARS, HARDENING_PROPS, TARGET, broker_password, unit, wait_for

UNIT_DIR = "/etc/systemd/system"
# What every worker unit runs as and how it stops, beside the sandbox (fleet.HARDENING_PROPS).
SERVICE = {
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


def test_unit_files(host, workers):
    """One template unit and the target; per worker a drop-in with its command line and stop timeout."""
    template = host.file(f"{UNIT_DIR}/celery-worker@.service")
    assert template.exists and template.user == "root" and template.mode == 0o644
    text = template.content_string
    assert "\nType=exec\n" in text and "Type=forking" not in text
    assert f"\nPartOf={TARGET}\n" in text and f"\nWantedBy={TARGET}\n" in text
    assert "\nExecStart=" not in text, "the command line is the drop-in's"
    assert host.file(f"{UNIT_DIR}/{TARGET}").exists
    for w in workers:
        dropin = host.file(f"{UNIT_DIR}/{unit(w['name'])}.d/worker.conf")
        assert dropin.exists and dropin.user == "root" and dropin.mode == 0o644
        text = dropin.content_string
        assert f"-n {w['name']}@%%h" in text
        assert f"--queues={','.join(w['queues'])} " in text
        # The warm-shutdown budget, never below the hard time limit plus 30 s.
        stop = max(GROUP_VARS["celery_workers_stop_timeout"], w["time_limit"] + 30 if "time_limit" in w else 0)
        assert f"\nTimeoutStopSec={stop}\n" in text
        assert f"--concurrency={w['concurrency']}" in text
        assert "X-Celery-Workers-Role=managed" in text
        assert ("EnvironmentFile=/etc/celery/worker-" in text) == ("env" in w)
        for t in (text, template.content_string):
            assert broker_password() not in t and "CELERY_BROKER_URL" not in t
    # What systemd made of them.
    for w in workers:
        props = dict(line.split("=", 1) for line in host.check_output(
            f"systemctl show {unit(w['name'])} -p SyslogIdentifier -p TimeoutStopUSec -p PartOf -p DropInPaths").splitlines())
        assert props["SyslogIdentifier"] == f"celery-worker-{w['name']}", props
        assert props["PartOf"] == TARGET and props["DropInPaths"].endswith(f"{unit(w['name'])}.d/worker.conf"), props


def test_units_enabled_running_as_worker_user(host, workers):
    # The target starts them at boot and acts on all of them.
    assert host.service(TARGET).is_enabled and host.service(TARGET).is_running
    wanted = host.check_output(f"systemctl show -P Wants {TARGET}").split()
    assert sorted(wanted) == sorted(unit(w["name"]) for w in workers)
    for w in workers:
        service = host.service(unit(w["name"]))
        assert service.is_enabled and service.is_running
        pid = int(host.check_output(f"systemctl show -P MainPID {unit(w['name'])}"))
        assert pid > 0
        user, args = host.check_output(f"ps -o user=,args= -p {pid}").split(None, 1)
        assert user == "celery"
        assert "celery" in args and " worker " in args and f"-n {w['name']}@%h" in args
        assert f"--queues={','.join(w['queues'])} " in args


def test_hardening_properties(host, workers):
    """The sandbox as systemd applies it: every directive of the role's one table, and the service settings."""
    expected = {**HARDENING_PROPS, **SERVICE}
    for w in workers:
        out = host.check_output(f"systemctl show {unit(w['name'])} " + " ".join(f"-p {k}" for k in expected))
        props = dict(line.split("=", 1) for line in out.splitlines())
        for key, value in expected.items():
            assert props[key] == value, f"{w['name']}: {key}={props[key]!r}, expected {value!r}"


def test_per_worker_environment_reaches_the_process(host, workers):
    for w in workers:
        pid = host.check_output(f"systemctl show -P MainPID {unit(w['name'])}")
        environ = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
        env = dict(line.split("=", 1) for line in environ.splitlines() if "=" in line)
        assert env["CELERY_WORKER_NAME"] == w["name"]
        for key, value in w.get("env", {}).items():
            assert env[key] == str(value)


def test_secrets_not_in_process_list(host, workers):
    listing = host.check_output("ps -eo args")
    # Control: the listing holds every worker's command line (so a password there would be seen).
    for w in workers:
        assert f"-n {w['name']}@%h" in listing, listing
    assert broker_password() not in listing
    # And a process with a secret-looking argument is listed by the same command.
    # (sh -c 'sleep 30; true' NAME: sleep refuses a second argument, and sh would exec a last command in place.)
    planted = host.check_output(f"setsid sh -c 'sleep 30; true' {shlex.quote('zz-canary-' + w['name'])} >/dev/null 2>&1 & echo $!")
    try:
        wait_for("the planted process to be listed", lambda: f"zz-canary-{w['name']}" in host.check_output("ps -eo args"), timeout=10)
    finally:
        host.run(f"kill {planted}")


def test_journal_has_one_identifier_per_worker(host, workers):
    for w in workers:
        # The start-up banner names the node, whatever the log level.
        lines = host.check_output(f"journalctl -t celery-worker-{w['name']} --no-pager -o cat")
        assert f"-------------- {w['name']}@{host.check_output('hostname')} v" in lines
        for other in workers:
            if other["name"] != w["name"]:
                assert f"-------------- {other['name']}@" not in lines

"""Secrets stay secret and the workers run with least privilege.

Beside test_hosts.py: the broker password is in no file another user can
read, in no journal line and in no Ansible output; no Celery process has any
root identity or capability; the role's files have exact modes and owners
and nothing the workers run is writable by them; the hardening of the units
is in force, and `systemd-analyze security` rates them low.
"""

from __future__ import annotations

import re

import pytest

from ansible_run import run_site
from conftest import broker_password, broker_url, workers_of

# Measured with systemd 252 (Debian bookworm) on the role's running units:
# 3.5 "OK". Removing any one directive of unit_hardening.j2 raises it by 0.1
# to 1.9 (CapabilityBoundingSet=), except ReadWritePaths= (removing it
# tightens) and AmbientCapabilities= (empty is the default). More hardening
# (SystemCallFilter=, RestrictAddressFamilies=, ProtectProc=, ...) lowers it:
# lower this bound with it.
MAX_EXPOSURE = 3.5

SEARCHED = "/etc /opt /var/lib/celery /run /tmp /var/tmp /var/log /srv /home /root"
EXTRA_HARDENING = {
    "UMask": "0027",
    "PrivateDevices": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "SystemCallArchitectures": "native",
    "AmbientCapabilities": "",
    "DynamicUser": "no",
}


@pytest.fixture()
def workers(worker_host):
    return workers_of(worker_host)


@pytest.fixture()
def units(workers):
    return [f"celery-worker-{w['name']}.service" for w in workers]


def test_password_in_no_file_another_user_can_read(host, worker_host):
    password = broker_password()
    # Control: root finds it where it belongs, so the search works.
    found = host.run(f"grep -rlF -- '{password}' /etc/celery").stdout.split()
    assert found == ["/etc/celery/celery.env"]
    # What an unprivileged user can actually read.
    leaked = host.run(f"runuser -u nobody -- grep -rlsF -- '{password}' {SEARCHED}").stdout.split()
    assert leaked == []


def test_password_in_no_file_with_the_other_read_bit(host, worker_host):
    # Stricter than the above: even behind a closed directory, no o+r file holds it.
    cmd = (f"find {SEARCHED} -xdev -type f -perm -o=r -size -20M -print0 2>/dev/null"
           f" | xargs -0 -r grep -lsF -- '{broker_password()}' || true")
    assert host.check_output(cmd) == ""


def test_password_not_in_the_journal(host, workers):
    out = host.run(f"journalctl --no-pager -o cat | grep -cF -- '{broker_password()}'")
    assert out.stdout.strip() == "0", "the broker password is in the journal"
    # Control: the workers log the broker URL, with the password masked by Celery.
    banner = host.check_output(f"journalctl --no-pager -o cat -t celery-worker-{workers[0]['name']} | grep -m1 'transport:'")
    assert "amqp://celery:**@" in banner, banner


def test_no_celery_process_has_a_root_identity(host, workers, units):
    lines = host.check_output("ps -eo ruid=,euid=,suid=,fsuid=,rgid=,egid=,unit=,pid=,args=").splitlines()
    in_units = [line.split(None, 8) for line in lines if any(f" {u} " in f" {line} " for u in units)]
    # Control: each worker's main process and its pool are there.
    for w, unit in zip(workers, units):
        count = sum(1 for fields in in_units if fields[6] == unit)
        assert count >= 1 + w["concurrency"], f"{unit}: {count} processes"
    for fields in in_units:
        assert "0" not in fields[:6], f"root identity in {fields}"
    for line in lines:
        fields = line.split(None, 8)
        if len(fields) == 9 and "/opt/celery/venv/bin/celery" in fields[8]:
            assert fields[1] != "0", f"celery runs as root: {line}"


def test_workers_have_no_capabilities_and_no_new_privileges(host, units):
    for unit in units:
        pid = host.check_output(f"systemctl show -P MainPID {unit}")
        assert pid != "0", unit
        status = dict(line.split(":", 1) for line in host.check_output(f"cat /proc/{pid}/status").splitlines() if ":" in line)
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[cap].strip(), 16) == 0, f"{unit}: {cap}={status[cap].strip()}"
        assert status["NoNewPrivs"].strip() == "1", unit
        assert "0" not in status["Uid"].split() and "0" not in status["Gid"].split(), (status["Uid"], status["Gid"])


def test_environment_files_exact_mode_and_owner(host, workers):
    directory = host.file("/etc/celery")
    assert (directory.user, directory.group, directory.mode) == ("root", "celery", 0o750)
    expected = {"celery.env"} | {f"worker-{w['name']}.env" for w in workers}
    # and the record of the last run (tasks/record.yml), root only
    assert set(host.check_output("ls -A /etc/celery").split()) == expected | {".celery_workers_state.json"}
    for name in expected:
        f = host.file(f"/etc/celery/{name}")
        assert (f.user, f.group, f.mode) == ("root", "celery", 0o640), name
        assert not f.is_symlink
    record = host.file("/etc/celery/.celery_workers_state.json")
    assert (record.user, record.group, record.mode) == ("root", "root", 0o600)
    assert not record.is_symlink


def test_code_and_config_owned_by_root_and_not_writable_by_the_workers(host, worker_host):
    assert host.check_output("find /opt/celery /etc/celery -xdev ! -user root -printf '%p\\n'") == ""
    assert host.check_output("find /opt/celery /etc/celery -xdev ! -type l -perm /o=w -printf '%p\\n'") == ""
    writable = host.check_output(
        "runuser -u celery -- find /opt/celery /etc/celery /etc/systemd/system -xdev -writable -printf '%p\\n' 2>/dev/null || true")
    assert writable == ""
    # Control: the same search finds the state directory, the workers' only writable path.
    assert host.check_output("runuser -u celery -- find /var/lib/celery -maxdepth 0 -writable") == "/var/lib/celery"
    for unit in host.check_output("ls /etc/systemd/system | grep '^celery-' || true").split():
        f = host.file(f"/etc/systemd/system/{unit}")
        assert (f.user, f.group, f.mode) == ("root", "root", 0o644), unit


def test_more_hardening_properties(host, units):
    for unit in units:
        out = host.check_output(f"systemctl show {unit} -p " + " -p ".join(EXTRA_HARDENING))
        props = dict(line.split("=", 1) for line in out.splitlines())
        for key, value in EXTRA_HARDENING.items():
            assert props[key] == value, f"{unit}: {key}={props[key]!r}, expected {value!r}"


def test_systemd_analyze_security_exposure_is_low(host, units):
    for unit in units:
        out = host.check_output(f"systemd-analyze security --no-pager {unit}")
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", out)
        assert match, out[-500:]
        score = float(match.group(1))
        print(f"{host.check_output('hostname')} {unit}: exposure {score} {match.group(2)}")
        assert score <= MAX_EXPOSURE, f"{unit}: exposure {score} > {MAX_EXPOSURE}\n" + "\n".join(
            line for line in out.splitlines() if line.startswith("✗"))


def test_ansible_output_never_shows_the_password():
    """Check mode, --diff, -vvv on both hosts; mol-worker1 gets another password so its env file would change."""
    canary = "CanaryBrokerPw42"
    proc = run_site(["--check", "--diff", "-vvv"],
                    host_vars={"mol-worker1": {"celery_workers_broker_url": broker_url().replace(broker_password(), canary)}})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    # Control: the file holding the password would change, so its diff path was taken.
    task = output.split("TASK [celery_workers : Write the shared environment file (broker URL)]", 1)[1].split("TASK [", 1)[0]
    assert "changed: [mol-worker1]" in task and "censored" in task, task
    assert broker_password() not in output
    assert canary not in output

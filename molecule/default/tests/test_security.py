"""Secrets stay secret and the workers run with least privilege.

Beside test_hosts.py: the broker password is in no file another user can
read, in no journal line and in no Ansible output; no Celery process has any
root identity or capability; the role's files have exact modes and owners
and nothing the workers run is writable by them; the hardening of the units
is in force, and `systemd-analyze security` rates them low.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid

import pytest

from fleet import broker_password, unit

# Measured with systemd 252 (Debian bookworm) on the role's running units:
# 3.5 "OK". Removing any one directive of unit_hardening.j2 raises it by 0.1
# to 1.9 (CapabilityBoundingSet=), except ReadWritePaths= (removing it
# tightens) and AmbientCapabilities= (empty is the default). More hardening
# (SystemCallFilter=, RestrictAddressFamilies=, ProtectProc=, ...) lowers it:
# lower this bound with it.
MAX_EXPOSURE = 3.5

SEARCHED = "/etc /opt /var/lib/celery /run /tmp /var/tmp /var/log /srv /home /root"


@pytest.fixture()
def units(workers):
    return [unit(w["name"]) for w in workers]


@contextlib.contextmanager
def planted(host, files: dict[str, str]):
    """Write a canary file per path (path -> "MODE" or "MODE OWNER"), its content a fresh
    random string; yields that string; removes the files (and directories it made)."""
    canary = f"canary-{uuid.uuid4().hex}"
    made = []
    try:
        for path, how in files.items():
            mode, _, owner = how.partition(" ")
            directory = path.rsplit("/", 1)[0]
            if not host.file(directory).exists:
                host.check_output(f"mkdir -m 0700 {directory}")
                made.append(directory)
            host.check_output(f"printf '%s\\n' {canary} > {path} && chmod {mode} {path}"
                              + (f" && chown {owner} {path}" if owner else ""))
            made.append(path)
        yield canary
    finally:
        for path in reversed(made):
            host.run(f"rm -f {path} 2>/dev/null || rmdir {path}")


def _readable_by_nobody(needle: str) -> str:
    return f"runuser -u nobody -- grep -rlsF -- '{needle}' {SEARCHED}"


def test_password_in_no_file_another_user_can_read(host, worker_host):
    password = broker_password()
    # Control: root finds it where it belongs.
    found = host.run(f"grep -rlF -- '{password}' /etc/celery").stdout.split()
    assert found == ["/etc/celery/celery.env"]
    # Control of the search itself: a canary in world-readable files under
    # several of the searched trees is found; one beside the password is not.
    readable = ["/etc/zz-canary-readable", "/opt/zz-canary-readable", "/var/log/zz-canary-readable",
                "/tmp/zz-canary-readable"]
    with planted(host, {**{f: "0644" for f in readable}, "/etc/celery/zz-canary-closed": "0640 root:celery"}) as canary:
        assert sorted(host.run(_readable_by_nobody(canary)).stdout.split()) == sorted(readable)
    # What an unprivileged user can actually read.
    leaked = host.run(_readable_by_nobody(password)).stdout.split()
    assert leaked == []


def _other_readable_holding(needle: str) -> str:
    return (f"find {SEARCHED} -xdev -type f -perm -o=r -size -20M -print0 2>/dev/null"
            f" | xargs -0 -r grep -lsF -- '{needle}' || true")


def test_password_in_no_file_with_the_other_read_bit(host, worker_host):
    # Stricter than the above: even behind a closed directory, no o+r file holds it.
    # Control: canaries with the o+r bit behind closed directories (root's home,
    # the config directory) are found, one without it is not.
    found_here = ["/root/zz-canary-dir/inside", "/etc/celery/zz-canary-other-read", "/var/lib/celery/zz-canary"]
    with planted(host, {**{f: "0644" for f in found_here}, "/etc/celery/zz-canary-no-other": "0640"}) as canary:
        assert sorted(host.check_output(_other_readable_holding(canary)).split()) == sorted(found_here)
    assert host.check_output(_other_readable_holding(broker_password())) == ""


def _journal_count(needle: str) -> str:
    return f"journalctl --no-pager -o cat | grep -cF -- '{needle}'"


def test_password_not_in_the_journal(host, workers):
    # Control: a canary logged through syslog is counted by the same search
    # (journald stores it asynchronously: bounded wait).
    canary = f"canary-{uuid.uuid4().hex}"
    host.check_output(f"logger -t zz-canary -- 'x {canary} y'")
    end = time.monotonic() + 20
    while host.run(_journal_count(canary)).stdout.strip() != "1":
        assert time.monotonic() < end, "the journal search does not find a logged canary"
        time.sleep(0.5)
    out = host.run(_journal_count(broker_password()))
    assert out.stdout.strip() == "0", "the broker password is in the journal"
    # Control: the workers log the broker URL (amqps: TLS), with the password masked by Celery.
    banner = host.check_output(f"journalctl --no-pager -o cat -t celery-worker-{workers[0]['name']} | grep -m1 'transport:'")
    assert "amqps://celery:**@" in banner, banner


def test_no_celery_process_has_a_root_identity(host, workers, units):
    lines = host.check_output("ps -eo ruid=,euid=,suid=,fsuid=,rgid=,egid=,unit=,pid=,args=").splitlines()
    in_units = [line.split(None, 8) for line in lines if any(f" {u} " in f" {line} " for u in units)]
    # Control: each worker's main process and its pool are there.
    for w, unit_name in zip(workers, units):
        count = sum(1 for fields in in_units if fields[6] == unit_name)
        assert count >= 1 + w["concurrency"], f"{unit_name}: {count} processes"
    for fields in in_units:
        assert "0" not in fields[:6], f"root identity in {fields}"
    for line in lines:
        fields = line.split(None, 8)
        if len(fields) == 9 and "/opt/celery/venv/bin/celery" in fields[8]:
            assert fields[1] != "0", f"celery runs as root: {line}"


def test_workers_have_no_capabilities_and_no_new_privileges(host, units):
    for unit_name in units:
        pid = host.check_output(f"systemctl show -P MainPID {unit_name}")
        assert pid != "0", unit_name
        status = dict(line.split(":", 1) for line in host.check_output(f"cat /proc/{pid}/status").splitlines() if ":" in line)
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[cap].strip(), 16) == 0, f"{unit_name}: {cap}={status[cap].strip()}"
        assert status["NoNewPrivs"].strip() == "1", unit_name
        assert "0" not in status["Uid"].split() and "0" not in status["Gid"].split(), (status["Uid"], status["Gid"])


def test_environment_files_exact_mode_and_owner(host, workers):
    directory = host.file("/etc/celery")
    assert (directory.user, directory.group, directory.mode) == ("root", "celery", 0o750)
    # A worker's own environment file exists only when its entry has env.
    expected = {"celery.env"} | {f"worker-{w['name']}.env" for w in workers if "env" in w}
    assert len(expected) < 1 + len(workers), "control: a worker without env must be in the scenario"
    # tls/: the broker's CA and the client certificate and key (test_tls.py checks them).
    assert set(host.check_output("ls -A /etc/celery").split()) == expected | {"tls"}
    for name in expected:
        f = host.file(f"/etc/celery/{name}")
        assert (f.user, f.group, f.mode) == ("root", "celery", 0o640), name
        assert not f.is_symlink
    # The role keeps no record of its last run (there was one, a root-only JSON file).
    assert not host.file("/etc/celery/.celery_workers_state.json").exists


NOT_ROOT_OWNED = "find /opt/celery /etc/celery -xdev ! -user root -printf '%p\\n'"
OTHER_WRITABLE = "find /opt/celery /etc/celery -xdev ! -type l -perm /o=w -printf '%p\\n'"
WORKER_WRITABLE = ("runuser -u celery -- find /opt/celery /etc/celery /etc/systemd/system -xdev -writable"
                   " -printf '%p\\n' 2>/dev/null || true")


def test_code_and_config_owned_by_root_and_not_writable_by_the_workers(host, worker_host):
    # Controls: a file of another owner, one writable by all, one writable by the
    # workers' group, planted in the searched trees, are each found by their search.
    with planted(host, {"/opt/celery/app/zz-canary-owner": "0640 nobody:celery",
                        "/etc/celery/zz-canary-o-w": "0666",
                        "/opt/celery/bin/zz-canary-g-w": "0660 root:celery"}):
        assert host.check_output(NOT_ROOT_OWNED).split() == ["/opt/celery/app/zz-canary-owner"]
        assert host.check_output(OTHER_WRITABLE).split() == ["/etc/celery/zz-canary-o-w"]
        assert sorted(host.check_output(WORKER_WRITABLE).split()) == [
            "/etc/celery/zz-canary-o-w", "/opt/celery/bin/zz-canary-g-w"]
    assert host.check_output(NOT_ROOT_OWNED) == ""
    assert host.check_output(OTHER_WRITABLE) == ""
    assert host.check_output(WORKER_WRITABLE) == ""
    # Control: the same search finds the state directory, the workers' only writable path.
    assert host.check_output("runuser -u celery -- find /var/lib/celery -maxdepth 0 -writable") == "/var/lib/celery"
    files = host.check_output("find /etc/systemd/system -path '*celery*' -type f").split()
    for path in files:
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o644), path
    # Control of that listing: the template unit and every drop-in are in it.
    assert "/etc/systemd/system/celery-worker@.service" in files
    assert len([f for f in files if f.endswith("/worker.conf")]) == len(host.check_output(
        "systemctl show -P Wants celery-workers.target").split())


def test_systemd_analyze_security_exposure_is_low(host, units):
    for unit_name in units:
        out = host.check_output(f"systemd-analyze security --no-pager {unit_name}")
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", out)
        assert match, out[-500:]
        score = float(match.group(1))
        print(f"{host.check_output('hostname')} {unit_name}: exposure {score} {match.group(2)}")
        assert score <= MAX_EXPOSURE, f"{unit_name}: exposure {score} > {MAX_EXPOSURE}\n" + "\n".join(
            line for line in out.splitlines() if line.startswith("✗"))

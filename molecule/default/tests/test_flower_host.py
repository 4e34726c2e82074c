"""Flower's unit on its host: least privilege, secrets only in the 0640
environment file, pinned versions, the hardening in force.

Runs on every host of the scenario; hosts outside group celery_flower only
check that nothing of Flower is there.
"""

from __future__ import annotations

import re

import pytest
import yaml

from fleet import FLOWER_HOSTS, FLOWER_UNIT, HARDENING_PROPS, NAME, PROJECT, ROLE_DEFAULTS, broker_password
FLOWER_DEFAULTS = yaml.safe_load((PROJECT / "roles" / "celery_flower" / "defaults" / "main.yml").read_text())
UNIT = FLOWER_UNIT
ENV_FILE = "/etc/celery-flower/flower.env"
STATE_DIR = "/var/lib/celery-flower"
SEARCHED = "/etc /opt /var/lib /run /tmp /var/tmp /var/log /srv /home /root"
# Measured with systemd 252 (Debian bookworm): 1.4 "OK" (the workers' units: 3.5);
# SystemCallFilter=, RestrictAddressFamilies= and MemoryDenyWriteExecute= make the difference.
MAX_EXPOSURE = 1.5
# The sandbox of every unit of both roles (fleet.HARDENING_PROPS), and Flower's tighter one
# (roles/celery_flower/templates/unit_hardening.j2).
HARDENING = {
    **HARDENING_PROPS,
    "Type": "exec",
    "User": "celery",
    "Group": "celery",
    "MemoryDenyWriteExecute": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "ReadWritePaths": STATE_DIR,
}


def _flower_password() -> str:
    return (PROJECT / ".lab" / f"{NAME}_flower_password").read_text().split()[0]


@pytest.fixture()
def flower_host(host):
    name = host.check_output("hostname")
    if name not in FLOWER_HOSTS:
        pytest.skip(f"{name} does not run Flower")
    return name


def test_no_flower_outside_its_group(host):
    if host.check_output("hostname") in FLOWER_HOSTS:
        pytest.skip("runs Flower")
    assert not host.file(f"/etc/systemd/system/{UNIT}").exists
    assert not host.file("/opt/celery-flower").exists


def test_unit_enabled_active_and_hardened(host, flower_host):
    svc = host.service(UNIT)
    assert svc.is_enabled and svc.is_running
    out = host.check_output(f"systemctl show {UNIT} -p " + " -p ".join(HARDENING))
    props = dict(line.split("=", 1) for line in out.splitlines())
    for key, value in HARDENING.items():
        assert props[key] == value, f"{key}={props[key]!r}, expected {value!r}"


def test_main_process_is_flower_as_the_unprivileged_user(host, flower_host):
    pid = host.check_output(f"systemctl show -P MainPID {UNIT}")
    assert pid != "0"
    ids = host.check_output(f"ps -o ruid=,euid=,suid=,fsuid=,args= -p {pid}").split(None, 4)
    uid = host.check_output("id -u celery")
    assert ids[:4] == [uid] * 4, ids
    assert ids[4].startswith("/opt/celery-flower/venv/bin/python") and " flower " in f" {ids[4]} ", ids[4]
    status = host.check_output(f"grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/{pid}/status")
    assert re.search(r"CapEff:\s+0+\b", status) and re.search(r"CapPrm:\s+0+\b", status), status
    assert re.search(r"NoNewPrivs:\s+1", status), status


def test_secrets_reach_flower_through_the_environment_only(host, flower_host):
    pid = host.check_output(f"systemctl show -P MainPID {UNIT}")
    args = host.check_output(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    for secret in (_flower_password(), broker_password()):
        assert secret not in args
        assert secret not in host.check_output("ps -eo args")
        assert secret not in host.file(f"/etc/systemd/system/{UNIT}").content_string
        assert secret not in host.check_output(f"systemctl show {UNIT}")
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    env = dict(line.split("=", 1) for line in environ.splitlines() if "=" in line)
    assert env["FLOWER_BASIC_AUTH"] == f"flower:{_flower_password()}"
    assert f":{broker_password()}@" in env["CELERY_BROKER_URL"]
    assert env["FLOWER_BROKER_API"].startswith("http://celery:") and env["FLOWER_BROKER_API"].endswith("/api/")


def test_environment_file_exact_mode_and_owner(host, flower_host):
    directory = host.file("/etc/celery-flower")
    assert (directory.user, directory.group, directory.mode) == ("root", "celery", 0o750)
    assert host.check_output("ls -A /etc/celery-flower").split() == ["flower.env", "tls"]
    f = host.file(ENV_FILE)
    assert (f.user, f.group, f.mode) == ("root", "celery", 0o640)
    assert not f.is_symlink
    names = [line.split("=", 1)[0] for line in f.content_string.splitlines() if line and not line.startswith("#")]
    assert names == ["CELERY_BROKER_URL", "CELERY_BROKER_TLS_CA", "CELERY_BROKER_TLS_CERT", "CELERY_BROKER_TLS_KEY",
                     "CELERY_BROKER_TLS_SERVER_NAME", "CELERY_BROKER_TLS_VERIFY", "FLOWER_BASIC_AUTH", "FLOWER_BROKER_API"]


def test_passwords_in_no_file_another_user_can_read(host, flower_host):
    for secret in (_flower_password(), broker_password()):
        # Control: root finds the Flower password where it belongs, so the search works.
        if secret == _flower_password():
            assert host.check_output(f"grep -rlF -- '{secret}' /etc /opt /var/lib") == ENV_FILE
        assert host.run(f"runuser -u nobody -- grep -rlsF -- '{secret}' {SEARCHED}").stdout.split() == []
        cmd = (f"find {SEARCHED} -xdev -type f -perm -o=r -size -20M -print0 2>/dev/null"
               f" | xargs -0 -r grep -lsF -- '{secret}' || true")
        assert host.check_output(cmd) == ""


def test_passwords_not_in_the_journal(host, flower_host):
    for secret in (_flower_password(), broker_password()):
        assert host.run(f"journalctl --no-pager -o cat | grep -cF -- '{secret}'").stdout.strip() == "0"
    # Control: Flower logged its broker (amqps: TLS), with the password masked.
    assert "Broker: amqps://celery:**@" in host.check_output("journalctl --no-pager -o cat -t celery-flower")


def test_venv_has_pinned_flower_and_the_workers_celery(host, flower_host):
    freeze = host.check_output("/opt/celery-flower/venv/bin/python -m pip freeze --disable-pip-version-check").splitlines()
    assert f"flower=={FLOWER_DEFAULTS['celery_flower_version']}" in freeze
    assert f"celery=={ROLE_DEFAULTS['celery_workers_celery_version']}" in freeze


def test_flower_writes_only_its_state_directory(host, flower_host):
    assert host.check_output("find /opt/celery-flower /etc/celery-flower -xdev ! -user root -printf '%p\\n'") == ""
    writable = host.check_output(
        "runuser -u celery -- find /opt/celery-flower /etc/celery-flower -xdev -writable -printf '%p\\n' 2>/dev/null || true")
    assert writable == ""
    state = host.file(STATE_DIR)
    assert (state.user, state.group, state.mode) == ("celery", "celery", 0o750)
    # Persistent mode (the scenario's group_vars): Flower saved its state there.
    assert host.check_output(f"ls {STATE_DIR}").startswith("flower.db")
    # In the unit's mount namespace the rest of the file system is read-only (ProtectSystem=strict
    # really applies in this container) and the state directory read-write.
    pid = host.check_output(f"systemctl show -P MainPID {UNIT}")
    flower_mounts = _mounts(host, pid)
    for path in ["/opt/celery-flower/venv", "/etc/celery-flower", "/etc/systemd/system", "/usr/local", "/var/lib/celery"]:
        assert _mount_of(flower_mounts, path)[1] == "ro", (path, _mount_of(flower_mounts, path))
    assert _mount_of(flower_mounts, STATE_DIR) == (STATE_DIR, "rw")
    # Control: outside the sandbox the same paths are writable.
    assert _mount_of(_mounts(host, "1"), "/opt/celery-flower/venv")[1] == "rw"


def _mounts(host, pid: str) -> dict[str, str]:
    """Mount point -> ro or rw, from /proc/PID/mountinfo (the last mount on a point wins)."""
    out = {}
    for line in host.check_output(f"cat /proc/{pid}/mountinfo").splitlines():
        fields = line.split()
        out[fields[4]] = fields[5].split(",")[0]
    return out


def _mount_of(mounts: dict[str, str], path: str) -> tuple[str, str]:
    """The mount that holds path: (mount point, ro/rw)."""
    point = max((m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")), key=len)
    return point, mounts[point]


def test_systemd_analyze_security_exposure_is_low(host, flower_host):
    out = host.check_output(f"systemd-analyze security --no-pager {UNIT}")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", out)
    assert match, out[-500:]
    score = float(match.group(1))
    print(f"{UNIT}: exposure {score} {match.group(2)}")
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}\n" + "\n".join(
        line for line in out.splitlines() if line.startswith("✗"))

"""plugins/filter/celery_fleet.py, called directly (what the preflight and
render tests cannot show through a playbook run).

* systemd_env_quote: every value comes back exactly when the line is read
  the way systemd reads a double-quoted EnvironmentFile= value, for every
  printable ASCII character and the values the roles' tests use. systemd
  (src/basic/env-file.c) reads double quotes as a POSIX shell does: a
  backslash before one of \\ " $ ` gives that character, before any other
  it stays. So the quoted value is read back twice: by a reader written
  from that rule, and by /bin/sh itself.
* systemd_unit_hardening: ReadWritePaths= only with a path, right after
  ProtectSystem=, and every directive it writes is one that
  celery_workers_unit_extra may not change.
* The rule constants the roles share.
"""

from __future__ import annotations

import string
import subprocess

import pytest

from preflight_harness import celery_fleet

CF = celery_fleet()

VALUES = [
    "",
    "plain",
    "with space",
    'say "hi"',
    "$HOME ${HOME} $$",
    "`id` $(id)",
    "back\\slash",
    "ends\\",
    "\\",
    '\\"',
    "\\$x \\`y",
    "50% ; # not a comment",
    "'single'",
    "amqp://u:p%40ss$w\"rd`x`\\@mq:5672/v",
    string.printable.strip("\t\n\r\x0b\x0c"),
    "é ünïcode ✓",
]


def _read_back(quoted: str) -> str:
    """The value systemd reads from KEY=<quoted>: the rule of env-file.c, checked against /bin/sh."""
    assert quoted[0] == '"' and quoted[-1] == '"', quoted
    body, value, i = quoted[1:-1], [], 0
    while i < len(body):
        char = body[i]
        assert char != '"', f"unescaped quote in {quoted!r}"
        if char == "\\" and i + 1 < len(body) and body[i + 1] in '\\"$`':
            char, i = body[i + 1], i + 1
        else:
            assert char not in "$`", f"unescaped {char} in {quoted!r}"
            assert char != "\\", f"lone backslash in {quoted!r}"
        value.append(char)
        i += 1
    shell = subprocess.run(["sh", "-c", f"printf '%s' {quoted}"], capture_output=True, text=True, check=True).stdout
    assert shell == "".join(value), (quoted, shell)
    return shell


@pytest.mark.parametrize("value", VALUES)
def test_env_quote_round_trip(value):
    quoted = CF.systemd_env_quote(value)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert _read_back(quoted) == value


@pytest.mark.parametrize("char", [chr(c) for c in range(0x20, 0x7f)])
def test_env_quote_round_trip_every_printable_character(char):
    value = f"a{char}b{char}"
    assert _read_back(CF.systemd_env_quote(value)) == value


def test_env_quote_numbers_and_booleans_as_jinja_string_shows_them():
    assert CF.systemd_env_quote(42) == '"42"'
    assert CF.systemd_env_quote(True) == '"True"'


def test_env_quote_leaves_no_unescaped_special_character():
    body = CF.systemd_env_quote('a"b$c`d\\e')[1:-1]
    assert body == 'a\\"b\\$c\\`d\\\\e'


def test_hardening_with_and_without_a_writable_path():
    with_path = CF.systemd_unit_hardening("/var/lib/celery").splitlines()
    without = CF.systemd_unit_hardening("").splitlines()
    assert with_path[with_path.index("ProtectSystem=strict") + 1] == "ReadWritePaths=/var/lib/celery"
    assert [line for line in with_path if not line.startswith("ReadWritePaths=")] == without
    assert not any(line.startswith("ReadWritePaths=") for line in without)
    assert without[0] == "UMask=0027" and without[-1] == "SystemCallArchitectures=native"


def test_unit_extra_cannot_change_a_hardening_directive():
    directives = [line.split("=")[0] for line in CF.systemd_unit_hardening("/x").splitlines()]
    assert set(directives) <= set(CF.LOCKED_DIRECTIVES)
    for directive in directives:
        errors = CF.celery_fleet_workers_errors(_workers_vars(celery_workers_unit_extra=[f"{directive}=no"]), [])
        assert errors == [f"celery_workers_unit_extra[0]: {directive}= is set by the role (user, command or hardening) and cannot be changed here"]


def test_both_roles_refuse_the_same_system_directories():
    # One list by construction: a directory refused for one role is refused for the other.
    for directory in ["/var/run", "/run", "/etc", "/opt"]:
        workers = CF.celery_fleet_workers_errors(_workers_vars(celery_workers_state_dir=directory), [])
        flower = CF.celery_fleet_flower_errors(_flower_vars(celery_flower_state_dir=directory))
        assert workers == [f"celery_workers_state_dir: '{directory}' is a system directory; use a directory of its own such as /opt/celery"]
        assert flower == [f"celery_flower_state_dir: '{directory}' is a system directory; use a directory of its own such as /opt/celery-flower"]


def test_valid_variables_give_no_error():
    assert CF.celery_fleet_workers_errors(_workers_vars(), []) == []
    assert CF.celery_fleet_flower_errors(_flower_vars()) == []


def test_beat_on_more_than_one_host():
    errors = CF.celery_fleet_workers_errors(_workers_vars(celery_workers_beat_enabled=True), ["a", "b"])
    assert errors == ["celery_workers_beat_enabled: true on 2 hosts of this play (a, b): enable beat on one host only"]
    # Only a host that runs beat itself reports it.
    assert CF.celery_fleet_workers_errors(_workers_vars(), ["a", "b"]) == []


def _workers_vars(**overrides):
    return {
        "celery_workers": [{"name": "default", "queues": ["default"]}],
        "celery_workers_broker_url": "amqp://u:p@mq/v",
        "celery_workers_result_backend": "",
        "celery_workers_user": "celery",
        "celery_workers_group": "celery",
        "celery_workers_base_dir": "/opt/celery",
        "celery_workers_config_dir": "/etc/celery",
        "celery_workers_state_dir": "/var/lib/celery",
        "celery_workers_python": "/usr/bin/python3",
        "celery_workers_app_module": "celery_app:app",
        "celery_workers_celery_version": "5.5.3",
        "celery_workers_pip_packages": [],
        "celery_workers_pip_environment": {},
        "celery_workers_environment": {},
        "celery_workers_unit_extra": [],
        "celery_workers_stop_timeout": 600,
        "celery_workers_restart_sec": 5,
        "celery_workers_health_timeout": 60,
        "celery_workers_concurrency": 2,
        "celery_workers_loglevel": "info",
        "celery_workers_beat_loglevel": "info",
        "celery_workers_pool": "prefork",
        "celery_workers_restart_strategy": "rolling",
        "celery_workers_install_os_packages": True,
        "celery_workers_health_check": True,
        "celery_workers_remove_absent": True,
        "celery_workers_beat_enabled": False,
        **overrides,
    }


def _flower_vars(**overrides):
    return {
        "celery_flower_allow_unauthenticated": False,
        "celery_flower_persistent": False,
        "celery_flower_install_os_packages": True,
        "celery_flower_address": "127.0.0.1",
        "celery_flower_port": 5555,
        "celery_flower_basic_auth": [{"user": "ops", "password": "secret-password"}],
        "celery_flower_broker_url": "amqp://u:p@mq/v",
        "celery_flower_broker_api": "",
        "celery_flower_max_tasks": 10000,
        "celery_flower_restart_sec": 5,
        "celery_flower_health_timeout": 60,
        "celery_flower_state_save_interval": 0,
        "celery_flower_purge_offline_workers": 0,
        "celery_flower_url_prefix": "",
        "celery_flower_loglevel": "info",
        "celery_flower_environment": {},
        "celery_flower_version": "2.0.1",
        "celery_flower_celery_version": "5.5.3",
        "celery_flower_pip_packages": [],
        "celery_flower_pip_environment": {},
        "celery_flower_user": "celery",
        "celery_flower_group": "celery",
        "celery_flower_base_dir": "/opt/celery-flower",
        "celery_flower_config_dir": "/etc/celery-flower",
        "celery_flower_state_dir": "/var/lib/celery-flower",
        "celery_flower_python": "/usr/bin/python3",
        **overrides,
    }

"""The collection's filters (plugins/filter/*.py, one filter per file, shared
code in plugins/plugin_utils/), called directly: what the preflight and
render tests cannot show through a playbook run. Each filter is imported by
its collection name, as Ansible loads it.

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
* systemd_unit_states: `systemctl show` output of several units.
* celery_fleet_workers_argspec: each of a host's entries, overrides applied,
  checked against the spec of an entry with a message naming it.
* The rules the roles share (the same system directories for both).
* Sizing: relative sizes resolved against a CPU count, per-host overrides,
  the memory fit of a host's plan and the queue coverage of a fleet (the
  messages of the bad cases are checked end to end in test_preflight.py).
"""

from __future__ import annotations

import string
import subprocess

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from preflight_harness import filters, plugin_util, role_defaults, spec_options

F = filters()
SYSTEMD = plugin_util("_systemd")

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
    quoted = F["systemd_env_quote"](value)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert _read_back(quoted) == value


@pytest.mark.parametrize("char", [chr(c) for c in range(0x20, 0x7f)])
def test_env_quote_round_trip_every_printable_character(char):
    value = f"a{char}b{char}"
    assert _read_back(F["systemd_env_quote"](value)) == value


def test_env_quote_numbers_and_booleans_as_jinja_string_shows_them():
    assert F["systemd_env_quote"](42) == '"42"'
    assert F["systemd_env_quote"](True) == '"True"'


def test_env_quote_leaves_no_unescaped_special_character():
    body = F["systemd_env_quote"]('a"b$c`d\\e')[1:-1]
    assert body == 'a\\"b\\$c\\`d\\\\e'


def test_hardening_with_and_without_a_writable_path():
    with_path = F["systemd_unit_hardening"]("/var/lib/celery").splitlines()
    without = F["systemd_unit_hardening"]("").splitlines()
    assert with_path[with_path.index("ProtectSystem=strict") + 1] == "ReadWritePaths=/var/lib/celery"
    assert [line for line in with_path if not line.startswith("ReadWritePaths=")] == without
    assert not any(line.startswith("ReadWritePaths=") for line in without)
    assert without[0] == "UMask=0027" and without[-1] == "SystemCallArchitectures=native"


def test_unit_extra_cannot_change_a_hardening_directive():
    directives = [line.split("=")[0] for line in F["systemd_unit_hardening"]("/x").splitlines()]
    assert set(directives) <= set(SYSTEMD.LOCKED_DIRECTIVES)
    for directive in directives:
        errors = F["celery_fleet_workers_errors"](_workers_vars(celery_workers_unit_extra=[f"{directive}=no"]), [])
        assert errors == [f"celery_workers_unit_extra[0]: {directive}= is set by the role (user, command or hardening) and cannot be changed here"]


def test_both_roles_refuse_the_same_system_directories():
    # One list by construction: a directory refused for one role is refused for the other.
    for directory in ["/var/run", "/run", "/etc", "/opt"]:
        workers = F["celery_fleet_workers_errors"](_workers_vars(celery_workers_state_dir=directory), [])
        flower = F["celery_fleet_flower_errors"](_flower_vars(celery_flower_state_dir=directory))
        assert workers == [f"celery_workers_state_dir: '{directory}' is a system directory; use a directory of its own such as /opt/celery"]
        assert flower == [f"celery_flower_state_dir: '{directory}' is a system directory; use a directory of its own such as /opt/celery-flower"]


def test_valid_variables_give_no_error():
    assert F["celery_fleet_workers_errors"](_workers_vars(), []) == []
    assert F["celery_fleet_flower_errors"](_flower_vars()) == []


def test_beat_on_more_than_one_host():
    errors = F["celery_fleet_workers_errors"](_workers_vars(celery_workers_beat_enabled=True), ["a", "b"])
    assert errors == ["celery_workers_beat_enabled: true on 2 hosts of this play (a, b): enable beat on one host only"]
    # Only a host that runs beat itself reports it.
    assert F["celery_fleet_workers_errors"](_workers_vars(), ["a", "b"]) == []


def _workers_vars(**overrides):
    """The role's defaults (so this stays in step with them), a broker URL, the overrides."""
    return {**role_defaults("celery_workers"), "celery_workers_broker_url": "amqp://u:p@mq/v", **overrides}


def _flower_vars(**overrides):
    """The role's defaults (those taken from celery_workers_* as that role's defaults give them), a user."""
    return {**role_defaults("celery_flower"), "celery_flower_broker_url": "amqp://u:p@mq/v",
            "celery_flower_basic_auth": [{"user": "ops", "password": "secret-password"}], **overrides}


# --- Sizing: relative sizes, overrides, memory fit, queue coverage

PLAN_DEFAULTS = {"pool": "prefork", "concurrency": 2, "process_memory_mb": 100, "memory_reserve_mb": 500}


@pytest.mark.parametrize("size, cpus, expected", [
    (3, 64, 3),                                       # a number stays as it is
    ("4", 1, 4),
    ({"per_cpu": 2}, 1, 2),
    ({"per_cpu": 2}, 16, 32),                         # no max: no limit
    ({"per_cpu": 2, "min": 1, "max": 32}, 64, 32),    # capped by max
    ({"per_cpu": 0.5}, 1, 1),                         # 0.5 rounds down to 0, min defaults to 1
    ({"per_cpu": 0.5}, 7, 3),
    ({"per_cpu": "1.5", "min": 4}, 2, 4),             # raised to min
    ({"per_cpu": 1, "min": 2, "max": 2}, 8, 2),
])
def test_relative_sizes_resolve_against_the_cpus(size, cpus, expected):
    (worker,) = F["celery_fleet_workers"]([{"name": "w", "queues": ["q"], "concurrency": size}], {}, cpus)
    assert worker["concurrency"] == expected
    (worker,) = F["celery_fleet_workers"]([{"name": "w", "queues": ["q"], "autoscale": {"max": size, "min": 1}}], {}, cpus)
    assert worker["autoscale"] == {"max": expected, "min": 1}


def test_without_cpus_nothing_is_resolved():
    workers = [{"name": "w", "queues": ["q"], "concurrency": {"per_cpu": 2}}]
    assert F["celery_fleet_workers"](workers, {}) == workers


def test_overrides_change_only_the_named_worker_and_can_leave_one_out():
    fleet = [{"name": "default", "queues": ["default"], "concurrency": 2},
             {"name": "reports", "queues": ["reports"], "autoscale": {"max": 4, "min": 1}},
             {"name": "other", "queue": "other", "loglevel": "warning"}]
    host = F["celery_fleet_workers"](fleet, {"default": {"concurrency": {"per_cpu": 1}}, "reports": {"concurrency": 3},
                                           "other": {"present": False}}, 8)
    assert host == [{"name": "default", "queues": ["default"], "concurrency": 8},
                    # concurrency given: the entry's autoscale goes
                    {"name": "reports", "queues": ["reports"], "concurrency": 3}]
    assert fleet[1]["autoscale"] == {"max": 4, "min": 1}, "the fleet's list must not be modified"
    host = F["celery_fleet_workers"](fleet, {"default": {"autoscale": {"max": 6, "min": 2}}, "other": {"present": True}}, 8)
    assert host[0] == {"name": "default", "queues": ["default"], "autoscale": {"max": 6, "min": 2}}
    assert [w["name"] for w in host] == ["default", "reports", "other"]


def test_override_errors_name_the_override_and_the_composed_entry():
    errors = F["celery_fleet_workers_errors"](_workers_vars(celery_workers_overrides={"default": {"concurrency": 0}, "ghost": {}}), [])
    assert errors == ["celery_workers_overrides.ghost: no worker named 'ghost' in celery_workers (names: default)",
                      "celery_workers[0] (name 'default', with celery_workers_overrides): field concurrency must be a positive integer "
                      "or {per_cpu: N, min: A, max: B}, got '0'"]


ENTRY_SPEC = spec_options("celery_workers")["celery_workers"]


def _entries_errors(workers, overrides):
    """What the preflight task "Check the host's workers against the argument spec" reports."""
    checked = F["celery_fleet_workers_argspec"](workers, overrides, ENTRY_SPEC)
    assert set(checked["argument_spec"]) == set(checked["provided_arguments"])
    return [str(e) for e in ArgumentSpecValidator(checked["argument_spec"]).validate(checked["provided_arguments"]).errors]


def test_each_entry_is_checked_against_the_spec_with_its_overrides():
    fleet = [{"name": "default", "queues": ["default"]}, {"name": "r", "queue": "reports"}, {"name": "gone", "queue": "g"}]
    checked = F["celery_fleet_workers_argspec"](fleet, {"r": {"loglevel": "info"}, "gone": {"present": False}}, ENTRY_SPEC)
    assert list(checked["provided_arguments"]) == ["celery_workers[0] (name 'default')",
                                                   "celery_workers[1] (name 'r', with celery_workers_overrides)"]
    assert checked["provided_arguments"]["celery_workers[1] (name 'r', with celery_workers_overrides)"] == {
        "name": "r", "queue": "reports", "loglevel": "info"}
    assert all(spec["type"] == "dict" and set(spec["options"]) == set(ENTRY_SPEC["options"]) for spec in checked["argument_spec"].values())
    assert _entries_errors(fleet, {"r": {"loglevel": "info"}}) == []
    # A bad field from an override: the message names the entry, the worker and the field.
    for override, fragment, python_too in [
            ({"pool": "forking"}, "value of pool must be one of", False), ({"colour": "red"}, "colour", False),
            ({"queues": ["x"]}, "mutually exclusive: queues|queue", False),
            ({"autoscale": {"max": 2}}, "missing required arguments: min", False),
            ({"time_limit": "long"}, "time_limit", True)]:  # also not a positive integer, a rule of the Python code
        (error,) = _entries_errors(fleet, {"r": override})
        assert "celery_workers[1] (name 'r', with celery_workers_overrides)" in error and fragment in error, error
        # Types, choices, unknown keys and exclusions are the spec's alone: the Python rules do not repeat them.
        python = F["celery_fleet_workers_errors"](_workers_vars(celery_workers=fleet, celery_workers_overrides={"r": override}), [])
        assert bool(python) == python_too, python


def test_unit_states_of_systemctl_show():
    shown = ("Id=celery-worker@a.service\nActiveState=active\nUnitFileState=enabled\n\n"
             "Id=celery-beat.service\nActiveState=inactive\nUnitFileState=\n")
    assert F["systemd_unit_states"](shown) == {
        "celery-worker@a.service": {"Id": "celery-worker@a.service", "ActiveState": "active", "UnitFileState": "enabled"},
        "celery-beat.service": {"Id": "celery-beat.service", "ActiveState": "inactive", "UnitFileState": ""}}
    assert F["systemd_unit_states"]("") == {}
    with pytest.raises(Exception, match="without Id="):
        F["systemd_unit_states"]("ActiveState=active\n")


def test_a_plan_that_fits_and_one_that_does_not():
    workers = F["celery_fleet_workers"]([{"name": "small", "queues": ["a"], "concurrency": 2},
                                       {"name": "big", "queues": ["b"], "autoscale": {"max": {"per_cpu": 2}, "min": 1}},
                                       {"name": "io", "queues": ["c"], "pool": "threads", "concurrency": 50}], {}, 4)
    # small: 1 + 2; big: 1 + 8 (autoscale max); io: threads run in one process.
    plan = F["celery_fleet_host_plan"](workers, 4, 1700, PLAN_DEFAULTS)
    assert [(w["name"], w["size"], w["processes"]) for w in plan["workers"]] == [("small", "2", 3), ("big", "1..8", 9), ("io", "50", 1)]
    assert (plan["processes"], plan["need_mb"], plan["available_mb"], plan["fits"]) == (13, 1300, 1200, False)
    assert plan["message"] == ("13 processes x 100 MB = 1300 MB, but MemTotal 1700 MB - reserve 500 MB leaves 1200 MB; "
                               "biggest worker 'big': 9 processes (prefork 1..8)")
    assert plan["errors"] == []
    assert F["celery_fleet_host_plan"](workers, 4, 1800, PLAN_DEFAULTS)["fits"] is True   # exactly enough
    assert F["celery_fleet_host_plan"]([], 4, 600, PLAN_DEFAULTS)["fits"] is True


def test_autoscale_bounds_that_cross_on_a_host_are_an_error_of_the_plan():
    workers = F["celery_fleet_workers"]([{"name": "w", "queues": ["q"], "autoscale": {"max": {"per_cpu": 1}, "min": 4}}], {}, 2)
    assert F["celery_fleet_host_plan"](workers, 2, 10**6, PLAN_DEFAULTS)["errors"] == [
        "celery_workers worker 'w': autoscale max resolves to 2, below min 4, on 2 CPUs"]


def test_queue_coverage_over_the_fleet():
    default_workers = [{"name": "default", "queues": ["default"]}]
    hostvars = {
        "a": {"celery_workers": [{"name": "default", "queues": ["default"]}, {"name": "r", "queue": "reports"}]},
        "b": {"celery_workers": [{"name": "other", "queues": ["other", "default"]}], "celery_workers_overrides": {"other": {"queues": ["other"]}}},
        "c": {},                                                   # the role's default list
        "d": {"celery_workers": "not a list"},                     # its own preflight reports it
        "e": {"celery_workers": [{"name": "r", "queue": "reports"}], "celery_workers_overrides": {"r": {"present": False}}},
    }
    consumers = F["celery_fleet_consumers"](hostvars, list(hostvars), default_workers)
    assert consumers == {"default": ["a", "c"], "other": ["b"], "reports": ["a"]}
    required = ["default", "other", "reports", "billing"]
    errors = F["celery_fleet_workers_errors"](_workers_vars(celery_workers_required_queues=required), [], consumers)
    assert errors == ["celery_workers_required_queues: queue 'billing' has no consumer on any host of the fleet (group celery_workers); "
                      "tasks routed there would wait forever: add it to a worker's queues"]
    assert F["celery_fleet_workers_errors"](_workers_vars(celery_workers_required_queues=required[:3]), [], consumers) == []


def test_broker_tls_files_only_those_given_key_not_world_readable():
    files = F["celery_fleet_broker_tls_files"]({"ca_src": "/x/ca.pem", "cert_content": "PEM", "key_content": "KEY", "verify": True},
                                             "/etc/celery/tls", "celery")
    assert [(f["env"], f["dest"], f["group"], f["mode"]) for f in files] == [
        ("CELERY_BROKER_TLS_CA", "/etc/celery/tls/ca.pem", "root", "0644"),
        ("CELERY_BROKER_TLS_CERT", "/etc/celery/tls/client.pem", "root", "0644"),
        ("CELERY_BROKER_TLS_KEY", "/etc/celery/tls/client.key", "celery", "0640")]
    # Empty values, names and flags deploy nothing.
    assert F["celery_fleet_broker_tls_files"]({"ca_src": "", "cert_content": None, "server_name": "mq", "required": True}, "/d", "g") == []
    assert F["celery_fleet_broker_tls_files"]({}, "/d", "g") == []

"""Bad input is refused before anything changes.

One ansible-playbook run applies the role as a playbook does (`roles:`), in
check mode and limited to the `celery_workers_preflight` tag, to one
inventory host per case (all `ansible_connection: local`). Each bad input
runs once, and is refused by one of (in the order they run):

* SPEC: Ansible's check of meta/argument_specs.yml before the role's first
  task (types, choices, required, mutually exclusive, unknown keys);
* ENTRIES: "Check the host's workers against the argument spec", the same
  spec applied to each of the host's entries with celery_workers_overrides
  applied (a bad field that comes from an override), its message naming the
  entry, the worker and the field;
* ASSERT: "Assert the configuration is valid", the rules a spec cannot say
  (filter celery_fleet_workers_errors: shapes, ranges, cross-field rules);
* FIT: "Assert the workers fit in the host's memory", after the read-only
  look at the host (its CPUs and MemTotal).

Every bad case must fail in its task with the expected message, report
nothing changed and reach no task past the one that refused it (a case
refused by ASSERT not even the read-only look at the host); every good case
must pass all of preflight. The tag filter and check mode are two locks that
keep even a case passing by mistake from installing anything on the machine
running the tests. (A role included with `rolespec_validate: false` is not
supported, so no case runs without the spec.)

Each host's broker URL carries a canary password that must never appear in
the output. That the host really stays untouched (no check mode, no tag) is
proven against a molecule host in molecule/default/tests/test_preflight_on_host.py.
The run and the checks are shared with test_flower_preflight.py (preflight_harness.py).
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from preflight_harness import PEM_SRC, PEM_TEXT, ROOT, RolePreflight, plugin_util

ROLE = ROOT / "roles" / "celery_workers"
WARN_TASK = "Warn that the workers may not fit in the host's memory"
PREFLIGHT = RolePreflight("celery_workers", [
    "Check the host's workers against the argument spec",
    "Collect configuration errors",
    "Assert the configuration is valid",
    "Read the host's CPUs, memory and the workers' accounts",
    "Assert the workers' user and group are not root",
    "Work out what the workers need on this host",
    "Assert the workers fit in the host's memory",
    WARN_TASK,
], optional=(WARN_TASK,), spec_checks=("Check the host's workers against the argument spec",))

# Where a case is refused.
SPEC = PREFLIGHT.spec_task
ENTRIES = PREFLIGHT.task("Check the host's workers against the argument spec")
ASSERT = PREFLIGHT.assert_task
FIT = PREFLIGHT.task("Assert the workers fit in the host's memory")

CANARY = "CanaryPw7x"  # part of every case's broker password

W0 = {"name": "default", "queues": ["default"]}

# The directives of every unit's sandbox, which celery_workers_unit_extra must not change.
HARDENING_DIRECTIVES = [line.split("=")[0] for line in plugin_util("_systemd").HARDENING]


def worker(**fields):
    """A second worker entry (index 1, behind a valid one), named `w` unless given."""
    return {"celery_workers": [W0, {"name": "w", "queues": ["q"], **fields}]}


def at(name):
    """How preflight names the entry at index 1."""
    return f"celery_workers[1] (name '{name}')"


def overridden(index, name):
    """How preflight and the entries' spec check name an entry changed by celery_workers_overrides."""
    return f"celery_workers[{index}] (name '{name}', with celery_workers_overrides)"


# PEM-shaped text (preflight checks the block markers, not the DER inside).
PEM_CERT = PEM_TEXT
PEM_KEY = f"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49{CANARY}\n-----END PRIVATE KEY-----\n"


def tls(scheme="amqps", **keys):
    """A broker URL of the scheme (password: the canary) and celery_workers_broker_tls."""
    return {"celery_workers_broker_url": f"{scheme}://celery:{CANARY}@mq.example.org:5671/celery", "celery_workers_broker_tls": keys}


class Case:
    """One bad input: its variables, the task that refuses it (by) and fragments of its message."""

    def __init__(self, case_id, variables, expect, by=ASSERT, copies=1):
        self.id = case_id
        self.vars = variables
        self.expect = expect
        self.by = by
        self.copies = copies

    def __repr__(self):
        return self.id


BAD = [
    # --- names: they become file names, unit names and node names
    Case("name_traversal", worker(name="../x"), [at("../x"), "field name must match"]),
    Case("name_slash", worker(name="a/b"), [at("a/b"), "field name must match"]),
    Case("name_newline_unit_injection", worker(name="evil\nExecStartPre=/bin/sh -c id"),
         [at("evil\\nExecStartPre=/bin/sh -c id"), "field name must match"]),
    Case("name_trailing_newline", worker(name="evil\n"), [at("evil\\n"), "field name must match"]),
    Case("name_space", worker(name="my worker"), [at("my worker"), "field name must match"]),
    Case("name_percent_specifier", worker(name="w%i"), [at("w%i"), "field name must match"]),
    Case("name_at_template_unit", worker(name="w@x"), [at("w@x"), "field name must match"]),
    Case("name_leading_dash", worker(name="-w"), [at("-w"), "field name must match"]),
    Case("name_empty", worker(name=""), [at(""), "field name must match"]),
    Case("name_too_long", worker(name="w" * 64), [at("w" * 60), "field name must match"]),
    Case("name_duplicate", worker(name="default"), [at("default"), "field name is a duplicate"]),
    Case("name_duplicate_other_case", worker(name="DEFAULT"), [at("DEFAULT"), "field name is a duplicate"]),
    Case("name_missing", {"celery_workers": [W0, {"queues": ["q"]}]}, ["missing required arguments: name found in celery_workers"], by=SPEC),
    Case("name_number", worker(name=12), [at("12"), "field name must match"]),
    # --- queues: joined with commas into -Q
    Case("queues_missing", {"celery_workers": [W0, {"name": "w"}]}, ["one of the following is required: queues, queue found in celery_workers"], by=SPEC),
    Case("queues_empty_list", worker(queues=[]), [at("w"), "field queues must be a non-empty list"]),
    Case("queues_empty_name", worker(queues=[""]), [at("w"), "field queues: '' is not a safe queue name"]),
    Case("queue_with_comma", worker(queues=["a,b"]), [at("w"), "field queues: 'a,b' is not a safe queue name"]),
    Case("queue_with_space", {"celery_workers": [W0, {"name": "w", "queue": "a b"}]},
         [at("w"), "field queues: 'a b' is not a safe queue name"]),
    Case("queue_with_newline", worker(queues=["a\n"]), [at("w"), "field queues: 'a\\n' is not a safe queue name"]),
    Case("queue_with_percent", worker(queues=["a%n"]), [at("w"), "field queues: 'a%n' is not a safe queue name"]),
    Case("queue_twice", worker(queues=["a", "a"]), [at("w"), "field queues lists a queue twice"]),
    Case("queue_and_queues", worker(queue="q"), ["parameters are mutually exclusive: queues|queue found in celery_workers"], by=SPEC),
    # Ansible's check splits a string at its commas, the role would get the string.
    Case("queues_is_a_string", worker(queues="a,b"), [at("w"), "field queues: must be a list, got str 'a,b'"]),
    # --- numbers
    Case("concurrency_string", worker(concurrency="four"), [at("w"), "field concurrency must be a positive integer or {per_cpu: N, min: A, max: B}, got 'four'"]),
    Case("concurrency_zero", worker(concurrency=0), [at("w"), "field concurrency must be a positive integer or {per_cpu: N, min: A, max: B}, got '0'"]),
    Case("concurrency_negative", worker(concurrency=-2), [at("w"), "field concurrency must be a positive integer or {per_cpu: N, min: A, max: B}, got '-2'"]),
    Case("concurrency_bool", worker(concurrency=True), [at("w"), "field concurrency must be a positive integer or {per_cpu: N, min: A, max: B}, got 'True'"]),
    Case("concurrency_float", worker(concurrency=2.5), [at("w"), "field concurrency must be a positive integer or {per_cpu: N, min: A, max: B}, got '2.5'"]),
    Case("concurrency_trailing_newline", worker(concurrency="4\n"), [at("w"), "field concurrency must be a positive integer or {per_cpu: N, min: A, max: B}, got '4\\n'"]),
    Case("max_tasks_per_child_zero", worker(max_tasks_per_child=0), [at("w"), "field max_tasks_per_child must be a positive integer"]),
    # Every integer field and setting has a case of its own: dropping any one of
    # them from the rule's list fails its case.
    Case("max_memory_per_child_zero", worker(max_memory_per_child=0),
         [at("w"), "field max_memory_per_child must be a positive integer, got '0'"]),
    Case("prefetch_multiplier_negative", worker(prefetch_multiplier=-1),
         [at("w"), "field prefetch_multiplier must be a positive integer, got '-1'"]),
    Case("time_limit_zero", worker(time_limit=0), [at("w"), "field time_limit must be a positive integer, got '0'"]),
    Case("soft_time_limit_zero", worker(soft_time_limit=0), [at("w"), "field soft_time_limit must be a positive integer, got '0'"]),
    # At most 10 digits (int_re): a typo of extra zeros is refused.
    Case("concurrency_eleven_digits", worker(concurrency=10000000000),
         [at("w"), "field concurrency must be a positive integer or {per_cpu: N, min: A, max: B}, got '10000000000'"]),
    Case("soft_time_limit_not_below_time_limit", worker(time_limit=60, soft_time_limit=60),
         [at("w"), "field soft_time_limit must be lower than time_limit"]),
    # Compared as numbers: as strings "100" < "60".
    Case("soft_time_limit_above_time_limit", worker(time_limit=60, soft_time_limit=100),
         [at("w"), "field soft_time_limit must be lower than time_limit"]),
    Case("autoscale_max_below_min", worker(autoscale={"max": 2, "min": 4}), [at("w"), "field autoscale max (2) must be >= min (4)"]),
    # Compared as numbers: as strings "9" > "10".
    Case("autoscale_max_below_min_numerically", worker(autoscale={"max": 9, "min": 10}),
         [at("w"), "field autoscale max (9) must be >= min (10)"]),
    Case("autoscale_zero_max", worker(autoscale={"max": 0, "min": 1}), [at("w"), "field autoscale max must be a positive integer or {per_cpu: N, min: A, max: B}, got '0'"]),
    Case("autoscale_zero_min", worker(autoscale={"max": 4, "min": 0}), [at("w"), "field autoscale min must be a positive integer or {per_cpu: N, min: A, max: B}, got '0'"]),
    Case("autoscale_string", worker(autoscale={"max": "many", "min": 1}), [at("w"), "field autoscale max must be a positive integer or {per_cpu: N, min: A, max: B}, got 'many'"]),
    # Relative sizes (resolved against the host's CPUs).
    Case("relative_per_cpu_zero", worker(concurrency={"per_cpu": 0}),
         [at("w"), "field concurrency: per_cpu must be a positive number (pool processes per CPU), got '0'"]),
    Case("relative_per_cpu_negative", worker(concurrency={"per_cpu": -2, "max": 4}), [at("w"), "field concurrency: per_cpu must be a positive number"]),
    Case("relative_per_cpu_missing", worker(concurrency={"min": 2}), [at("w"), "field concurrency: per_cpu must be a positive number", "got 'None'"]),
    Case("relative_per_cpu_bool", worker(concurrency={"per_cpu": True}), [at("w"), "field concurrency: per_cpu must be a positive number"]),
    Case("relative_min_above_max", worker(concurrency={"per_cpu": 2, "min": 8, "max": 4}), [at("w"), "field concurrency: min (8) must be <= max (4)"]),
    Case("relative_min_zero", worker(concurrency={"per_cpu": 1, "min": 0}), [at("w"), "field concurrency: min must be a positive integer, got '0'"]),
    Case("relative_unknown_key", worker(concurrency={"per_cpu": 1, "maximum": 4}), [at("w"), "field concurrency: unknown key 'maximum' (known: per_cpu, min, max)"]),
    Case("relative_autoscale_max", worker(autoscale={"max": {"per_cpu": 1, "min": 3, "max": 2}, "min": 1}),
         [at("w"), "field autoscale max: min (3) must be <= max (2)"]),
    # Overrides (per-host changes to a fleet-wide list).
    Case("override_unknown_worker", {"celery_workers_overrides": {"defualt": {"concurrency": 8}}},
         ["celery_workers_overrides.defualt: no worker named 'defualt' in celery_workers (names: default)"]),
    Case("override_not_a_mapping", {"celery_workers_overrides": {"default": 8}},
         ["celery_workers_overrides.default: must be a mapping of fields to change (or present: false), got int"]),
    Case("override_bad_value", {"celery_workers_overrides": {"default": {"concurrency": 0}}},
         ["celery_workers[0] (name 'default', with celery_workers_overrides): field concurrency must be a positive integer or {per_cpu: N, min: A, max: B}, got '0'"]),
    Case("override_renames", {"celery_workers_overrides": {"default": {"name": "other"}}},
         ["celery_workers_overrides.default: field 'name' cannot be overridden"]),
    Case("override_present_not_bool", {"celery_workers_overrides": {"default": {"present": "no"}}},
         ["celery_workers_overrides.default: field present must be true or false, got 'no'"]),
    Case("overrides_a_list", {"celery_workers_overrides": [{"default": {}}]},
         ["argument 'celery_workers_overrides' is of type list and we were unable to convert to dict"], by=SPEC),
    # Memory fit settings and required queues.
    Case("process_memory_zero", {"celery_workers_process_memory_mb": 0}, ["celery_workers_process_memory_mb: must be a positive integer, got '0'"]),
    Case("memory_check_unknown", {"celery_workers_memory_check": "ignore"}, ["value of celery_workers_memory_check must be one of: fail, warn, got: ignore"], by=SPEC),
    Case("required_queue_without_consumer", {"celery_workers_required_queues": ["default", "nobody-reads-this"]},
         ["celery_workers_required_queues: queue 'nobody-reads-this' has no consumer on any host of the fleet (group celery_workers)"]),
    # Memory fit: refused after the read-only look at the host (its MemTotal and CPUs), still before any change.
    Case("does_not_fit_relative", {"celery_workers": [{"name": "huge", "queues": ["default"], "concurrency": {"per_cpu": 4000}}]},
         ["celery_workers preflight failed on ", ": the workers do not fit in memory: ", " processes x 128 MB = ",
          "but MemTotal ", " MB - reserve 512 MB leaves ", "biggest worker 'huge': ", "celery_workers_memory_check: warn only warns"],
         by=FIT),
    Case("does_not_fit_estimate", {"celery_workers_process_memory_mb": 10000000},
         [": the workers do not fit in memory: 3 processes x 10000000 MB = 30000000 MB", "biggest worker 'default': 3 processes (prefork 2)"],
         by=FIT),
    Case("autoscale_crosses_on_this_host", worker(autoscale={"max": {"per_cpu": 1, "max": 1}, "min": 2}),
         ["celery_workers preflight failed on ", "celery_workers worker 'w': autoscale max resolves to 1, below min 2, on "], by=FIT),
    Case("required_queue_unsafe", {"celery_workers_required_queues": ["a,b"]}, ["celery_workers_required_queues: 'a,b' is not a safe queue name"]),
    Case("required_queue_left_by_override", {"celery_workers_required_queues": ["only-here"],
                                              "celery_workers": [W0, {"name": "solo", "queues": ["only-here"]}],
                                              "celery_workers_overrides": {"solo": {"present": False}}},
         ["celery_workers_required_queues: queue 'only-here' has no consumer"]),
    Case("autoscale_missing_min", worker(autoscale={"max": 4}), ["missing required arguments: min found in celery_workers -> autoscale"], by=SPEC),
    Case("autoscale_with_concurrency", worker(autoscale={"max": 4, "min": 1}, concurrency=2),
         ["parameters are mutually exclusive: concurrency|autoscale found in celery_workers"], by=SPEC),
    # --- unknown keys and choices
    Case("unknown_key", worker(colour="red"), ["celery_workers.colour", "Supported parameters include"], by=SPEC),
    Case("misspelled_key", worker(concurency=4), ["celery_workers.concurency"], by=SPEC),
    Case("unknown_autoscale_key", worker(autoscale={"max": 4, "min": 1, "step": 1}), ["celery_workers.autoscale.step"], by=SPEC),
    Case("unknown_loglevel", worker(loglevel="verbose"), ["value of loglevel must be one of", "got: verbose found in celery_workers"], by=SPEC),
    Case("unknown_pool", worker(pool="forking"), ["value of pool must be one of", "got: forking found in celery_workers"], by=SPEC),
    Case("loglevel_newline", worker(loglevel="info\nUser=root"), ["value of loglevel must be one of", "found in celery_workers"], by=SPEC),
    Case("global_loglevel_unknown", {"celery_workers_loglevel": "loud"}, ["value of celery_workers_loglevel must be one of"], by=SPEC),
    Case("global_concurrency_zero", {"celery_workers_concurrency": 0}, ["celery_workers_concurrency: must be a positive integer, got '0'"]),
    Case("global_stop_timeout_zero", {"celery_workers_stop_timeout": 0}, ["celery_workers_stop_timeout: must be a positive integer, got '0'"]),
    Case("global_restart_sec_negative", {"celery_workers_restart_sec": -5},
         ["celery_workers_restart_sec: must be a positive integer, got '-5'"]),
    Case("global_health_timeout_zero", {"celery_workers_health_timeout": 0},
         ["celery_workers_health_timeout: must be a positive integer, got '0'"]),
    Case("global_health_timeout_bool", {"celery_workers_health_timeout": True},
         ["celery_workers_health_timeout: must be a positive integer, got 'True'"]),
    # --- values written to environment files and unit lines
    Case("env_value_newline", worker(env={"FOO": f"{CANARY}\nCELERY_BROKER_URL=amqp://evil"}),
         [at("w"), "field env.FOO: value must be a string or number without newlines"]),
    Case("env_value_carriage_return", worker(env={"FOO": "bar\rX"}), [at("w"), "field env.FOO: value must be"]),
    Case("env_value_mapping", worker(env={"FOO": {"a": 1}}), [at("w"), "field env.FOO: value must be"]),
    Case("env_bad_key", worker(env={"BAD-KEY": "x"}), [at("w"), "field env: key 'BAD-KEY' is not a valid environment variable name"]),
    Case("env_key_newline", worker(env={"FOO\nBAR": "x"}), [at("w"), "field env: key 'FOO\\nBAR' is not a valid"]),
    Case("env_not_a_mapping", worker(env=[f"FOO={CANARY}"]), ["argument 'env' is of type list found in 'celery_workers'"], by=SPEC),
    Case("global_env_newline", {"celery_workers_environment": {"FOO": f"{CANARY}\nb"}},
         ["celery_workers_environment.FOO: value must be a string or number without newlines"]),
    Case("global_env_bad_key", {"celery_workers_environment": {"1FOO": "a"}}, ["celery_workers_environment: key '1FOO' is not a valid"]),
    Case("extra_args_newline_unit_injection", worker(extra_args=["--without-gossip\nExecStartPre=/bin/sh -c id"]),
         [at("w"), "field extra_args[0] must be a non-empty string without newlines"]),
    Case("extra_args_string", worker(extra_args="--without-gossip"), [at("w"), "field extra_args: must be a list, got str '--without-gossip'"]),
    Case("extra_args_credentials", worker(extra_args=["--without-gossip", f"--broker=amqp://u:{CANARY}@mq/v"]),
         [at("w"), "field extra_args[1] holds a URL with credentials"]),
    Case("extra_args_overrides_queues", worker(extra_args=["-Q", "other"]), [at("w"), "field extra_args[0] '-Q' is set by the role"]),
    Case("extra_args_embedded_beat", worker(extra_args=["--beat"]), [at("w"), "field extra_args[0] '--beat' is set by the role"]),
    Case("extra_args_concurrency_short", worker(extra_args=["-c8"]), [at("w"), "field extra_args[0] '-c8' is set by the role"]),
    Case("extra_args_concurrency_after_flag", worker(extra_args=["-Ec5"]), [at("w"), "field extra_args[0] '-Ec5' is set by the role"]),
    Case("extra_args_queues_after_flag", worker(extra_args=["-EQsneaky"]), [at("w"), "field extra_args[0] '-EQsneaky' is set by the role"]),
    Case("extra_args_exclude_queues_short", worker(extra_args=["-X", "default"]), [at("w"), "field extra_args[0] '-X' is set by the role"]),
    # --- broker
    Case("broker_url_empty", {"celery_workers_broker_url": ""}, ["celery_workers_broker_url: must be set to the broker URL"]),
    Case("broker_url_newline", {"celery_workers_broker_url": f"amqp://u:{CANARY}@mq/v\nX=1"},
         ["celery_workers_broker_url: must not contain newlines or control characters"]),
    Case("broker_url_no_scheme", {"celery_workers_broker_url": f"u:{CANARY}@mq/v"}, ["celery_workers_broker_url: must be a URL starting with a scheme"]),
    Case("broker_url_not_a_string", {"celery_workers_broker_url": {"password": CANARY}}, ["celery_workers_broker_url: must be set"]),
    # --- TLS to the broker (the key and the URL carry the canary: never shown)
    Case("tls_ca_src_missing", tls(ca_src="/nonexistent/broker-ca.pem"),
         ["celery_workers_broker_tls.ca_src: /nonexistent/broker-ca.pem does not exist on the controller"]),
    Case("tls_ca_src_relative", tls(ca_src="files/ca.pem"), ["celery_workers_broker_tls.ca_src: 'files/ca.pem' must be an absolute path"]),
    Case("tls_key_without_cert", tls(key_content=PEM_KEY), ["celery_workers_broker_tls: a client key (key_src or key_content) needs its certificate"]),
    Case("tls_cert_without_key", tls(cert_content=PEM_CERT), ["celery_workers_broker_tls: a client certificate (cert_src or cert_content) needs its key"]),
    Case("tls_unverified_unacknowledged", tls(verify=False),
         ["celery_workers_broker_tls.verify: false accepts any certificate", "set unverified_ok: true"]),
    Case("tls_cert_src_not_pem", tls(cert_src=str(ROOT / "README.md"), key_content=PEM_KEY),
         [f"celery_workers_broker_tls.cert_src: {ROOT / 'README.md'} is not PEM: no '-----BEGIN CERTIFICATE-----' block"]),
    Case("tls_ca_content_not_pem", tls(ca_content="MIIBhello"), ["celery_workers_broker_tls.ca_content is not PEM"]),
    Case("tls_key_content_not_pem", tls(cert_content=PEM_CERT, key_content=f"ssh-ed25519 {CANARY}"),
         ["celery_workers_broker_tls.key_content is not PEM: no '-----BEGIN ... PRIVATE KEY-----' block"]),
    Case("tls_src_and_content", tls(ca_src="/etc/hostname", ca_content=PEM_CERT),
         ["parameters are mutually exclusive: ca_src|ca_content found in celery_workers_broker_tls"], by=SPEC),
    Case("tls_required_with_plain_url", tls("amqp", required=True),
         ["celery_workers_broker_tls.required: is true but the broker URL is amqp:// (plain text)"]),
    Case("tls_files_with_plain_url", tls("amqp", ca_content=PEM_CERT, server_name="mq.example.org"),
         ["celery_workers_broker_tls: ca_content, server_name given but the broker URL is not amqps://"]),
    Case("tls_server_name_bad", tls(server_name="mq example"), ["celery_workers_broker_tls.server_name: 'mq example' is not a host name"]),
    Case("tls_unknown_key", tls(cafile="/etc/ssl/ca.pem"), ["celery_workers_broker_tls.cafile. Supported parameters include: ca_content, ca_src"], by=SPEC),
    Case("tls_not_a_mapping", {"celery_workers_broker_tls": "/etc/ssl/ca.pem"},
         ["argument 'celery_workers_broker_tls' is of type str and we were unable to convert to dict"], by=SPEC),
    # --- accounts and paths
    Case("user_root", {"celery_workers_user": "root"}, ["celery_workers_user: workers must not run as root"]),
    Case("group_root", {"celery_workers_group": "root"}, ["celery_workers_group: workers must not run as root"]),
    Case("user_newline", {"celery_workers_user": "celery\nUser=root"}, ["celery_workers_user: 'celery\\nUser=root' is not a valid system account name"]),
    Case("base_dir_relative", {"celery_workers_base_dir": "opt/celery"}, ["celery_workers_base_dir: 'opt/celery' must be an absolute path"]),
    Case("base_dir_traversal", {"celery_workers_base_dir": "/opt/celery/../../etc"},
         ["celery_workers_base_dir: '/opt/celery/../../etc' must be an absolute path", "without '.', '..'"]),
    Case("config_dir_system", {"celery_workers_config_dir": "/etc/"}, ["celery_workers_config_dir: '/etc/' must be an absolute path"]),
    Case("state_dir_system", {"celery_workers_state_dir": "/var/lib"}, ["celery_workers_state_dir: '/var/lib' is a system directory"]),
    Case("state_dir_var_run", {"celery_workers_state_dir": "/var/run"}, ["celery_workers_state_dir: '/var/run' is a system directory"]),
    Case("state_dir_inside_base_dir", {"celery_workers_state_dir": "/opt/celery/state"},
         ["celery_workers_state_dir ('/opt/celery/state') and celery_workers_base_dir ('/opt/celery') must be separate directories"]),
    Case("config_dir_inside_state_dir", {"celery_workers_config_dir": "/var/lib/celery/etc"},
         ["celery_workers_state_dir ('/var/lib/celery') and celery_workers_config_dir ('/var/lib/celery/etc') must be separate"]),
    # --- unit lines added to every worker unit
    Case("unit_extra_user_root", {"celery_workers_unit_extra": ["User=root"]}, ["celery_workers_unit_extra[0]: User= is set by the role"]),
    Case("unit_extra_privileged_exec", {"celery_workers_unit_extra": ["ExecStartPre=+/bin/sh -c id"]},
         ["celery_workers_unit_extra[0]: ExecStartPre= with a '+' or '!' prefix would run as root"]),
    Case("unit_extra_newline", {"celery_workers_unit_extra": ["MemoryMax=1G\nUser=root"]},
         ["celery_workers_unit_extra[0]: 'MemoryMax=1G\\nUser=root' must be one 'Directive=value' line"]),
    Case("unit_extra_section", {"celery_workers_unit_extra": ["[Install]"]}, ["celery_workers_unit_extra[0]: '[Install]' must be one"]),
    Case("unit_extra_credentials", {"celery_workers_unit_extra": [f"Environment=CELERY_BROKER_URL=amqp://u:{CANARY}@mq/v"]},
         ["celery_workers_unit_extra[0]: holds a URL with credentials"]),
    # Every directive of the hardening include, each on its own line of one list.
    Case("unit_extra_loosens_hardening", {"celery_workers_unit_extra": ["MemoryMax=1G"] + [f"{d}=" for d in HARDENING_DIRECTIVES]},
         [f"celery_workers_unit_extra[{i}]: {d}= is set by the role" for i, d in enumerate(HARDENING_DIRECTIVES, 1)]),
    # --- the list itself, pip, beat
    Case("workers_not_a_list", {"celery_workers": {"name": "w", "queues": ["q"]}}, ["argument 'celery_workers' is of type dict"], by=SPEC),
    Case("workers_null", {"celery_workers": None}, ["argument 'celery_workers' is of type NoneType and we were unable to convert to list"], by=SPEC),
    Case("entry_not_a_mapping", {"celery_workers": [W0, "other"]}, ["Elements value for option 'celery_workers' is of type str and we were unable to convert to dict"], by=SPEC),
    Case("pip_environment_credentials", {"celery_workers_pip_environment": {"PIP_INDEX_URL": f"https://u:{CANARY}@pypi.example/simple"}},
         ["celery_workers_pip_environment.PIP_INDEX_URL: holds a URL with credentials"]),
    Case("pip_package_is_an_option", {"celery_workers_pip_packages": ["--index-url=http://evil.example/simple"]},
         ["celery_workers_pip_packages[0]: '--index-url=http://evil.example/simple' must be a requirement specifier"]),
    Case("pip_packages_string", {"celery_workers_pip_packages": "redis==5.2.1"}, ["celery_workers_pip_packages: must be a list, got str"]),
    Case("pip_package_vcs_credentials", {"celery_workers_pip_packages": [f"shopsite @ git+https://deploy:{CANARY}@git.example.org/shop.git@v1"]},
         ["celery_workers_pip_packages[0] holds a URL with credentials, which pip's command line shows to every user; give a VCS host's "
          "credentials to git on the host (a deploy key, a credential helper), an index's in celery_workers_pip_index_url"]),
    Case("unit_extra_string", {"celery_workers_unit_extra": "MemoryMax=1G"}, ["celery_workers_unit_extra: must be a list, got str"]),
    # --- the application's packages (README "Your own project")
    Case("requirements_missing", {"celery_workers_requirements_src": "/nonexistent/requirements.txt"},
         ["celery_workers_requirements_src: '/nonexistent/requirements.txt' must be the absolute path of a file on the controller"]),
    Case("requirements_relative", {"celery_workers_requirements_src": "requirements.txt"},
         ["celery_workers_requirements_src: 'requirements.txt' must be the absolute path of a file"]),
    Case("requirements_without_celery", {"celery_workers_requirements_src": str(ROOT / "examples" / "django_project" / "pyproject.toml")},
         ["does not list celery: add celery==5.7.0 (celery_workers_celery_version)"]),
    Case("index_url_not_http", {"celery_workers_pip_index_url": f"ftp://u:{CANARY}@pypi.example.org/simple/"},
         ["celery_workers_pip_index_url: must be an http:// or https:// URL"]),
    Case("index_url_newline", {"celery_workers_pip_index_url": f"https://u:{CANARY}@pypi.example.org/simple/\nX"},
         ["celery_workers_pip_index_url: must be an http:// or https:// URL without newlines"]),
    Case("pip_extra_args_sets_the_index", {"celery_workers_pip_extra_args": ["--index-url=https://pypi.example.org/simple/"]},
         ["celery_workers_pip_extra_args[0] '--index-url=https://pypi.example.org/simple/' is set by the role"]),
    Case("pip_extra_args_no_index", {"celery_workers_pip_extra_args": ["--no-index"]}, ["celery_workers_pip_extra_args[0] '--no-index' is set by the role"]),
    Case("pip_extra_args_credentials", {"celery_workers_pip_extra_args": [f"--extra-index-url=https://u:{CANARY}@pypi.example.org/simple/"]},
         ["celery_workers_pip_extra_args[0] holds a URL with credentials"]),
    Case("wheelhouse_missing", {"celery_workers_wheelhouse_src": "/nonexistent/wheels"},
         ["celery_workers_wheelhouse_src: '/nonexistent/wheels' must be the absolute path of a directory of wheels on the controller"]),
    Case("app_src_empty_without_a_package", {"celery_workers_app_src": ""},
         ["celery_workers_app_src: is empty, so the application (celery_app) must come from pip"]),
    Case("beat_on_two_hosts", {"celery_workers_beat_enabled": True}, ["celery_workers_beat_enabled: true on 2 hosts of this play", "enable beat on one host only"],
         copies=2),
]

# Fields that celery_workers_overrides puts into an entry: the spec at role start
# does not see inside the overrides, the spec check of the host's entries does.
BAD += [
    Case("override_bad_choice", {"celery_workers_overrides": {"default": {"pool": "forking"}}},
         [overridden(0, "default"), "value of pool must be one of", "got: forking"], by=ENTRIES),
    Case("override_unknown_field", {"celery_workers_overrides": {"default": {"colour": "red"}}},
         [overridden(0, "default"), "colour"], by=ENTRIES),
    Case("override_bad_type", {"celery_workers_overrides": {"default": {"max_tasks_per_child": "many"}}},
         [overridden(0, "default"), "max_tasks_per_child"], by=ENTRIES),
    Case("override_queue_beside_queues", {"celery_workers_overrides": {"default": {"queue": "other"}}},
         [overridden(0, "default"), "parameters are mutually exclusive: queues|queue"], by=ENTRIES),
    Case("override_env_not_a_mapping", {"celery_workers": [W0, {"name": "w", "queues": ["q"]}],
                                        "celery_workers_overrides": {"w": {"env": [f"FOO={CANARY}"]}}},
         [overridden(1, "w"), "env"], by=ENTRIES),
]


def _readme_example():
    """The vars of the role in "Example Playbook" of the role's README: the documented example must pass.
    Its broker password comes from a vault variable, given here (the canary)."""
    text = (ROLE / "README.md").read_text()
    section = text.split("\nExample Playbook\n", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    (play,) = yaml.safe_load(block)
    (role,) = play["roles"]
    assert role["role"] == "celery_fleet.celery.celery_workers", role
    example = dict(role["vars"])
    assert "vault_celery_broker_password" in example["celery_workers_broker_url"], example
    assert len(example["celery_workers"]) >= 2, example
    return {**example, "vault_celery_broker_password": f"{CANARY}readme"}


GOOD = {
    "defaults": {},
    "tls_managed_broker": tls(required=True),
    "tls_private_ca_client_cert": tls(ca_content=PEM_CERT, cert_content=PEM_CERT, key_content=PEM_KEY, server_name="mq.internal.example.org"),
    "tls_ca_file_on_the_controller": tls(ca_src=PEM_SRC),
    "tls_unverified_acknowledged": tls(verify=False, unverified_ok=True),
    "empty_list": {"celery_workers": []},
    # README "Your own project": the Django example as a package with its requirements.
    "project_as_a_package": {
        "celery_workers_app_src": "",
        "celery_workers_app_module": "shopsite",
        "celery_workers_pip_packages": ["shopsite==1.0.0"],
        "celery_workers_requirements_src": str(ROOT / "examples" / "django_project" / "requirements.txt"),
        "celery_workers_pip_index_url": f"https://shop:{CANARY}@pypi.example.org/simple/",
        "celery_workers_pip_extra_args": ["--extra-index-url=https://pypi.org/simple"],
        "celery_workers_wheelhouse_src": str(ROOT / "examples" / "django_project"),
    },
    # A package from a git repository (README "Your own project"; molecule/options' opt-worker1 installs one).
    "package_from_git": {"celery_workers_pip_packages": ["shopsite @ git+https://git.example.org/shop.git@v1.0.0"]},
    "readme_example": _readme_example(),
    "molecule_worker2": yaml.safe_load((ROOT / "molecule/default/inventory/host_vars/mol-worker2.yml").read_text()),
    "overrides": {"celery_workers": [W0, {"name": "r", "queue": "reports", "autoscale": {"max": 4, "min": 1}}],
                  "celery_workers_overrides": {"default": {"concurrency": {"per_cpu": 1, "max": 2}, "loglevel": "warning"},
                                               "r": {"concurrency": 1, "env": {"X": CANARY}}}},
    "edge_values": {
        "celery_workers": [
            {"name": "w" * 63, "queues": ["a.b:c@d-e_f"], "concurrency": "4"},
            {"name": "Q-2_x", "queue": "x", "autoscale": {"max": 3, "min": 3}, "pool": "threads", "loglevel": "DEBUG",
             "env": {"TITLE": "50% \"quoted\" $HOME `x` \\ and ; #", "N": 3}, "extra_args": ["--hostname-suffix-not-an-option", "-O", "fair", "--x=%h $y"]},
        ],
        "celery_workers_environment": {"_X": ""},
        "celery_workers_pip_environment": {"PIP_INDEX_URL": "https://pypi.example/simple", "PIP_CERT": "/etc/ssl/certs/ca.crt"},
        "celery_workers_unit_extra": ["MemoryMax=1G", "ExecStartPre=-/bin/true", "ReadOnlyPaths=/srv"],
        "celery_workers_base_dir": "/srv/celery",
        "celery_workers_state_dir": "/srv/celery-state",
    },
    # The number rules compare numbers, not strings ("9" > "10", "100" < "60"), and accept
    # the limits of INT_RE (1 and 10 digits) and equal autoscale bounds.
    "number_edges": {
        "celery_workers": [
            {"name": "a", "queues": ["a"], "time_limit": 10, "soft_time_limit": 9, "concurrency": 1},
            {"name": "b", "queues": ["b"], "autoscale": {"max": 10, "min": 9}, "max_memory_per_child": 9999999999},
            {"name": "c", "queues": ["c"], "time_limit": 100, "soft_time_limit": 60, "prefetch_multiplier": 1},
            {"name": "d", "queues": ["d"], "autoscale": {"max": 2, "min": 2}, "max_tasks_per_child": 1},
        ],
        "celery_workers_stop_timeout": 1,
        "celery_workers_restart_sec": 1,
        "celery_workers_health_timeout": 1,
        "celery_workers_concurrency": 1,
    },
}
# A plan that does not fit, with the check turned into a warning: preflight passes and says so.
WARN_ONLY = "does_not_fit_but_warn"
GOOD[WARN_ONLY] = {"celery_workers_process_memory_mb": 10000000, "celery_workers_memory_check": "warn"}


def _case_vars(variables, index):
    return {"celery_workers_broker_url": f"amqp://celery:{CANARY}{index}@mq.example.org:5672/celery", **variables}


def _inventory():
    bad = {f"{case.id}__{copy}": _case_vars(case.vars, i)
           for i, case in enumerate(BAD) for copy in range(case.copies)}
    good = {name: _case_vars(variables, 1000) for name, variables in GOOD.items()}
    return RolePreflight.inventory(bad, good)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return PREFLIGHT.run(tmp_path_factory.mktemp("preflight"), _inventory())


def test_enough_bad_cases():
    assert len(BAD) >= 20
    assert len({c.id for c in BAD}) == len(BAD), "case ids must be unique"
    # Every refusing task has cases.
    assert {c.by for c in BAD} == {SPEC, ENTRIES, ASSERT, FIT}


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input_is_refused_and_changes_nothing(run, case):
    for copy in range(case.copies):
        PREFLIGHT.assert_refused(run, f"bad__{case.id}__{copy}", case.by, case.expect)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_input_passes_preflight(run, name):
    assert PREFLIGHT.assert_passed(run, f"good__{name}").startswith("celery_workers preflight passed for ")


def test_memory_check_warn_only_warns(run):
    host = f"good__{WARN_ONLY}"
    results = dict(run["by_host"][host])
    assert run["stats"][host]["failures"] == 0 and run["stats"][host]["changed"] == 0
    # The fit assert passed although the plan does not fit, and the warning says why.
    assert not results[FIT].get("failed")
    warning = results[PREFLIGHT.task(WARN_TASK)]
    assert not warning.get("skipped")
    assert warning["msg"].startswith(f"WARNING: {host}: the workers may not fit in memory: 3 processes x 10000000 MB = 30000000 MB, but MemTotal ")
    # Every other good host fits: each of them skipped the warning.
    for name in GOOD.keys() - {WARN_ONLY}:
        assert dict(run["by_host"][f"good__{name}"])[PREFLIGHT.task(WARN_TASK)].get("skipped"), name


def test_secrets_never_in_the_output(run):
    assert CANARY in json.dumps(_inventory()), "the canary must be in the inputs for this test to mean anything"
    assert CANARY not in run["stdout"]
    assert CANARY not in run["stderr"]


def test_every_host_was_run(run):
    expected = {h for group in _inventory()["all"]["children"].values() for h in group["hosts"]}
    assert set(run["stats"]) == expected
    assert run["rc"] == 2  # some hosts failed, none was unreachable

"""Filters shared by the celery_workers and celery_flower roles.

celery_fleet_workers_errors / celery_fleet_flower_errors
    Every configuration error of a role, as a list of messages (empty: valid).
    Each takes a mapping of the role's variables (name -> value). The checks
    repeat what meta/argument_specs.yml checks (types, choices, unknown keys),
    so that a role included with rolespec_validate: false is checked as well,
    and add the rules a spec cannot express. Each message names the variable,
    and for a worker its index, name and field.
    Messages never show a secret: broker URLs, environment values, passwords
    and credentials found in arguments are named, never printed.
    Regular expressions end in \\Z, not $: `$` also matches before a final
    newline.

celery_fleet_broker_tls_files
    The CA, client certificate and key a role deploys for celery_*_broker_tls:
    environment variable, destination, group and mode of each one given.

systemd_env_quote
    A value for a systemd EnvironmentFile=: double-quoted, with \\ " $ `
    escaped.

celery_fleet_workers
    The workers of a host: celery_workers with celery_workers_overrides
    applied, and, given the host's CPU count, relative sizes resolved.

celery_fleet_consumers
    Queue -> the hosts consuming it, over the fleet's hosts (from hostvars).

celery_fleet_host_plan
    A host's resolved workers, their processes and whether they fit in its
    memory (the memory check and the plan).

celery_fleet_plan_table
    The fleet's plan as lines of text (playbooks/plan.yml): per host and
    worker, then per queue.

systemd_unit_hardening
    The sandboxing directives both roles' units share, one per line; the
    argument is the one writable path ("" for none).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from ansible.plugins.filter.core import to_bool, type_debug

CTRL = r"[\x00-\x1f\x7f]"
INT_RE = r"^[1-9][0-9]{0,9}\Z"
INT0_RE = r"^(0|[1-9][0-9]{0,9})\Z"
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z"
QUEUE_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,199}\Z"
ENVKEY_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z"
PATH_RE = r"^(/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)+\Z"
ACCOUNT_RE = r"^[a-z_][a-z0-9_-]{0,31}\Z"
SCHEME_RE = r"^[A-Za-z][A-Za-z0-9+.-]*://"
RELEASE_RE = r"^[0-9]+(\.[0-9]+)*([a-z]+[0-9]*)?(\.post[0-9]+)?\Z"
MODULE_RE = r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_.]*)?\Z"
IPV4_RE = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z"
IPV6_RE = r"^[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}\Z"
HOSTNAME_RE = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
LOOPBACK_RE = r"^(127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|::1|localhost)\Z"
URL_PREFIX_RE = r"^/?[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*/?\Z"
# user:password@ in a URL: credentials belong in the environment file only.
CREDS_RE = r"://[^/@\s]*:[^/@\s]*@"

# celery_*_broker_tls: the keys, and the PEM block each file must hold.
TLS_KEYS = ["ca_src", "ca_content", "cert_src", "cert_content", "key_src", "key_content", "server_name", "verify", "unverified_ok", "required"]
TLS_PEM = {"ca": "CERTIFICATE", "cert": "CERTIFICATE", "key": "PRIVATE KEY"}

BOOLS = ["true", "false", "yes", "no", "on", "off", "1", "0", "y", "n", "t", "f"]
# Directories a role must not take over (own, chmod, write to): the same for both roles.
SYSTEM_DIRS = ["/", "/bin", "/boot", "/dev", "/etc", "/etc/systemd", "/etc/systemd/system", "/home", "/lib", "/lib64", "/opt", "/proc",
               "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/var",
               "/var/lib", "/var/log", "/var/run", "/var/tmp"]

# Sandboxing of every unit of both roles, in the order of the unit file;
# ReadWritePaths= comes right after ProtectSystem= (see systemd_unit_hardening).
HARDENING = [
    "UMask=0027",
    "NoNewPrivileges=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictSUIDSGID=yes",
    "RestrictRealtime=yes",
    "RestrictNamespaces=yes",
    "LockPersonality=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "SystemCallArchitectures=native",
]

WORKER_LOGLEVELS = ["debug", "info", "warning", "error", "critical", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
SIZE_KEYS = ["per_cpu", "min", "max"]
WORKER_POOLS = ["prefork", "threads", "solo", "eventlet", "gevent"]
ENTRY_KEYS = ["name", "queues", "queue", "concurrency", "loglevel", "pool", "autoscale", "max_tasks_per_child", "max_memory_per_child",
              "prefetch_multiplier", "time_limit", "soft_time_limit", "env", "extra_args"]
ENTRY_INT_FIELDS = ["max_tasks_per_child", "max_memory_per_child", "prefetch_multiplier", "time_limit", "soft_time_limit"]
# Worker options the role sets itself (or that would start a second beat): use the entry's fields.
# A short option may follow -E (the only short flag without a value) in one word: -Ec5.
RESERVED_ARGS_RE = r"^(-E*[nQcPlABDX]|--(hostname|queues|exclude-queues|concurrency|autoscale|pool|loglevel|app|beat|detach|uid|gid)(=|\Z))"
# Directives the units set (user, command, hardening): celery_workers_unit_extra must not loosen them.
LOCKED_DIRECTIVES = (["User", "Group", "DynamicUser", "PermissionsStartOnly", "ExecStart", "Type", "EnvironmentFile", "ReadWritePaths", "SecureBits"]
                     + [line.split("=")[0] for line in HARDENING])

FLOWER_LOGLEVELS = ["debug", "info", "warning", "error", "none"]
# Environment variables the Flower role writes itself.
FLOWER_ROLE_ENV = ["CELERY_BROKER_URL", "FLOWER_BASIC_AUTH", "FLOWER_BROKER_API", "FLOWER_UNAUTHENTICATED_API", "FLOWER_ADDRESS", "FLOWER_PORT",
                   "FLOWER_PERSISTENT", "FLOWER_DB", "FLOWER_CONF", "FLOWER_UNIX_SOCKET", "FLOWER_AUTH", "CELERY_BROKER_TLS_CA",
                   "CELERY_BROKER_TLS_CERT", "CELERY_BROKER_TLS_KEY", "CELERY_BROKER_TLS_SERVER_NAME", "CELERY_BROKER_TLS_VERIFY"]


# --- The Jinja tests and filters the rules were first written with, same semantics.

def _s(value):
    """`value | string`."""
    return value if isinstance(value, str) else str(value)


def _is_str(value):
    return isinstance(value, str)


def _is_map(value):
    return isinstance(value, Mapping)


def _is_bool(value):
    return value is True or value is False


def _is_seq(value):
    """Jinja's `sequence` test: has a length and items (strings and mappings too)."""
    try:
        len(value)
        value.__getitem__  # noqa: B018 pylint: disable=pointless-statement
    except Exception:  # pylint: disable=broad-exception-caught
        return False
    return True


def _is_list(value):
    return _is_seq(value) and not _is_str(value) and not _is_map(value)


def _match(pattern, value):
    return re.match(pattern, value) is not None


def _search(pattern, value):
    return re.search(pattern, value) is not None


def show(value):
    """A value shown in a message: one line, at most 60 characters."""
    return _s(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")[:60]


def _positive_int(value):
    return not _is_bool(value) and _match(INT_RE, _s(value))


# --- Rules both roles share.

def _broker_url(errors, var, url, hint=""):
    if not _is_str(url) or len(url) == 0:
        errors.append(f"{var}: must be set to the broker URL, e.g. amqp://user:password@host:5672/vhost{hint}")
    elif _search(CTRL, url):
        errors.append(f"{var}: must not contain newlines or control characters")
    elif not _match(SCHEME_RE, url):
        errors.append(f"{var}: must be a URL starting with a scheme, e.g. amqp://")


def _tls_pem(errors, at, kind, src, content):
    """One of the TLS files: a PEM file on the controller (src) or PEM text (content)."""
    if src not in (None, "") and content not in (None, ""):
        errors.append(f"{at}: give {kind}_src or {kind}_content, not both")
        return False
    if src not in (None, ""):
        if not _is_str(src) or not os.path.isabs(src):
            errors.append(f"{at}.{kind}_src: '{show(src)}' must be an absolute path of a file on the controller")
            return False
        if not os.path.isfile(src):
            errors.append(f"{at}.{kind}_src: {src} does not exist on the controller")
            return False
        with open(src, "rb") as handle:
            text = handle.read(1 << 20).decode("ascii", "replace")
        where = f"{at}.{kind}_src: {src}"
    elif content not in (None, ""):
        if not _is_str(content):
            errors.append(f"{at}.{kind}_content: must be PEM text")
            return False
        text, where = _s(content), f"{at}.{kind}_content"
    else:
        return False
    # A file encrypted with ansible-vault is decrypted by the copy module; its PEM cannot be checked here.
    if not text.startswith("$ANSIBLE_VAULT;") and not _search(r"-----BEGIN ([A-Z]+ )?" + TLS_PEM[kind] + "-----", text):
        errors.append(f"{where} is not PEM: no '-----BEGIN {'... ' if kind == 'key' else ''}{TLS_PEM[kind]}-----' block")
    return True


def _broker_tls(errors, var, tls, url):
    """TLS to the broker: amqps:// verified against the CA (system store when none),
    an optional client certificate and key; errors never show the key or the URL."""
    if not _is_map(tls):
        errors.append(f"{var}: must be a mapping (keys {', '.join(TLS_KEYS)}), {{}} for none")
        return
    for key in tls:
        if key not in TLS_KEYS:
            errors.append(f"{var}: unknown key '{show(key)}' (known: {', '.join(TLS_KEYS)})")
    for key in ["verify", "unverified_ok", "required"]:
        if key in tls and not _is_bool(tls[key]) and _s(tls[key]).lower() not in BOOLS:
            errors.append(f"{var}.{key}: must be true or false, got '{show(tls[key])}'")
            return
    name = tls.get("server_name", "")
    if name not in (None, "") and (not _is_str(name) or not (_match(HOSTNAME_RE, name) or _match(IPV4_RE, name))):
        errors.append(f"{var}.server_name: '{show(name)}' is not a host name")
    files = {kind: _tls_pem(errors, var, kind, tls.get(kind + "_src"), tls.get(kind + "_content")) for kind in TLS_PEM}
    if files["key"] and not files["cert"]:
        errors.append(f"{var}: a client key (key_src or key_content) needs its certificate (cert_src or cert_content)")
    elif files["cert"] and not files["key"]:
        errors.append(f"{var}: a client certificate (cert_src or cert_content) needs its key (key_src or key_content)")
    scheme = _s(url).split("://")[0].lower() if _is_str(url) else ""
    tls_settings = [k for k in TLS_KEYS if k not in ("verify", "unverified_ok", "required") and tls.get(k) not in (None, "")]
    if scheme == "amqp" and to_bool(tls.get("required", False)):
        errors.append(f"{var}.required: is true but the broker URL is amqp:// (plain text): use amqps://, port 5671 by default")
    elif scheme != "amqps" and tls_settings:
        errors.append(f"{var}: {', '.join(tls_settings)} given but the broker URL is not amqps://, so they would not be used")
    if scheme == "amqps" and not to_bool(tls.get("verify", True)) and not to_bool(tls.get("unverified_ok", False)):
        errors.append(f"{var}.verify: false accepts any certificate, so anyone between the hosts and the broker can read the "
                      "password and the tasks; give the broker's CA (ca_src or ca_content), or set unverified_ok: true to accept that")


def _accounts(errors, variables, prefix, who):
    for var in [f"{prefix}_user", f"{prefix}_group"]:
        value = variables[var]
        if not _is_str(value) or not _match(ACCOUNT_RE, value):
            errors.append(f"{var}: '{show(value)}' is not a valid system account name ([a-z_][a-z0-9_-], at most 32)")
        elif value == "root":
            errors.append(f"{var}: {who} must not run as root")


def _paths(errors, variables, prefix, example):
    """Absolute, plain, not a system directory; the service may write only its
    state directory, which must not hold, or be inside, the code or the configuration."""
    dirs = {}
    for var in [f"{prefix}_base_dir", f"{prefix}_config_dir", f"{prefix}_state_dir", f"{prefix}_python"]:
        value = variables[var]
        if not _is_str(value) or not _match(PATH_RE, value) or "/../" in value + "/" or "/./" in value + "/":
            errors.append(f"{var}: '{show(value)}' must be an absolute path of [A-Za-z0-9._/+-], without '.', '..', '//' or a final '/'")
        elif value in SYSTEM_DIRS:
            errors.append(f"{var}: '{value}' is a system directory; use a directory of its own such as {example}")
        elif var != f"{prefix}_python":
            dirs[var] = value
    for a, b in [("state_dir", "base_dir"), ("state_dir", "config_dir"), ("base_dir", "config_dir")]:
        a, b = f"{prefix}_{a}", f"{prefix}_{b}"
        if a in dirs and b in dirs and (dirs[a] == dirs[b] or (dirs[a] + "/").startswith(dirs[b] + "/")
                                        or (dirs[b] + "/").startswith(dirs[a] + "/")):
            errors.append(f"{a} ('{dirs[a]}') and {b} ('{dirs[b]}') must be separate directories, neither inside the other")


def _releases(errors, variables, names, example):
    for var in names:
        if not _match(RELEASE_RE, _s(variables[var])):
            errors.append(f"{var}: '{show(variables[var])}' is not a release number like {example}")


def _pip_packages(errors, var, packages):
    if not _is_list(packages):
        errors.append(f"{var}: must be a list of requirement specifiers")
        return
    for i, package in enumerate(packages):
        if not _is_str(package) or len(package) == 0 or _search(CTRL, package) or _match("^-", package):
            errors.append(f"{var}[{i}]: '{show(package)}' must be a requirement specifier (no options, no newlines)")


def _env(errors, label, env, not_mapping, reserved=(), pip=False):
    """An environment mapping: label names it in messages ("var" or "... field env").
    pip: Ansible puts the pip environment on the command line it runs (ps on the
    host, -vvv output), so no credentials there."""
    if not _is_map(env):
        errors.append(not_mapping)
        return
    for key, value in env.items():
        if not _is_str(key) or not _match(ENVKEY_RE, key):
            errors.append(f"{label}: key '{show(key)}' is not a valid environment variable name")
        elif key.upper() in reserved:
            errors.append(f"{label}.{key}: is set by the role; use its celery_flower_* variable")
        elif value is None or _is_map(value) or (_is_seq(value) and not _is_str(value)) or _search(CTRL, _s(value)):
            errors.append(f"{label}.{key}: value must be a string or number without newlines or control characters")
        elif pip and _search(CREDS_RE, _s(value)):
            errors.append(f"{label}.{key}: holds a URL with credentials, which would show in ps and -vvv output; "
                          "put them in a pip.conf or .netrc on the host")


def _var_env(errors, var, env, **kwargs):
    _env(errors, var, env, f"{var}: must be a mapping of VARIABLE: value", **kwargs)


def _integers(errors, variables, names, zero=False):
    for var in names:
        value = variables[var]
        if _is_bool(value) or not _match(INT0_RE if zero else INT_RE, _s(value)):
            errors.append(f"{var}: must be {'0 or ' if zero else ''}a positive integer, got '{show(value)}'")


def _booleans(errors, variables, names):
    for var in names:
        value = variables[var]
        if not _is_bool(value) and _s(value).lower() not in BOOLS:
            errors.append(f"{var}: must be true or false, got '{show(value)}'")


# --- celery_workers

def _unit_extra(errors, lines):
    var = "celery_workers_unit_extra"
    if not _is_list(lines):
        errors.append(f"{var}: must be a list of 'Directive=value' lines")
        return
    for i, line in enumerate(lines):
        at = f"{var}[{i}]"
        if not _is_str(line) or _search(CTRL, line) or not _match("^[A-Z][A-Za-z]+=", line):
            errors.append(f"{at}: '{show(line)}' must be one 'Directive=value' line")
        elif line.split("=")[0] in LOCKED_DIRECTIVES:
            errors.append(f"{at}: {line.split('=')[0]}= is set by the role (user, command or hardening) and cannot be changed here")
        elif _match("^Exec[A-Za-z]*=[-@:+!]*[+!]", line):
            errors.append(f"{at}: {line.split('=')[0]}= with a '+' or '!' prefix would run as root")
        elif _search(CREDS_RE, line):
            errors.append(f"{at}: holds a URL with credentials; unit files are world-readable, use celery_workers_environment")


def _worker_queues(errors, at, w):
    if "queues" in w and "queue" in w:
        errors.append(f"{at}: fields queue and queues are mutually exclusive")
    queues = w["queues"] if "queues" in w else ([w["queue"]] if "queue" in w else None)
    if queues is None:
        errors.append(f"{at}: field queues is required (a list of queue names, or queue: one name)")
    elif not _is_list(queues) or len(queues) == 0:
        errors.append(f"{at}: field queues must be a non-empty list of queue names")
    else:
        _queue_names(errors, f"{at}: field queues", queues)


def _queue_names(errors, at, queues):
    for queue in queues:
        if not _is_str(queue) or not _match(QUEUE_RE, queue):
            errors.append(f"{at}: '{show(queue)}' is not a safe queue name ([A-Za-z0-9_][A-Za-z0-9_.:@-], no commas, spaces or newlines)")
    # As Ansible's `unique` filter compares them: as strings, case-insensitively.
    if len({_s(queue).lower() for queue in queues}) != len(queues):
        errors.append(f"{at} lists a queue twice")


def _is_number(value):
    return not _is_bool(value) and (isinstance(value, (int, float)) or _match(r"^[0-9]+(\.[0-9]+)?\Z", _s(value))) and float(_s(value)) > 0


def _size(errors, at, value):
    """A pool size: a positive integer, or {per_cpu: N, min: A, max: B} (relative to the host's CPUs)."""
    if not _is_map(value):
        if not _positive_int(value):
            errors.append(f"{at} must be a positive integer or {{per_cpu: N, min: A, max: B}}, got '{show(value)}'")
        return
    for key in value:
        if key not in SIZE_KEYS:
            errors.append(f"{at}: unknown key '{show(key)}' (known: {', '.join(SIZE_KEYS)})")
    if "per_cpu" not in value or not _is_number(value["per_cpu"]):
        errors.append(f"{at}: per_cpu must be a positive number (pool processes per CPU), got '{show(value.get('per_cpu'))}'")
    for key in ("min", "max"):
        if key in value and not _positive_int(value[key]):
            errors.append(f"{at}: {key} must be a positive integer, got '{show(value[key])}'")
    if all(key in value and _positive_int(value[key]) for key in ("min", "max")) and int(_s(value["min"])) > int(_s(value["max"])):
        errors.append(f"{at}: min ({value['min']}) must be <= max ({value['max']})")


def _resolve(value, cpus):
    """A valid size as a number: a relative one is per_cpu x cpus rounded down, then kept within min (default 1) and max."""
    if not _is_map(value):
        return int(_s(value))
    size = max(int(float(_s(value["per_cpu"])) * cpus), int(_s(value.get("min", 1))))
    return min(size, int(_s(value["max"]))) if "max" in value else size


def _worker_numbers(errors, at, w):
    for field in ENTRY_INT_FIELDS:
        if field in w and not _positive_int(w[field]):
            errors.append(f"{at}: field {field} must be a positive integer, got '{show(w[field])}'")
    if "concurrency" in w:
        _size(errors, f"{at}: field concurrency", w["concurrency"])
    # Compared as numbers, not strings: "100" < "60".
    if ("time_limit" in w and "soft_time_limit" in w and _match(INT_RE, _s(w["soft_time_limit"])) and _match(INT_RE, _s(w["time_limit"]))
            and int(_s(w["soft_time_limit"])) >= int(_s(w["time_limit"]))):
        errors.append(f"{at}: field soft_time_limit must be lower than time_limit")
    if "autoscale" in w:
        if "concurrency" in w:
            errors.append(f"{at}: fields concurrency and autoscale are mutually exclusive")
        scale = w["autoscale"]
        if not _is_map(scale) or "max" not in scale or "min" not in scale or len(scale) != 2:
            errors.append(f"{at}: field autoscale must be a mapping {{max: N, min: M}}")
        else:
            _size(errors, f"{at}: field autoscale max", scale["max"])
            _size(errors, f"{at}: field autoscale min", scale["min"])
            if _positive_int(scale["max"]) and _positive_int(scale["min"]) and int(_s(scale["max"])) < int(_s(scale["min"])):
                errors.append(f"{at}: field autoscale max ({scale['max']}) must be >= min ({scale['min']})")


def _worker_args(errors, at, args):
    if not _is_list(args):
        errors.append(f"{at}: field extra_args must be a list of arguments")
        return
    for i, arg in enumerate(args):
        at_arg = f"{at}: field extra_args[{i}]"
        if not _is_str(arg) or len(arg) == 0 or _search(CTRL, arg):
            errors.append(f"{at_arg} must be a non-empty string without newlines or control characters")
        elif _search(CREDS_RE, arg):
            errors.append(f"{at_arg} holds a URL with credentials; arguments are world-readable (unit file, ps), use env")
        elif _match(RESERVED_ARGS_RE, arg):
            errors.append(f"{at_arg} '{show(arg)}' is set by the role; use the entry's fields (name, queues, concurrency, autoscale, pool, loglevel)")


def _overrides(errors, overrides, workers):
    var = "celery_workers_overrides"
    if not _is_map(overrides):
        errors.append(f"{var}: must be a mapping of worker name -> fields to change, got {type_debug(overrides)}")
        return
    names = [w["name"] for w in workers if _is_map(w) and "name" in w] if _is_list(workers) else []
    for name, fields in overrides.items():
        at = f"{var}.{show(name)}"
        if name not in names:
            errors.append(f"{at}: no worker named '{show(name)}' in celery_workers (names: {', '.join(map(show, names)) or 'none'})")
        elif not _is_map(fields):
            errors.append(f"{at}: must be a mapping of fields to change (or present: false), got {type_debug(fields)}")
        else:
            for key in fields:
                if key not in ENTRY_KEYS + ["present"] or key == "name":
                    errors.append(f"{at}: field '{show(key)}' cannot be overridden (known: present, {', '.join(ENTRY_KEYS[1:])})")
            if "present" in fields and not _is_bool(fields["present"]):
                errors.append(f"{at}: field present must be true or false, got '{show(fields['present'])}'")


def _compose(workers, overrides):
    """(index in celery_workers, entry, overridden) for each worker of the host, overrides applied.
    An override's concurrency replaces the entry's autoscale and the other way round."""
    out = []
    for i, w in enumerate(workers):
        fields = overrides.get(w.get("name")) if _is_map(w) and _is_map(overrides) else None
        if not _is_map(fields):
            out.append((i, w, False))
        elif fields.get("present", True) is not False:
            merged = dict(w)
            for size, other in (("concurrency", "autoscale"), ("autoscale", "concurrency")):
                if size in fields:
                    merged.pop(other, None)
            merged.update({k: v for k, v in fields.items() if k != "present"})
            out.append((i, merged, True))
    return out


def _workers(errors, workers, overrides):
    if not _is_list(workers):
        errors.append(f"celery_workers: must be a list of workers ([] for none), got {type_debug(workers)}")
        return
    _overrides(errors, overrides, workers)
    seen = []
    for i, w, overridden in _compose(workers, overrides):
        if not _is_map(w):
            errors.append(f"celery_workers[{i}]: must be a mapping with at least name and queues, got {type_debug(w)}")
            continue
        name = w["name"] if "name" in w else ""
        at = f"celery_workers[{i}] (name '{show(name)}'{', with celery_workers_overrides' if overridden else ''})"
        for key in w:
            if key not in ENTRY_KEYS:
                errors.append(f"{at}: unknown field '{show(key)}' (known: {', '.join(ENTRY_KEYS)})")
        if not _is_str(name) or not _match(NAME_RE, name):
            errors.append(f"{at}: field name must match [A-Za-z0-9][A-Za-z0-9_-]{{0,62}} (letters, digits, - and _; no /, .., spaces, %, @ or newlines)")
        elif name.lower() in seen:
            errors.append(f"{at}: field name is a duplicate (compared case-insensitively): worker names must be unique on a host")
        seen.append(_s(name).lower())
        _worker_queues(errors, at, w)
        _worker_numbers(errors, at, w)
        if "loglevel" in w and (not _is_str(w["loglevel"]) or w["loglevel"] not in WORKER_LOGLEVELS):
            errors.append(f"{at}: field loglevel '{show(w['loglevel'])}' is not one of {', '.join(WORKER_LOGLEVELS[:5])}")
        if "pool" in w and (not _is_str(w["pool"]) or w["pool"] not in WORKER_POOLS):
            errors.append(f"{at}: field pool '{show(w['pool'])}' is not one of {', '.join(WORKER_POOLS)}")
        if "env" in w:
            _env(errors, f"{at}: field env", w["env"], f"{at}: field env must be a mapping of VARIABLE: value")
        if "extra_args" in w:
            _worker_args(errors, at, w["extra_args"])


def celery_fleet_workers_errors(variables, beat_hosts, consumers=None):
    """Every error of the celery_workers role's variables.
    beat_hosts: the hosts of the play (all of them, whatever its serial) with beat enabled.
    consumers: queue -> hosts consuming it over the fleet (celery_fleet_consumers), for
    celery_workers_required_queues."""
    v = variables
    errors = []
    _broker_url(errors, "celery_workers_broker_url", v["celery_workers_broker_url"])
    _broker_tls(errors, "celery_workers_broker_tls", v["celery_workers_broker_tls"], v["celery_workers_broker_url"])
    if not _is_str(v["celery_workers_result_backend"]) or _search(CTRL, v["celery_workers_result_backend"]):
        errors.append("celery_workers_result_backend: must be a string without newlines or control characters")
    _accounts(errors, v, "celery_workers", "workers")
    _paths(errors, v, "celery_workers", "/opt/celery")
    if not _is_str(v["celery_workers_app_module"]) or not _match(MODULE_RE, v["celery_workers_app_module"]):
        errors.append(f"celery_workers_app_module: '{show(v['celery_workers_app_module'])}' is not a Python module[:attribute] name")
    _releases(errors, v, ["celery_workers_celery_version"], "5.7.0")
    _pip_packages(errors, "celery_workers_pip_packages", v["celery_workers_pip_packages"])
    _var_env(errors, "celery_workers_pip_environment", v["celery_workers_pip_environment"], pip=True)
    _var_env(errors, "celery_workers_environment", v["celery_workers_environment"])
    _unit_extra(errors, v["celery_workers_unit_extra"])
    _integers(errors, v, ["celery_workers_stop_timeout", "celery_workers_restart_sec", "celery_workers_health_timeout", "celery_workers_concurrency"])
    for var in ["celery_workers_loglevel", "celery_workers_beat_loglevel"]:
        if not _is_str(v[var]) or v[var] not in WORKER_LOGLEVELS:
            errors.append(f"{var}: '{show(v[var])}' is not one of {', '.join(WORKER_LOGLEVELS[:5])}")
    if not _is_str(v["celery_workers_pool"]) or v["celery_workers_pool"] not in WORKER_POOLS:
        errors.append(f"celery_workers_pool: '{show(v['celery_workers_pool'])}' is not one of {', '.join(WORKER_POOLS)}")
    if v["celery_workers_restart_strategy"] not in ["rolling", "parallel"]:
        errors.append(f"celery_workers_restart_strategy: '{show(v['celery_workers_restart_strategy'])}' is not one of rolling, parallel")
    _booleans(errors, v, ["celery_workers_install_os_packages", "celery_workers_health_check", "celery_workers_remove_absent",
                          "celery_workers_beat_enabled"])
    # Beat: one scheduler per play.
    if to_bool(v["celery_workers_beat_enabled"]) and len(beat_hosts) > 1:
        errors.append(f"celery_workers_beat_enabled: true on {len(beat_hosts)} hosts of this play ({', '.join(beat_hosts)}): enable beat on one host only")
    _workers(errors, v["celery_workers"], v["celery_workers_overrides"])
    _integers(errors, v, ["celery_workers_process_memory_mb"])
    _integers(errors, v, ["celery_workers_memory_reserve_mb"], zero=True)
    if v["celery_workers_memory_check"] not in ["fail", "warn"]:
        errors.append(f"celery_workers_memory_check: '{show(v['celery_workers_memory_check'])}' is not one of fail, warn")
    required = v["celery_workers_required_queues"]
    if not _is_list(required):
        errors.append("celery_workers_required_queues: must be a list of queue names")
    else:
        _queue_names(errors, "celery_workers_required_queues", required)
        for queue in required if consumers is not None else []:
            if _is_str(queue) and not consumers.get(queue):
                errors.append(f"celery_workers_required_queues: queue '{show(queue)}' has no consumer on any host of the fleet "
                              f"(group {show(v['celery_workers_fleet_group'])}); tasks routed there would wait forever: add it to a worker's queues")
    return errors


def celery_fleet_workers(workers, overrides, cpus=None):
    """The host's workers: celery_workers with celery_workers_overrides applied (a worker
    with present: false left out); with cpus, concurrency and autoscale's max and min
    resolved to numbers. Expects valid input (preflight)."""
    out = []
    for _, w, _ in _compose(workers, overrides):
        w = dict(w)
        if cpus is not None and "concurrency" in w:
            w["concurrency"] = _resolve(w["concurrency"], int(cpus))
        if cpus is not None and "autoscale" in w:
            w["autoscale"] = {"max": _resolve(w["autoscale"]["max"], int(cpus)), "min": _resolve(w["autoscale"]["min"], int(cpus))}
        out.append(w)
    return out


def celery_fleet_consumers(hostvars, hosts, default_workers):
    """Queue -> sorted hosts with a worker consuming it, over hosts (their inventory variables;
    default_workers for a host without celery_workers). Entries that are not valid are skipped:
    their own host's preflight reports them."""
    consumers = {}
    for host in hosts:
        variables = hostvars[host]
        workers = variables["celery_workers"] if "celery_workers" in variables else default_workers
        overrides = variables["celery_workers_overrides"] if "celery_workers_overrides" in variables else {}
        if not _is_list(workers):
            continue
        for _, w, _ in _compose(workers, overrides if _is_map(overrides) else {}):
            queues = (w.get("queues") if "queues" in w else [w.get("queue")]) if _is_map(w) else []
            for queue in queues if _is_list(queues) else []:
                if _is_str(queue):
                    consumers.setdefault(queue, set()).add(host)
    return {queue: sorted(found) for queue, found in sorted(consumers.items())}


def celery_fleet_host_plan(workers, cpus, memory_mb, defaults):
    """What a host's resolved workers need. defaults: celery_workers_pool, _concurrency,
    _process_memory_mb and _memory_reserve_mb. A prefork worker is its main process plus
    one per pool slot (autoscale: max); the other pools run in one process."""
    rows, errors = [], []
    for w in workers:
        pool = w.get("pool", defaults["pool"])
        if "autoscale" in w:
            low, high = w["autoscale"]["min"], w["autoscale"]["max"]
            if low > high:
                errors.append(f"celery_workers worker '{w['name']}': autoscale max resolves to {high}, below min {low}, on {cpus} CPUs")
        else:
            low = high = int(_s(w.get("concurrency", defaults["concurrency"])))
        processes = high + 1 if pool == "prefork" else 1
        rows.append({"name": w["name"], "queues": list(w["queues"] if "queues" in w else [w["queue"]]), "pool": pool,
                     "min": low, "max": high, "size": f"{low}..{high}" if "autoscale" in w else str(high), "processes": processes})
    total = sum(row["processes"] for row in rows)
    need = total * int(_s(defaults["process_memory_mb"]))
    available = int(memory_mb) - int(_s(defaults["memory_reserve_mb"]))
    biggest = max(rows, key=lambda row: row["processes"], default=None)
    return {"cpus": int(cpus), "memory_mb": int(memory_mb), "workers": rows, "processes": total,
            "process_memory_mb": int(_s(defaults["process_memory_mb"])), "need_mb": need,
            "available_mb": available, "fits": need <= available, "errors": errors,
            "message": (f"{total} processes x {defaults['process_memory_mb']} MB = {need} MB, but MemTotal {memory_mb} MB - "
                        f"reserve {defaults['memory_reserve_mb']} MB leaves {available} MB"
                        + (f"; biggest worker '{biggest['name']}': {biggest['processes']} processes ({biggest['pool']} {biggest['size']})"
                           if biggest else ""))}


# --- celery_flower

def _flower_users(errors, users):
    var = "celery_flower_basic_auth"
    if not _is_list(users):
        errors.append(f"{var}: must be a list of {{user: NAME, password: SECRET}}")
        return
    seen = []
    for i, u in enumerate(users):
        at = f"{var}[{i}]"
        if not _is_map(u):
            errors.append(f"{at}: must be a mapping {{user: NAME, password: SECRET}}")
            continue
        for key in u:
            if key not in ["user", "password"]:
                errors.append(f"{at}: unknown field '{show(key)}' (known: user, password)")
        user = u["user"] if "user" in u else None
        if ("user" not in u or not _is_str(user) or len(user) == 0 or _search(CTRL, user) or _search("[:,]", user)
                or user != user.strip()):
            errors.append(f"{at}: field user must be a non-empty name without control characters, spaces around it, : or ,")
        elif user in seen:
            errors.append(f"{at}: field user '{show(user)}' is a duplicate")
        else:
            seen.append(user)
        password = u["password"] if "password" in u else None
        if password is None or _is_map(password) or (_is_seq(password) and not _is_str(password)):
            errors.append(f"{at}: field password is required (a string)")
        elif len(_s(password)) < 8:
            errors.append(f"{at}: field password must have 8 characters or more")
        elif _search(CTRL, _s(password)) or _search(",", _s(password)):
            errors.append(f"{at}: field password must not contain newlines, control characters or , (FLOWER_BASIC_AUTH separates users with commas)")


def celery_fleet_flower_errors(variables):
    """Every error of the celery_flower role's variables."""
    v = variables
    errors = []
    users = v["celery_flower_basic_auth"]
    _booleans(errors, v, ["celery_flower_allow_unauthenticated", "celery_flower_public_endpoints", "celery_flower_persistent",
                          "celery_flower_install_os_packages"])
    # Listening address and port
    addr, port = v["celery_flower_address"], v["celery_flower_port"]
    if not _is_str(addr) or not (_match(IPV4_RE, addr) or _match(IPV6_RE, addr) or (_match(HOSTNAME_RE, addr) and not _match(r"^[0-9.]+\Z", addr))):
        errors.append(f"celery_flower_address: '{show(addr)}' is not an IPv4 or IPv6 address or a host name")
    elif not _match(LOOPBACK_RE, addr) and not to_bool(v["celery_flower_public_endpoints"]):
        errors.append(f"celery_flower_address: '{show(addr)}' is not a loopback address, and Flower serves /metrics (worker and task names) "
                      "and /healthcheck without authentication to anyone who reaches it: keep 127.0.0.1 behind a reverse proxy or an SSH "
                      "tunnel, or set celery_flower_public_endpoints: true")
    if not _positive_int(port) or not 1024 <= int(_s(port)) <= 65535:
        errors.append("celery_flower_port: must be a TCP port from 1024 to 65535 (Flower has no capability to bind a lower one), "
                      f"got '{show(port)}'")
    # Users
    _flower_users(errors, users)
    if not (_is_list(users) and len(users) > 0) and _s(v["celery_flower_allow_unauthenticated"]).lower() not in ["true", "yes", "on", "1", "y", "t"]:
        errors.append(f"celery_flower_basic_auth: is empty, so anybody who reaches {show(addr)}:{show(port)} could see every task and shut the workers "
                      "down; add a user (password in Ansible Vault), or set celery_flower_allow_unauthenticated: true")
    # Broker and management API (never shown: they hold passwords)
    _broker_url(errors, "celery_flower_broker_url", v["celery_flower_broker_url"], " (default: celery_workers_broker_url)")
    _broker_tls(errors, "celery_flower_broker_tls", v["celery_flower_broker_tls"], v["celery_flower_broker_url"])
    api = v["celery_flower_broker_api"]
    if not _is_str(api):
        errors.append('celery_flower_broker_api: must be a string, the management API URL or ""')
    elif _search(CTRL, api):
        errors.append("celery_flower_broker_api: must not contain newlines or control characters")
    elif len(api) > 0 and not _match(r"^https?://[^/\s]+/", api):
        errors.append("celery_flower_broker_api: must be an http:// or https:// URL with a host and a path, e.g. http://user:password@mq:15672/api/")
    # Flower's options
    _integers(errors, v, ["celery_flower_max_tasks", "celery_flower_restart_sec", "celery_flower_health_timeout"])
    _integers(errors, v, ["celery_flower_state_save_interval", "celery_flower_purge_offline_workers"], zero=True)
    prefix = v["celery_flower_url_prefix"]
    if not _is_str(prefix) or (len(prefix) > 0 and not _match(URL_PREFIX_RE, prefix)):
        errors.append(f"celery_flower_url_prefix: '{show(prefix)}' must be \"\" or a path of [A-Za-z0-9_-] segments, e.g. flower")
    level = v["celery_flower_loglevel"]
    if not _is_str(level) or level.lower() not in FLOWER_LOGLEVELS:
        errors.append(f"celery_flower_loglevel: '{show(level)}' is not one of {', '.join(FLOWER_LOGLEVELS)}")
    _var_env(errors, "celery_flower_environment", v["celery_flower_environment"], reserved=FLOWER_ROLE_ENV)
    # Installation, account and paths
    _releases(errors, v, ["celery_flower_version", "celery_flower_celery_version"], "2.2.0")
    _pip_packages(errors, "celery_flower_pip_packages", v["celery_flower_pip_packages"])
    _var_env(errors, "celery_flower_pip_environment", v["celery_flower_pip_environment"], pip=True)
    _accounts(errors, v, "celery_flower", "Flower")
    _paths(errors, v, "celery_flower", "/opt/celery-flower")
    return errors


def _table(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def celery_fleet_plan_table(hosts, hostvars):
    """Lines of the plan: a row per worker of each host (its resolved size and
    processes) and a total row with the host's memory fit, then per queue the
    hosts and the total pool size consuming it. A host without a plan (its
    preflight failed or did not run) is listed as such."""
    rows = [["HOST", "CPUS", "MEM_MB", "WORKER", "QUEUES", "POOL", "SIZE", "PROCS", "NEED_MB", "FREE_MB", "FIT"]]
    queues = {}
    for host in hosts:
        plan = hostvars[host]["__celery_workers_plan"] if "__celery_workers_plan" in hostvars[host] else None
        if plan is None:
            rows.append([host, "-", "-", "(no plan: preflight failed or did not run)"] + [""] * 7)
            continue
        for row in plan["workers"]:
            rows.append([host, plan["cpus"], plan["memory_mb"], row["name"], ",".join(row["queues"]), row["pool"], row["size"],
                         row["processes"], "", "", ""])
            for queue in row["queues"]:
                entry = queues.setdefault(queue, {"hosts": [], "min": 0, "max": 0})
                if host not in entry["hosts"]:
                    entry["hosts"].append(host)
                entry["min"] += row["min"]
                entry["max"] += row["max"]
        rows.append([host, plan["cpus"], plan["memory_mb"], "(total)", "", "", "", plan["processes"], plan["need_mb"],
                     plan["available_mb"], "yes" if plan["fits"] else "NO"])
    queue_rows = [["QUEUE", "HOSTS", "TOTAL_SIZE"]]
    for queue, entry in sorted(queues.items()):
        total = str(entry["max"]) if entry["min"] == entry["max"] else f"{entry['min']}..{entry['max']}"
        queue_rows.append([queue, ",".join(entry["hosts"]), total])
    return _table(rows) + [""] + _table(queue_rows)


# --- Template pieces

def celery_fleet_broker_tls_files(tls, directory, group):
    """The broker TLS files a role deploys (celery_*_broker_tls): for each one
    given (kind ca, cert or key), the environment variable that names it, where
    it goes in directory, and its group and mode (the key is not world-readable)."""
    given = {key.rsplit("_", 1)[0] for key, value in (tls or {}).items()
             if key.endswith(("_src", "_content")) and value not in (None, "")}
    files = [("ca", "CELERY_BROKER_TLS_CA", "ca.pem", "root", "0644"),
             ("cert", "CELERY_BROKER_TLS_CERT", "client.pem", "root", "0644"),
             ("key", "CELERY_BROKER_TLS_KEY", "client.key", group, "0640")]
    return [{"kind": kind, "env": env, "dest": f"{directory}/{name}", "group": owner, "mode": mode}
            for kind, env, name, owner, mode in files if kind in given]


def systemd_env_quote(value):
    """A value for a systemd EnvironmentFile=: double-quoted, with \\ " $ ` escaped."""
    escaped = _s(value).replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
    return f'"{escaped}"'


def systemd_unit_hardening(rw_path):
    """The shared sandboxing lines; ReadWritePaths=rw_path after ProtectSystem= unless rw_path is empty."""
    lines = list(HARDENING)
    if rw_path:
        lines.insert(lines.index("ProtectSystem=strict") + 1, f"ReadWritePaths={rw_path}")
    return "\n".join(lines)


class FilterModule:
    """Validation and template pieces of the celery_workers and celery_flower roles."""

    def filters(self):
        return {
            "celery_fleet_workers_errors": celery_fleet_workers_errors,
            "celery_fleet_flower_errors": celery_fleet_flower_errors,
            "celery_fleet_workers": celery_fleet_workers,
            "celery_fleet_consumers": celery_fleet_consumers,
            "celery_fleet_host_plan": celery_fleet_host_plan,
            "celery_fleet_plan_table": celery_fleet_plan_table,
            "celery_fleet_broker_tls_files": celery_fleet_broker_tls_files,
            "systemd_env_quote": systemd_env_quote,
            "systemd_unit_hardening": systemd_unit_hardening,
        }

# Copyright (c) celery-fleet maintainers
# MIT License

# Note that this plugin util is PRIVATE to the collection celery_fleet.celery:
# the filters celery_fleet_workers_errors and celery_fleet_flower_errors use it.

"""The rules both roles' preflight shares that an argument spec cannot say.

Types, choices, required, mutually exclusive and unknown keys are stated once,
in each role's meta/argument_specs.yml, and Ansible checks them before the
role's first task. What is left here: the shape of values (names, paths,
URLs, PEM files), ranges, and rules that join several fields. Every function
appends messages to ``errors``; each message names the variable (and for a
worker its index, name and field) and never shows a secret: broker URLs,
environment values, passwords and keys are named, never printed.

Regular expressions end in \\Z, not $: `$` also matches before a final newline.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from ansible.module_utils.parsing.convert_bool import BOOLEANS_TRUE

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
IPV4_RE = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z"
IPV6_RE = r"^[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}\Z"
HOSTNAME_RE = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
# user:password@ in a URL: credentials belong in the environment file only.
CREDS_RE = r"://[^/@\s]*:[^/@\s]*@"

# celery_*_broker_tls: the PEM block each file must hold.
TLS_PEM = {"ca": "CERTIFICATE", "cert": "CERTIFICATE", "key": "PRIVATE KEY"}

# Directories a role must not take over (own, chmod, write to): the same for both roles.
SYSTEM_DIRS = ["/", "/bin", "/boot", "/dev", "/etc", "/etc/systemd", "/etc/systemd/system", "/home", "/lib", "/lib64", "/opt", "/proc",
               "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/var",
               "/var/lib", "/var/log", "/var/run", "/var/tmp"]


def text(value):
    """`value | string`."""
    return value if isinstance(value, str) else str(value)


def is_map(value):
    return isinstance(value, Mapping)


def is_list(value):
    """A list or tuple (a YAML sequence), not a string or a mapping."""
    return isinstance(value, (list, tuple))


def matches(pattern, value):
    return isinstance(value, str) and re.match(pattern, value) is not None


def has(pattern, value):
    return re.search(pattern, text(value)) is not None


def truthy(value):
    """What `value | bool` gives for the spec's booleans (true, "yes", 1, ...)."""
    return text(value).lower() in BOOLEANS_TRUE


def type_name(value):
    """The type of a value as the YAML it came from says it (not Ansible's tagged subclass of it)."""
    return next(kind.__name__ for kind in type(value).__mro__ if kind.__module__ == "builtins")


def lists(errors, variables, options, at=""):
    """Options the spec types as list that are not one: to check them, Ansible's argument spec
    splits a string at its commas, but the role gets the string (a template would loop over
    its characters)."""
    for name, opt in options.items():
        if opt.get("type") == "list" and name in variables and variables[name] is not None and not is_list(variables[name]):
            errors.append(f"{at}{name}: must be a list, got {type_name(variables[name])} '{show(variables[name])}'")


def show(value):
    """A value shown in a message: one line, at most 60 characters."""
    return text(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")[:60]


def positive_int(value, zero=False):
    """An integer (or its digits: role specs check types without converting) of at least 1 (0 with zero)."""
    return not isinstance(value, bool) and re.match(INT0_RE if zero else INT_RE, text(value)) is not None


def integers(errors, variables, names, zero=False):
    """Variables the spec types as int that must be positive (or 0 with zero)."""
    for var in names:
        if not positive_int(variables[var], zero):
            errors.append(f"{var}: must be {'0 or ' if zero else ''}a positive integer, got '{show(variables[var])}'")


def broker_url(errors, var, url, hint=""):
    if not isinstance(url, str) or len(url) == 0:
        errors.append(f"{var}: must be set to the broker URL, e.g. amqp://user:password@host:5672/vhost{hint}")
    elif has(CTRL, url):
        errors.append(f"{var}: must not contain newlines or control characters")
    elif not matches(SCHEME_RE, url):
        errors.append(f"{var}: must be a URL starting with a scheme, e.g. amqp://")


def _tls_pem(errors, at, kind, src, content):
    """One of the TLS files: a PEM file on the controller (src) or PEM text (content); True when given."""
    if src not in (None, ""):
        if not os.path.isabs(text(src)):
            errors.append(f"{at}.{kind}_src: '{show(src)}' must be an absolute path of a file on the controller")
            return True
        if not os.path.isfile(src):
            errors.append(f"{at}.{kind}_src: {src} does not exist on the controller")
            return True
        with open(src, "rb") as handle:
            pem = handle.read(1 << 20).decode("ascii", "replace")
        where = f"{at}.{kind}_src: {src}"
    elif content not in (None, ""):
        pem, where = text(content), f"{at}.{kind}_content"
    else:
        return False
    # A file encrypted with ansible-vault is decrypted by the copy module; its PEM cannot be checked here.
    if not pem.startswith("$ANSIBLE_VAULT;") and not has(r"-----BEGIN ([A-Z]+ )?" + TLS_PEM[kind] + "-----", pem):
        errors.append(f"{where} is not PEM: no '-----BEGIN {'... ' if kind == 'key' else ''}{TLS_PEM[kind]}-----' block")
    return True


def broker_tls(errors, var, tls, url):
    """TLS to the broker: the PEM files, the client pair, the server name, and the URL's scheme.
    Keys, types and src/content exclusions are the spec's; messages never show the key or the URL."""
    if not is_map(tls):
        return
    name = tls.get("server_name")
    if name not in (None, "") and not (matches(HOSTNAME_RE, name) or matches(IPV4_RE, name)):
        errors.append(f"{var}.server_name: '{show(name)}' is not a host name")
    given = {kind: _tls_pem(errors, var, kind, tls.get(kind + "_src"), tls.get(kind + "_content")) for kind in TLS_PEM}
    if given["key"] and not given["cert"]:
        errors.append(f"{var}: a client key (key_src or key_content) needs its certificate (cert_src or cert_content)")
    elif given["cert"] and not given["key"]:
        errors.append(f"{var}: a client certificate (cert_src or cert_content) needs its key (key_src or key_content)")
    scheme = url.split("://")[0].lower() if isinstance(url, str) else ""
    settings = [key for key, value in tls.items() if key not in ("verify", "unverified_ok", "required") and value not in (None, "")]
    if scheme == "amqp" and truthy(tls.get("required", False)):
        errors.append(f"{var}.required: is true but the broker URL is amqp:// (plain text): use amqps://, port 5671 by default")
    elif scheme != "amqps" and settings:
        errors.append(f"{var}: {', '.join(settings)} given but the broker URL is not amqps://, so they would not be used")
    if scheme == "amqps" and not truthy(tls.get("verify", True)) and not truthy(tls.get("unverified_ok", False)):
        errors.append(f"{var}.verify: false accepts any certificate, so anyone between the hosts and the broker can read the "
                      "password and the tasks; give the broker's CA (ca_src or ca_content), or set unverified_ok: true to accept that")


def accounts(errors, variables, prefix, who):
    for var in [f"{prefix}_user", f"{prefix}_group"]:
        value = variables[var]
        if not matches(ACCOUNT_RE, value):
            errors.append(f"{var}: '{show(value)}' is not a valid system account name ([a-z_][a-z0-9_-], at most 32)")
        elif value == "root":
            errors.append(f"{var}: {who} must not run as root")


def paths(errors, variables, prefix, example):
    """Absolute, plain, not a system directory; the service may write only its
    state directory, which must not hold, or be inside, the code or the configuration."""
    dirs = {}
    for var in [f"{prefix}_base_dir", f"{prefix}_config_dir", f"{prefix}_state_dir", f"{prefix}_python"]:
        value = variables[var]
        if not matches(PATH_RE, value) or "/../" in value + "/" or "/./" in value + "/":
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


def releases(errors, variables, names, example):
    for var in names:
        if not matches(RELEASE_RE, text(variables[var])):
            errors.append(f"{var}: '{show(variables[var])}' is not a release number like {example}")


def pip_packages(errors, var, packages, index_var=None):
    """Requirement specifiers (a VCS URL too): no pip option, and no credentials, which pip's command line
    would show to every user of the host and Ansible's output to its readers."""
    for i, package in enumerate(packages if is_list(packages) else []):
        if text(package) == "" or has(CTRL, package) or text(package).startswith("-"):
            errors.append(f"{var}[{i}]: '{show(package)}' must be a requirement specifier (no options, no newlines)")
        elif has(CREDS_RE, package):
            errors.append(f"{var}[{i}] holds a URL with credentials, which pip's command line shows to every user; "
                          "give a VCS host's credentials to git on the host (a deploy key, a credential helper)"
                          + (f", an index's in {index_var}" if index_var else ""))


def arguments(errors, at, args, reserved_re, secret_hint, reserved_hint):
    """Command-line arguments, each a word of its own: no newline, no URL with credentials (a
    command line is shown to every user), none of the ones the role sets itself."""
    for i, arg in enumerate(args if is_list(args) else []):
        where = f"{at}[{i}]"
        if text(arg) == "" or has(CTRL, arg):
            errors.append(f"{where} must be a non-empty string without newlines or control characters")
        elif has(CREDS_RE, arg):
            errors.append(f"{where} holds a URL with credentials, which a command line shows to every user; {secret_hint}")
        elif matches(reserved_re, arg):
            errors.append(f"{where} '{show(arg)}' is set by the role; {reserved_hint}")


def env(errors, label, mapping, reserved=(), pip=False):
    """An environment mapping: label names it in messages ("var" or "... field env").
    pip: Ansible puts the pip environment on the command line it runs (ps on the
    host, -vvv output), so no credentials there."""
    for key, value in mapping.items() if is_map(mapping) else []:
        if not matches(ENVKEY_RE, key):
            errors.append(f"{label}: key '{show(key)}' is not a valid environment variable name")
        elif key.upper() in reserved:
            errors.append(f"{label}.{key}: is set by the role; use its celery_flower_* variable")
        elif value is None or is_map(value) or is_list(value) or has(CTRL, value):
            errors.append(f"{label}.{key}: value must be a string or number without newlines or control characters")
        elif pip and has(CREDS_RE, value):
            errors.append(f"{label}.{key}: holds a URL with credentials, which would show in ps and -vvv output; "
                          "put them in a pip.conf or .netrc on the host")

# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: celery_fleet_flower_errors
short_description: The celery_flower role's configuration errors that its argument spec cannot find
version_added: 1.0.0
author: celery-fleet maintainers
description:
  - Checks the variables of the C(celery_fleet.celery.celery_flower) role against the rules its
    C(meta/argument_specs.yml) cannot state; the spec itself (types, choices, required fields,
    unknown keys) is checked by Ansible before the role's first task.
  - "The rules: the listening address (loopback unless C(celery_flower_public_endpoints)) and port
    range, basic auth users and passwords that the environment file can carry, an empty user list
    only with C(celery_flower_allow_unauthenticated), the broker URL, TLS files and management API
    URL, environment variables the role sets itself, positive numbers, the URL prefix, accounts and
    paths."
  - No message shows a secret (broker URLs, passwords, keys).
options:
  _input:
    description: The role's variables, name to value (every C(celery_flower_*) variable).
    type: dict
    required: true
  options:
    description:
      - >-
        The options of the role's argument spec: every option it types as list must be a list
        (Ansible's check accepts a string, which the role would get). V(None) skips that rule.
    type: dict
"""

EXAMPLES = r"""
- name: Collect the errors (empty when the configuration is valid)
  ansible.builtin.set_fact:
    errors: "{{ dict(names | zip(query('ansible.builtin.vars', *names))) | celery_fleet.celery.celery_fleet_flower_errors }}"
  vars:
    names: "{{ query('ansible.builtin.varnames', '^celery_flower(_.*)?$') }}"
# errors:
#   - "celery_flower_port: must be a TCP port from 1024 to 65535 (Flower has no capability to bind a lower one), got '80'"
"""

RETURN = r"""
_value:
  description: One message per problem; empty when the configuration is valid.
  type: list
  elements: str
"""

from ansible_collections.celery_fleet.celery.plugins.plugin_utils import _rules as r

LOOPBACK_RE = r"^(127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|::1|localhost)\Z"
URL_PREFIX_RE = r"^/?[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*/?\Z"
# Environment variables the Flower role writes itself.
FLOWER_ROLE_ENV = ["CELERY_BROKER_URL", "FLOWER_BASIC_AUTH", "FLOWER_BROKER_API", "FLOWER_UNAUTHENTICATED_API", "FLOWER_ADDRESS", "FLOWER_PORT",
                   "FLOWER_PERSISTENT", "FLOWER_DB", "FLOWER_CONF", "FLOWER_UNIX_SOCKET", "FLOWER_AUTH", "CELERY_BROKER_TLS_CA",
                   "CELERY_BROKER_TLS_CERT", "CELERY_BROKER_TLS_KEY", "CELERY_BROKER_TLS_SERVER_NAME", "CELERY_BROKER_TLS_VERIFY"]


def _users(errors, users):
    """Users and passwords as FLOWER_BASIC_AUTH=user:password,user:password can carry them."""
    seen = []
    for i, u in enumerate(users):
        at = f"celery_flower_basic_auth[{i}]"
        user, password = r.text(u["user"]), r.text(u["password"])
        if len(user) == 0 or r.has(r.CTRL, user) or r.has("[:,]", user) or user != user.strip():
            errors.append(f"{at}: field user must be a non-empty name without control characters, spaces around it, : or ,")
        elif user in seen:
            errors.append(f"{at}: field user '{r.show(user)}' is a duplicate")
        seen.append(user)
        if len(password) < 8:
            errors.append(f"{at}: field password must have 8 characters or more")
        elif r.has(r.CTRL, password) or "," in password:
            errors.append(f"{at}: field password must not contain newlines, control characters or , (FLOWER_BASIC_AUTH separates users with commas)")


def celery_fleet_flower_errors(variables, options=None):
    """Every error of the celery_flower role's variables that its argument spec cannot find."""
    v = variables
    errors = []
    if options:
        r.lists(errors, v, options)
        if errors:
            return errors
    # Listening address and port
    addr, port = v["celery_flower_address"], v["celery_flower_port"]
    if not (r.matches(r.IPV4_RE, addr) or r.matches(r.IPV6_RE, addr) or (r.matches(r.HOSTNAME_RE, addr) and not r.matches(r"^[0-9.]+\Z", addr))):
        errors.append(f"celery_flower_address: '{r.show(addr)}' is not an IPv4 or IPv6 address or a host name")
    elif not r.matches(LOOPBACK_RE, addr) and not r.truthy(v["celery_flower_public_endpoints"]):
        errors.append(f"celery_flower_address: '{r.show(addr)}' is not a loopback address, and Flower serves /metrics (worker and task names) "
                      "and /healthcheck without authentication to anyone who reaches it: keep 127.0.0.1 behind a reverse proxy or an SSH "
                      "tunnel, or set celery_flower_public_endpoints: true")
    if not r.positive_int(port) or not 1024 <= int(r.text(port)) <= 65535:
        errors.append(f"celery_flower_port: must be a TCP port from 1024 to 65535 (Flower has no capability to bind a lower one), got '{r.show(port)}'")
    # Users
    users = v["celery_flower_basic_auth"] or []
    _users(errors, users)
    if not users and not r.truthy(v["celery_flower_allow_unauthenticated"]):
        errors.append(f"celery_flower_basic_auth: is empty, so anybody who reaches {r.show(addr)}:{r.show(port)} could see every task and shut the workers "
                      "down; add a user (password in Ansible Vault), or set celery_flower_allow_unauthenticated: true")
    # Broker and management API (never shown: they hold passwords)
    r.broker_url(errors, "celery_flower_broker_url", v["celery_flower_broker_url"], " (default: celery_workers_broker_url)")
    r.broker_tls(errors, "celery_flower_broker_tls", v["celery_flower_broker_tls"], v["celery_flower_broker_url"])
    api = r.text(v["celery_flower_broker_api"] or "")
    if r.has(r.CTRL, api):
        errors.append("celery_flower_broker_api: must not contain newlines or control characters")
    elif len(api) > 0 and not r.matches(r"^https?://[^/\s]+/", api):
        errors.append("celery_flower_broker_api: must be an http:// or https:// URL with a host and a path, e.g. http://user:password@mq:15672/api/")
    # Flower's options
    r.integers(errors, v, ["celery_flower_max_tasks", "celery_flower_restart_sec", "celery_flower_health_timeout"])
    r.integers(errors, v, ["celery_flower_state_save_interval", "celery_flower_purge_offline_workers"], zero=True)
    prefix = r.text(v["celery_flower_url_prefix"] or "")
    if len(prefix) > 0 and not r.matches(URL_PREFIX_RE, prefix):
        errors.append(f"celery_flower_url_prefix: '{r.show(prefix)}' must be \"\" or a path of [A-Za-z0-9_-] segments, e.g. flower")
    r.env(errors, "celery_flower_environment", v["celery_flower_environment"], reserved=FLOWER_ROLE_ENV)
    # Installation, account and paths
    r.releases(errors, v, ["celery_flower_version", "celery_flower_celery_version"], "2.2.0")
    r.pip_packages(errors, "celery_flower_pip_packages", v["celery_flower_pip_packages"])
    r.env(errors, "celery_flower_pip_environment", v["celery_flower_pip_environment"], pip=True)
    r.accounts(errors, v, "celery_flower", "Flower")
    r.paths(errors, v, "celery_flower", "/opt/celery-flower")
    return errors


class FilterModule:
    """celery_fleet_flower_errors."""

    def filters(self):
        return {"celery_fleet_flower_errors": celery_fleet_flower_errors}

# Copyright (c) celery-fleet maintainers
# MIT License

from __future__ import annotations

DOCUMENTATION = r"""
name: celery_fleet_broker_tls_files
short_description: The broker TLS files a role deploys, where they go and who may read them
version_added: 1.0.0
author: celery-fleet maintainers
description:
  - >-
    For C(celery_workers_broker_tls) and C(celery_flower_broker_tls): each file given (CA, client
    certificate, client key, from C(*_src) or C(*_content)), the environment variable that names its
    path, its destination in I(directory), its group and its mode. The key is readable by the
    service's group only (0640); the CA and the certificate are 0644.
options:
  _input:
    description: The role's broker TLS settings.
    type: dict
    required: true
  directory:
    description: Where the files go.
    type: path
    required: true
  group:
    description: The group of the key file (the service's group).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: The files to deploy
  ansible.builtin.debug:
    msg: "{{ {'ca_src': '/srv/pki/ca.pem'} | celery_fleet.celery.celery_fleet_broker_tls_files('/etc/celery/tls', 'celery') }}"
# msg: [{kind: ca, env: CELERY_BROKER_TLS_CA, dest: /etc/celery/tls/ca.pem, group: root, mode: "0644"}]
"""

RETURN = r"""
_value:
  description: One item per file given, in the order CA, certificate, key.
  type: list
  elements: dict
  contains:
    kind: {description: "ca, cert or key: the prefix of its C(*_src)/C(*_content) keys.", type: str}
    env: {description: The environment variable that gives the application its path., type: str}
    dest: {description: Its path on the host., type: str}
    group: {description: Its group., type: str}
    mode: {description: Its mode., type: str}
"""

# kind, environment variable, file name, group (None: the service's), mode
FILES = [("ca", "CELERY_BROKER_TLS_CA", "ca.pem", "root", "0644"),
         ("cert", "CELERY_BROKER_TLS_CERT", "client.pem", "root", "0644"),
         ("key", "CELERY_BROKER_TLS_KEY", "client.key", None, "0640")]


def celery_fleet_broker_tls_files(tls, directory, group):
    """The broker TLS files given, with their variable, destination, group and mode."""
    given = {key.rsplit("_", 1)[0] for key, value in (tls or {}).items() if key.endswith(("_src", "_content")) and value not in (None, "")}
    return [{"kind": kind, "env": env, "dest": f"{directory}/{name}", "group": owner or group, "mode": mode}
            for kind, env, name, owner, mode in FILES if kind in given]


class FilterModule:
    """celery_fleet_broker_tls_files."""

    def filters(self):
        return {"celery_fleet_broker_tls_files": celery_fleet_broker_tls_files}

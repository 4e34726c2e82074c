"""celery_flower: bad input is refused before anything changes.

Like tests/test_preflight.py for celery_workers: one ansible-playbook run, in
check mode and limited to the `celery_flower_preflight` tag, applies the role
as a playbook does (`roles:`: the argument spec, then tasks/preflight.yml) to
one inventory host per case (`ansible_connection: local`). Each bad input
runs once and is refused by the argument spec (SPEC) or by preflight's
"Assert the configuration is valid" (ASSERT), with the expected message, and
changes nothing; every good case passes all of preflight. A canary password
in every case's secrets must never reach the output.

Also: the environment file renders every user, escaped for systemd.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

import pytest
import yaml

from preflight_harness import ANSIBLE_PLAYBOOK, PEM_SRC, ROOT, RolePreflight, ansible_env
from systemd_syntax import parse_env_file

ROLE = ROOT / "roles" / "celery_flower"
PREFLIGHT = RolePreflight("celery_flower", [
    "Collect configuration errors",
    "Assert the configuration is valid",
    "Look up Flower's user and group on the host",
    "Assert Flower's user and group are not root",
])
SPEC = PREFLIGHT.spec_task
ASSERT = PREFLIGHT.assert_task

CANARY = "CanaryFlw9q"
DROP = object()  # removes a base variable from a case


def _user(password=CANARY + "pw", user="ops"):
    return {"user": user, "password": password}


BASE = {
    "celery_flower_broker_url": f"amqp://celery:{CANARY}@mq.example.org:5672/celery",
    "celery_flower_basic_auth": [_user()],
}


AMQPS = f"amqps://celery:{CANARY}@mq.example.org:5671/celery"
PEM_KEY = f"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49{CANARY}\n-----END PRIVATE KEY-----\n"


@dataclass
class Case:
    id: str
    vars: dict
    expect: list[str]  # fragments of the message of the task that refuses it
    by: str = ASSERT  # that task


BAD = [
    # --- who may use it
    Case("no_users", {"celery_flower_basic_auth": []}, ["celery_flower_basic_auth: is empty, so anybody who reaches 127.0.0.1:5555",
                                                        "set celery_flower_allow_unauthenticated: true"]),
    Case("no_users_not_allowed_explicitly", {"celery_flower_basic_auth": [], "celery_flower_allow_unauthenticated": False},
         ["celery_flower_basic_auth: is empty"]),
    Case("user_with_colon", {"celery_flower_basic_auth": [_user(user="a:b")]}, ["celery_flower_basic_auth[0]: field user must be"]),
    Case("user_with_comma", {"celery_flower_basic_auth": [_user(), _user(user="x,y")]}, ["celery_flower_basic_auth[1]: field user must be"]),
    Case("user_newline", {"celery_flower_basic_auth": [_user(user="ops\nFLOWER_AUTH=x")]}, ["celery_flower_basic_auth[0]: field user must be"]),
    Case("user_duplicate", {"celery_flower_basic_auth": [_user(), _user()]}, ["celery_flower_basic_auth[1]: field user 'ops' is a duplicate"]),
    Case("password_with_comma", {"celery_flower_basic_auth": [_user(password=CANARY + ",x:y")]},
         ["celery_flower_basic_auth[0]: field password must not contain newlines, control characters or ,"]),
    Case("password_newline", {"celery_flower_basic_auth": [_user(password=CANARY + "\nFLOWER_UNAUTHENTICATED_API=1")]},
         ["celery_flower_basic_auth[0]: field password must not contain newlines"]),
    Case("password_short", {"celery_flower_basic_auth": [_user(password="Canary")]},
         ["celery_flower_basic_auth[0]: field password must have 8 characters or more"]),
    Case("password_missing", {"celery_flower_basic_auth": [{"user": "ops"}]}, ["missing required arguments: password found in celery_flower_basic_auth"], by=SPEC),
    Case("user_unknown_field", {"celery_flower_basic_auth": [{**_user(), "role": "admin"}]},
         ["celery_flower_basic_auth.role. Supported parameters include: password, user."], by=SPEC),
    Case("users_not_a_list", {"celery_flower_basic_auth": "ops:" + CANARY}, ["Elements value for option 'celery_flower_basic_auth' is of type str and we were unable to convert to dict"], by=SPEC),
    Case("allow_unauthenticated_not_a_bool", {"celery_flower_allow_unauthenticated": "maybe"},
         ["argument 'celery_flower_allow_unauthenticated' is of type str and we were unable to convert to bool", "'maybe'"], by=SPEC),
    # --- address and port
    Case("port_privileged", {"celery_flower_port": 80}, ["celery_flower_port: must be a TCP port from 1024 to 65535", "got '80'"]),
    Case("port_too_big", {"celery_flower_port": 70000}, ["celery_flower_port: must be a TCP port from 1024 to 65535"]),
    Case("port_not_a_number", {"celery_flower_port": "http"}, ["argument 'celery_flower_port' is of type str and we were unable to convert to int", "'http'"], by=SPEC),
    Case("address_public_without_ack", {"celery_flower_address": "0.0.0.0"},
         ["celery_flower_address: '0.0.0.0' is not a loopback address", "/metrics", "/healthcheck without authentication",
          "set celery_flower_public_endpoints: true"]),
    Case("address_lan_without_ack", {"celery_flower_address": "10.0.0.5"}, ["celery_flower_address: '10.0.0.5' is not a loopback address"]),
    Case("address_ipv6_any_without_ack", {"celery_flower_address": "::"}, ["celery_flower_address: '::' is not a loopback address"]),
    Case("public_endpoints_not_a_bool", {"celery_flower_address": "0.0.0.0", "celery_flower_public_endpoints": "sure"},
         ["argument 'celery_flower_public_endpoints' is of type str and we were unable to convert to bool", "'sure'"], by=SPEC),
    Case("address_newline", {"celery_flower_address": "127.0.0.1\n--debug"},
         ["celery_flower_address: '127.0.0.1\\n--debug' is not an IPv4 or IPv6 address or a host name"]),
    Case("address_with_space", {"celery_flower_address": "127.0.0.1 --debug"}, ["celery_flower_address: '127.0.0.1 --debug' is not"]),
    Case("address_bad_ipv4", {"celery_flower_address": "127.0.0.256"}, ["celery_flower_address: '127.0.0.256' is not"]),
    # --- broker
    Case("broker_url_missing", {"celery_flower_broker_url": ""}, ["celery_flower_broker_url: must be set", "default: celery_workers_broker_url"]),
    Case("broker_url_newline", {"celery_flower_broker_url": f"amqp://u:{CANARY}@mq/v\nFLOWER_UNAUTHENTICATED_API=1"},
         ["celery_flower_broker_url: must not contain newlines"]),
    Case("broker_api_not_http", {"celery_flower_broker_api": f"ftp://u:{CANARY}@mq:15672/api/"}, ["celery_flower_broker_api: must be an http://"]),
    Case("broker_api_newline", {"celery_flower_broker_api": f"http://u:{CANARY}@mq:15672/api/\nX=1"},
         ["celery_flower_broker_api: must not contain newlines"]),
    # --- TLS of Flower's broker connection (same rules as the workers')
    Case("tls_ca_src_missing", {"celery_flower_broker_url": AMQPS, "celery_flower_broker_tls": {"ca_src": "/nonexistent/ca.pem"}},
         ["celery_flower_broker_tls.ca_src: /nonexistent/ca.pem does not exist on the controller"]),
    Case("tls_key_without_cert", {"celery_flower_broker_url": AMQPS, "celery_flower_broker_tls": {"key_content": PEM_KEY}},
         ["celery_flower_broker_tls: a client key (key_src or key_content) needs its certificate"]),
    Case("tls_unverified_unacknowledged", {"celery_flower_broker_url": AMQPS, "celery_flower_broker_tls": {"verify": False}},
         ["celery_flower_broker_tls.verify: false accepts any certificate"]),
    # Inherited from the workers' settings when not given.
    Case("tls_from_the_workers_required", {"celery_workers_broker_tls": {"required": True}},
         ["celery_flower_broker_tls.required: is true but the broker URL is amqp://"]),
    Case("tls_env_set_by_the_role", {"celery_flower_environment": {"CELERY_BROKER_TLS_VERIFY": "0"}},
         ["celery_flower_environment.CELERY_BROKER_TLS_VERIFY: is set by the role"]),
    # --- Flower's options
    Case("max_tasks_zero", {"celery_flower_max_tasks": 0}, ["celery_flower_max_tasks: must be a positive integer, got '0'"]),
    Case("purge_negative", {"celery_flower_purge_offline_workers": -5}, ["celery_flower_purge_offline_workers: must be 0 or a positive integer"]),
    Case("url_prefix_traversal", {"celery_flower_url_prefix": "../admin"}, ["celery_flower_url_prefix: '../admin' must be"]),
    Case("loglevel_unknown", {"celery_flower_loglevel": "verbose"}, ["value of celery_flower_loglevel must be one of: debug, info, warning, error, none, got: verbose"], by=SPEC),
    Case("environment_sets_the_users", {"celery_flower_environment": {"FLOWER_BASIC_AUTH": f"x:{CANARY}"}},
         ["celery_flower_environment.FLOWER_BASIC_AUTH: is set by the role"]),
    Case("environment_opens_the_api", {"celery_flower_environment": {"flower_unauthenticated_api": "true"}},
         ["celery_flower_environment.flower_unauthenticated_api: is set by the role"]),
    Case("environment_newline", {"celery_flower_environment": {"FLOWER_NATURAL_TIME": "true\nFLOWER_BASIC_AUTH=x:y"}},
         ["celery_flower_environment.FLOWER_NATURAL_TIME: value must be a string or number without newlines"]),
    # --- installation, account, paths
    Case("version_not_a_release", {"celery_flower_version": "latest"}, ["celery_flower_version: 'latest' is not a release number"]),
    Case("celery_version_option", {"celery_flower_celery_version": "5.7.0 --pre"}, ["celery_flower_celery_version: '5.7.0 --pre' is not"]),
    Case("pip_package_is_an_option", {"celery_flower_pip_packages": ["--index-url=http://evil.example/simple"]},
         ["celery_flower_pip_packages[0]: '--index-url=http://evil.example/simple' must be a requirement specifier"]),
    Case("pip_environment_credentials", {"celery_flower_pip_environment": {"PIP_INDEX_URL": f"https://u:{CANARY}@pypi.example/simple"}},
         ["celery_flower_pip_environment.PIP_INDEX_URL: holds a URL with credentials"]),
    Case("user_root", {"celery_flower_user": "root"}, ["celery_flower_user: Flower must not run as root"]),
    Case("group_newline", {"celery_flower_group": "celery\nroot"}, ["celery_flower_group: 'celery\\nroot' is not a valid system account name"]),
    Case("config_dir_system", {"celery_flower_config_dir": "/etc"}, ["celery_flower_config_dir: '/etc' is a system directory"]),
    Case("base_dir_traversal", {"celery_flower_base_dir": "/opt/x/../../etc"}, ["celery_flower_base_dir: '/opt/x/../../etc' must be an absolute path"]),
    Case("state_dir_inside_base_dir", {"celery_flower_state_dir": "/opt/celery-flower/state"},
         ["celery_flower_state_dir ('/opt/celery-flower/state') and celery_flower_base_dir ('/opt/celery-flower') must be separate directories"]),
]

GOOD = {
    "minimal": {},
    "tls_verified_with_client_cert": {"celery_flower_broker_url": AMQPS, "celery_flower_broker_tls": {
        "ca_src": PEM_SRC, "cert_src": PEM_SRC, "key_content": PEM_KEY,
        "server_name": "mq.internal.example.org", "required": True}},
    "unauthenticated_allowed": {"celery_flower_basic_auth": [], "celery_flower_allow_unauthenticated": True},
    # Standalone use beside the workers' inventory: the broker URL comes from celery_workers_broker_url.
    "broker_url_from_the_workers": {"celery_flower_broker_url": DROP, "celery_workers_broker_url": f"amqp://celery:{CANARY}@mq/celery"},
    "everything": {
        "celery_flower_address": "::1",
        "celery_flower_port": 65535,
        "celery_flower_basic_auth": [_user(), _user(user="viewer", password=f'{CANARY} :$HOME "q" `x` \\ ;#')],
        "celery_flower_broker_api": f"https://celery:{CANARY}@mq.example.org:15671/api/",
        "celery_flower_persistent": True,
        "celery_flower_state_save_interval": 0,
        "celery_flower_max_tasks": 500,
        "celery_flower_purge_offline_workers": 3600,
        "celery_flower_url_prefix": "/ops/flower/",
        "celery_flower_loglevel": "warning",
        "celery_flower_environment": {"FLOWER_NATURAL_TIME": "true", "FLOWER_INSPECT_TIMEOUT": 3000},
        "celery_flower_pip_packages": ["redis==5.2.1"],
        "celery_flower_pip_environment": {"PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"},
        "celery_flower_user": "flower",
        "celery_flower_group": "flower",
        "celery_flower_base_dir": "/srv/flower",
        "celery_flower_config_dir": "/srv/flower-etc",
        "celery_flower_state_dir": "/srv/flower-state",
    },
    "hostname_address": {"celery_flower_address": "flower.internal.example.org", "celery_flower_port": 1024,
                         "celery_flower_public_endpoints": True},
    "wildcard_address": {"celery_flower_address": "0.0.0.0", "celery_flower_public_endpoints": True},
    "loopback_other": {"celery_flower_address": "127.0.0.2"},
    "localhost": {"celery_flower_address": "localhost"},
}


def _case_vars(variables):
    out = {**BASE, **variables}
    return {k: v for k, v in out.items() if v is not DROP}


def _inventory():
    return RolePreflight.inventory({case.id: _case_vars(case.vars) for case in BAD},
                                   {name: _case_vars(variables) for name, variables in GOOD.items()})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return PREFLIGHT.run(tmp_path_factory.mktemp("flower-preflight"), _inventory())


def test_case_ids_unique():
    assert len({c.id for c in BAD}) == len(BAD)
    assert len(BAD) >= 25
    assert {c.by for c in BAD} == {SPEC, ASSERT}


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input_is_refused_and_changes_nothing(run, case):
    PREFLIGHT.assert_refused(run, f"bad__{case.id}", case.by, case.expect)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_input_passes_preflight(run, name):
    assert PREFLIGHT.assert_passed(run, f"good__{name}").startswith("celery_flower preflight passed: Flower on ")


def test_secrets_never_in_the_output(run):
    assert CANARY in json.dumps(_inventory())
    assert CANARY not in run["stdout"]
    assert CANARY not in run["stderr"]


def test_every_host_was_run(run):
    expected = {h for group in _inventory()["all"]["children"].values() for h in group["hosts"]}
    assert set(run["stats"]) == expected
    assert run["rc"] == 2


def test_environment_file_renders_every_user_escaped_for_systemd(tmp_path):
    """Two users, a password with the characters systemd's EnvironmentFile= treats specially:
    systemd-style parsing of the rendered file gives back FLOWER_BASIC_AUTH exactly."""
    tricky = 'p a:$HOME "q" `x` \\ ;#'
    users = [_user(), {"user": "viewer", "password": tricky}]
    playbook = [{
        "name": "Render the environment file", "hosts": "localhost", "gather_facts": False,
        "vars": {**BASE, "ansible_python_interpreter": "{{ ansible_playbook_python }}", "celery_flower_basic_auth": users, "celery_flower_broker_api": "http://u:p@mq:15672/api/",
                 "celery_flower_environment": {"FLOWER_NATURAL_TIME": "true"}, "celery_flower_group": "celery",
                 "__celery_flower_unit": "celery-flower.service"},
        "tasks": [{"ansible.builtin.copy": {"content": "{{ lookup('ansible.builtin.template', '" + str(ROLE / "templates" / "flower.env.j2") + "') }}",
                                            "dest": str(tmp_path / "flower.env"), "mode": "0600"}}],
    }]
    (tmp_path / "render.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", str(tmp_path / "render.yml")],
                          cwd=tmp_path, env=ansible_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = (tmp_path / "flower.env").read_text()
    env = parse_env_file(text)
    assert env["FLOWER_BASIC_AUTH"] == f"ops:{CANARY}pw,viewer:{tricky}"
    assert env["CELERY_BROKER_URL"] == BASE["celery_flower_broker_url"]
    assert env["FLOWER_BROKER_API"] == "http://u:p@mq:15672/api/"
    assert env["FLOWER_NATURAL_TIME"] == "true"
    assert text.startswith("#") and "Ansible managed" in text


@pytest.mark.parametrize("line", [
    'FLOWER_BASIC_AUTH="ops:pa$HOME"',        # $ not escaped: a shell would expand it
    'FLOWER_BASIC_AUTH="ops:`id`"',           # backtick not escaped
    'FLOWER_BASIC_AUTH="ops:say "hi""',       # quote not escaped
    'FLOWER_BASIC_AUTH="ops:ends\\"',         # the backslash escapes the closing quote
    'FLOWER_BASIC_AUTH=ops:unquoted',
    'FLOWER_BASIC_AUTH="ops:x" trailing',
])
def test_the_env_file_reader_refuses_what_escaping_must_prevent(line):
    """The reader above sees a missing escape: it refuses the line instead of reading a value."""
    with pytest.raises(AssertionError):
        parse_env_file(line + "\n")


def test_the_env_file_reader_reads_the_escapes():
    assert parse_env_file('A="\\$x \\` \\" \\\\ \\n"\n') == {"A": '$x ` " \\ \\n'}

"""The hosts reach the broker over TLS, verified, with a client certificate.

The scenario's broker (lab/broker.yml) serves AMQP over TLS on
lab_broker_amqps_port with a certificate of this run's throwaway CA
(lab/tls.sh, made by molecule/shared/create.yml) and refuses a client
without a certificate of that CA; the hosts use amqps:// with
celery_workers_broker_tls (group_vars/celery_workers.yml): the CA, a client
certificate and key, server_name broker.lab.test (the URL's host is
127.0.0.1), required: true. Flower takes the same settings by default.
Proven from outside: the sockets of the worker, beat and Flower processes
(/proc), the broker's own view of its connections (rabbitmqctl) and a
client without a certificate. A wrong CA or server name is refused before it
is used (test_broker_change.py); the client key stays out of Ansible's
output (test_check_mode.py).
"""

from __future__ import annotations

import shlex
import ssl
import time

import kombu
import pytest

from fleet import GROUP_VARS, TLS_DIR, WORKER_HOSTS, hosts_broker_url, node, workers_of

TLS_PORT = int(GROUP_VARS["lab_broker_amqps_port"])
PLAIN_PORT = int(GROUP_VARS["lab_broker_amqp_port"])
CLIENT_SUBJECT = "CN=celery-client"

# The remote TCP ports of a process's established sockets, read from /proc on
# the host (the containers share the machine's network namespace, so
# /proc/net/tcp lists every socket; the process's fds name its own).
# A process with no socket gives "", and the test fails: the control.
REMOTE_PORTS = r"""
import os, sys
pid = sys.argv[1]
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if target.startswith("socket:["):
        inodes.add(target[8:-1])
ports = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        f = line.split()
        if f[3] == "01" and f[9] in inodes:
            ports.add(int(f[2].rsplit(":", 1)[1], 16))
print(" ".join(str(p) for p in sorted(ports)))
"""


def remote_ports(host, unit: str) -> set[int]:
    pid = host.check_output(f"systemctl show -P MainPID {unit}")
    assert pid != "0", f"{unit} is not running"
    # As the units' user: root in the container may not read another user's /proc/PID/fd (no CAP_SYS_PTRACE).
    out = host.check_output(f"runuser -u celery -- python3 -c {shlex.quote(REMOTE_PORTS)} {pid}")
    return {int(p) for p in out.split()}


def _units_of(hostname: str) -> list[str]:
    units = [w["unit"] for w in workers_of(hostname)]
    if hostname == "mol-worker1":
        units.append("celery-flower.service")
    return units


@pytest.mark.parametrize("hostname", WORKER_HOSTS)
def test_workers_and_flower_connect_to_the_tls_port_only(hostname):
    host = node(hostname)
    for unit in _units_of(hostname):
        ports = remote_ports(host, unit)
        print(f"{hostname} {unit}: broker ports {sorted(ports & {TLS_PORT, PLAIN_PORT})}")
        assert TLS_PORT in ports, f"{unit}: no connection to the TLS port {TLS_PORT} ({sorted(ports)})"
        assert PLAIN_PORT not in ports, f"{unit}: a plain-text connection to {PLAIN_PORT}"


def test_the_broker_sees_tls_connections_with_the_client_certificate():
    out = node("mol-broker").check_output(
        "rabbitmqctl -q --no-table-headers list_connections port ssl ssl_protocol peer_cert_subject")
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    tls = [r for r in rows if int(r[0]) == TLS_PORT]
    for row in tls:
        print("\t".join(row))
    # Every worker opens at least one connection; Flower one more.
    expected = sum(len(workers_of(h)) for h in WORKER_HOSTS) + 1
    assert len(tls) >= expected, f"{len(tls)} connections on the TLS port, expected at least {expected}:\n{out}"
    for port, is_ssl, protocol, subject in tls:
        assert is_ssl == "true" and protocol.startswith("tlsv1."), (port, is_ssl, protocol)
        assert CLIENT_SUBJECT in subject.replace(" ", ""), subject


def _connect(**ssl_options) -> None:
    with kombu.Connection(hosts_broker_url(), ssl=ssl_options, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1)
        conn.default_channel  # noqa: B018  # a channel proves the broker accepted the login


def test_the_broker_requires_a_client_certificate():
    verified = {"ca_certs": str(TLS_DIR / "ca.pem"), "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "broker.lab.test"}
    # Control: with the client certificate the connection works.
    _connect(**verified, certfile=str(TLS_DIR / "client.pem"), keyfile=str(TLS_DIR / "client.key"))
    with pytest.raises(Exception) as without:  # noqa: B017,PT011  # the TLS alert surfaces as an SSL or connection error
        _connect(**verified)
    print(f"without a client certificate: {type(without.value).__name__}: {without.value}")
    # And the name is checked: the right CA with another name fails.
    with pytest.raises(Exception) as wrong_name:  # noqa: B017,PT011  # kombu wraps the SSL error
        _connect(**dict(verified, server_hostname="not-the-broker.example"),
                 certfile=str(TLS_DIR / "client.pem"), keyfile=str(TLS_DIR / "client.key"))
    assert "certificate verify failed" in str(wrong_name.value), wrong_name.value


def test_tls_files_exact_mode_and_owner(host, worker_host):
    expected = {
        "/etc/celery/tls/ca.pem": ("root", "root", 0o644),
        "/etc/celery/tls/client.pem": ("root", "root", 0o644),
        "/etc/celery/tls/client.key": ("root", "celery", 0o640),
    }
    if worker_host == "mol-worker1":
        expected.update({
            "/etc/celery-flower/tls/ca.pem": ("root", "root", 0o644),
            "/etc/celery-flower/tls/client.pem": ("root", "root", 0o644),
            "/etc/celery-flower/tls/client.key": ("root", "celery", 0o640),
        })
    for path, owner in expected.items():
        f = host.file(path)
        assert (f.user, f.group, f.mode) == owner, path
        assert f.content_string == (TLS_DIR / path.rsplit("/", 1)[1]).read_text(), path


def _key_body() -> str:
    """A line from the middle of the client key: unique to it, no PEM boilerplate."""
    lines = (TLS_DIR / "client.key").read_text().splitlines()
    return lines[len(lines) // 2]


# PIDs whose command line (what `ps` shows) holds the text given in hex: the
# search's own command line holds only the hex.
CMDLINES_HOLDING = r"""
import os, sys
needle = bytes.fromhex(sys.argv[1])
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if needle in open(f"/proc/{pid}/cmdline", "rb").read():
            print(pid)
    except OSError:
        pass
"""


def _pids_showing(host, text: str) -> list[str]:
    return host.check_output(f"python3 -c {shlex.quote(CMDLINES_HOLDING)} {text.encode().hex()}").split()


def test_client_key_not_in_processes_units_or_the_journal(host, worker_host):
    body = _key_body()
    # Control: the key file itself holds it, and a process planted with it on its command line is found.
    assert host.run(f"grep -c -F -- {body!r} /etc/celery/tls/client.key").stdout.strip() == "1"
    planted = host.check_output(f"setsid sh -c 'sleep 60; true' {shlex.quote(body)} >/dev/null 2>&1 & echo $!")
    try:
        deadline = time.monotonic() + 10
        while _pids_showing(host, body) != [planted]:
            assert time.monotonic() < deadline, (planted, _pids_showing(host, body))
            time.sleep(0.2)
    finally:
        host.run(f"kill {planted}")
    deadline = time.monotonic() + 10
    while _pids_showing(host, body):
        assert time.monotonic() < deadline, f"processes show the client key: {_pids_showing(host, body)}"
        time.sleep(0.2)
    assert host.run(f"grep -rl -F -- {body!r} /etc/systemd /usr/lib/systemd/system").stdout == ""
    assert host.run(f"journalctl --no-pager -o cat | grep -c -F -- {body!r}").stdout.strip() == "0"

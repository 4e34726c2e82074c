"""A broker change the broker would refuse is refused before it is used.

When the broker URL, its credentials or the TLS files would change, each host
first tries the new settings as the workers' user, from a private directory
(roles/celery_workers/tasks/broker_check.yml). Four wrong settings, each on a
converged host: the run fails naming the cause, and the host is as it was:
every file (/etc/celery with its checksums, the units), every unit's state
and main PID (conftest.SNAPSHOT). Two hosts, two runs: one real, one in
check mode (`--check` tries the settings too).
"""

from __future__ import annotations

import pytest

from conftest import assert_same, snapshots
from fleet import GROUP_VARS, TLS_DIR, hosts_broker_url, results_by_host, run_site

PROBE_TASK = "celery_fleet.celery.celery_workers : Assert the broker accepts the new settings"


def _tls(**keys) -> dict:
    base = {k: v.replace("{{ lab_broker_tls_dir }}", str(TLS_DIR)) if isinstance(v, str) else v
            for k, v in GROUP_VARS["celery_workers_broker_tls"].items()}
    return {**base, **keys}


CASES = {
    # (check mode, {host: (variables, cause named in the message)})
    "real run": (False, {
        "mol-worker1": ({"celery_workers_broker_tls": _tls(ca_src=str(TLS_DIR / "other-ca.pem"))},
                        "certificate: the broker's certificate does not verify against the CA"),
        "mol-worker2": ({"celery_workers_broker_tls": _tls(server_name="not-the-broker.example")},
                        "server name: the broker's certificate does not name not-the-broker.example"),
    }),
    "check mode": (True, {
        "mol-worker1": ({"celery_workers_broker_url": hosts_broker_url(password="NotThePassword42")},
                        "credentials: the broker refused the login"),
        # Nothing listens there (the scenario's ports: group_vars/all.yml).
        "mol-worker2": ({"celery_workers_broker_url": hosts_broker_url().replace(f":{GROUP_VARS['lab_broker_amqps_port']}/", ":5699/")},
                        "unreachable: ConnectionRefusedError"),
    }),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_broker_change_leaves_the_host_as_it_was(steady, case):
    check, hosts = CASES[case]
    before = snapshots()
    proc = run_site(["--check"] if check else [], json_output=True, host_vars={h: v for h, (v, _) in hosts.items()})
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = results_by_host(proc.stdout)
    for host, (_, cause) in hosts.items():
        failed = [(name, r) for name, r in results[host] if r.get("failed")]
        assert [name for name, _ in failed] == [PROBE_TASK], failed
        msg = failed[0][1]["msg"]
        print(f"{case} {host}: {msg}")
        assert f"{host} keeps its broker settings and its running workers" in msg and cause in msg, msg
        assert "NotThePassword42" not in proc.stdout
        # Nothing was written before the probe failed: only the check-mode previews of the
        # broker settings (tasks/configure.yml) say that something would change.
        changed = [n for n, r in results[host] if r.get("changed")]
        assert changed and all(" : Find out whether " in n for n in changed), changed
    assert_same(before, snapshots())
    assert_same(steady, snapshots())

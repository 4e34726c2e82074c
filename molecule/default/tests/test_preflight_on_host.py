"""A run refused by preflight leaves a real host exactly as it was.

tests/test_preflight.py proves, in check mode on the controller, that bad
input fails in preflight. Here the playbook really runs (no check mode, no
tag filter) against mol-worker1 with bad input, and a snapshot of the host
(files, modes, owners and checksums under the role's directories, the units,
their states and main PIDs, the account) is the same before and after.
Every bad input also changes a valid field (the `default` worker's
concurrency), so a run that got past preflight would change the host.

An empty worker list passes preflight and, in check mode, would remove only
the units this role wrote (those carrying its marker), nothing else.
"""

from __future__ import annotations

import pytest

from ansible_run import podman_host, results_by_host, run_site
from conftest import workers_of

HOST = "mol-worker1"
ASSERT_TASK = "celery_fleet.celery.celery_workers : Assert the configuration is valid"
SPEC_TASK = "celery_fleet.celery.celery_workers : Validating arguments against arg spec 'main'"
ROOT_TASK = "celery_fleet.celery.celery_workers : Assert the workers' user and group are not root"
FIT_TASK = "celery_fleet.celery.celery_workers : Assert the workers fit in the host's memory"

SNAPSHOT = r"""
set -eu
echo '# files'
find /etc/systemd/system /etc/celery /opt/celery /var/lib/celery /usr/local/bin -xdev -printf '%p %y %m %u %g\n' | sort
echo '# checksums'
find /etc/systemd/system /etc/celery /opt/celery -xdev -type f -print0 | sort -z | xargs -0 sha256sum
echo '# account'
getent passwd celery; getent group celery
echo '# units'
systemctl list-unit-files 'celery-*' --no-legend --no-pager
systemctl list-units 'celery-*' --all --no-legend --no-pager --plain
for u in $(systemctl list-units 'celery-*' --all --no-legend --no-pager --plain | awk '{print $1}'); do
  systemctl show "$u" -p MainPID -p ActiveState -p SubState -p ActiveEnterTimestampMonotonic -p NRestarts -p FragmentPath -p NeedDaemonReload
done
"""


def snapshot() -> str:
    return podman_host(HOST).check_output(SNAPSHOT)


def _bad_list(extra_entry: dict) -> list[dict]:
    """The host's workers with a changed concurrency, plus a bad entry."""
    workers = [dict(w) for w in workers_of(HOST)]
    first = workers[0]
    entries = [{"name": first["name"], "queues": first["queues"], "concurrency": first["concurrency"] + 1}]
    entries += [{"name": w["name"], "queues": w["queues"], "concurrency": w["concurrency"]} for w in workers[1:]]
    return entries + [extra_entry]


BAD = {
    "newline_injection_in_name": ({"celery_workers": _bad_list({"name": "evil\nExecStartPre=/bin/touch /tmp/pwned", "queues": ["x"]})},
                                  ASSERT_TASK, "field name must match"),
    "path_traversal_in_name": ({"celery_workers": _bad_list({"name": "../../../tmp/x", "queues": ["x"]})},
                               ASSERT_TASK, "field name must match"),
    "duplicate_name": ({"celery_workers": _bad_list({"name": "default", "queues": ["x"]})},
                       ASSERT_TASK, "field name is a duplicate"),
    "unknown_key": ({"celery_workers": _bad_list({"name": "extra", "queues": ["x"], "colour": "red"})},
                    SPEC_TASK, "celery_workers.colour"),
    # Refused after reading the host (nproc, MemTotal), still before any change.
    "does_not_fit_in_memory": ({"celery_workers": _bad_list({"name": "big", "queues": ["x"], "concurrency": {"per_cpu": 2000}})},
                               FIT_TASK, "the workers do not fit in memory"),
    "user_root": ({"celery_workers_user": "root", "celery_workers": _bad_list({"name": "extra", "queues": ["x"]})},
                  ASSERT_TASK, "celery_workers_user: workers must not run as root"),
}


@pytest.fixture(scope="module")
def before():
    text = snapshot()
    assert "celery-worker-default.service" in text and "/etc/celery/celery.env" in text, text
    return text


@pytest.mark.parametrize("case", sorted(BAD))
def test_refused_run_changes_nothing(before, case):
    variables, task, fragment = BAD[case]
    proc = run_site(["--limit", HOST], host_vars={HOST: variables}, json_output=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    results = results_by_host(proc.stdout)[HOST]
    failed = [(name, r) for name, r in results if r.get("failed")]
    assert len(failed) == 1, failed
    name, result = failed[0]
    assert name == task or name.startswith(task + " - "), name
    assert fragment in result["msg"], result["msg"]
    assert not any(r.get("changed") for _, r in results)
    assert snapshot() == before
    assert not podman_host(HOST).file("/tmp/pwned").exists


@pytest.fixture()
def root_alias():
    """An account `toor` with uid 0, as some hosts have; the account files are restored afterwards."""
    host = podman_host(HOST)
    files = "/etc/passwd /etc/group /etc/shadow /etc/gshadow"
    host.check_output(f"for f in {files}; do cp -p $f $f.test-backup; done")
    host.check_output("useradd -o -u 0 -g 0 -M -N -s /usr/sbin/nologin toor")
    yield "toor"
    host.check_output(f"for f in {files}; do mv $f.test-backup $f; done")
    assert host.run("getent passwd toor").rc != 0


def test_existing_account_with_uid_0_is_refused(before, root_alias):
    """Passes the controller-side checks, refused by the read-only lookup on the host."""
    proc = run_site(["--limit", HOST], json_output=True,
                    host_vars={HOST: {"celery_workers_user": root_alias, "celery_workers": _bad_list({"name": "extra", "queues": ["x"]})[:-1]}})
    assert proc.returncode == 2, proc.stderr[-2000:]
    results = results_by_host(proc.stdout)[HOST]
    assert dict(results)[ASSERT_TASK].get("failed") is not True
    failed = [(name, r) for name, r in results if r.get("failed")]
    assert [name for name, _ in failed] == [ROOT_TASK]
    assert "celery_workers_user 'toor'" in failed[0][1]["msg"] and "id 0" in failed[0][1]["msg"]
    assert not any(r.get("changed") for _, r in results)
    assert snapshot() == before


@pytest.fixture()
def foreign_unit():
    """A celery-worker-* unit this role did not write (no marker)."""
    path = "/etc/systemd/system/celery-worker-foreign.service"
    host = podman_host(HOST)
    host.check_output(f"printf '[Service]\\nExecStart=/bin/true\\n' > {path}")
    yield path
    host.check_output(f"rm -f {path}")


@pytest.mark.parametrize("remove_absent", [True, False])
def test_empty_worker_list_touches_only_the_roles_units(before, foreign_unit, remove_absent):
    proc = run_site(["--limit", HOST, "--check"], json_output=True,
                    host_vars={HOST: {"celery_workers": [], "celery_workers_remove_absent": remove_absent}})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = results_by_host(proc.stdout)[HOST]
    assert dict(results)[ASSERT_TASK]["msg"] == "celery_workers preflight passed for 0 worker(s)"
    stop = dict(results).get("celery_fleet.celery.celery_workers : Stop and disable the workers no longer listed", {})
    stopped = sorted(f"celery-worker-{r['item']}.service" for r in stop.get("results", []) if not r.get("skipped"))
    expected = sorted(f"celery-worker-{w['name']}.service" for w in workers_of(HOST)) if remove_absent else []
    assert stopped == expected
    assert "celery-worker-foreign.service" not in stopped
    # No other task would stop or disable a unit.
    for name, r in results:
        for one in r.get("results", [r]):
            if one.get("changed") and one.get("invocation", {}).get("module_args", {}).get("enabled") is False:
                assert one["name"] in expected, (name, one.get("name"))
    assert _without_foreign(snapshot()) == _without_foreign(before)


def _without_foreign(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "celery-worker-foreign" not in line)


def test_the_valid_part_alone_would_change_the_host(before):
    """Control: without the bad entry the same input changes the host (shown in check mode)."""
    proc = run_site(["--limit", HOST, "--check"], json_output=True, host_vars={HOST: {"celery_workers": _bad_list({})[:-1]}})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = results_by_host(proc.stdout)[HOST]
    units = dict(results)["celery_fleet.celery.celery_workers : Write the worker units"]
    changed = [r["item"]["name"] for r in units["results"] if r.get("changed")]
    assert changed == [workers_of(HOST)[0]["name"]]
    assert snapshot() == before

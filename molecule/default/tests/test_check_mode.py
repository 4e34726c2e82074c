"""`--check --diff` reports what would change and changes nothing.

Two runs of playbooks/site.yml in check mode, each compared with a snapshot
of both worker hosts taken before and after: every file, directory and link
under /etc/systemd/system, /etc/celery*, /opt and /var/lib (type, mode,
owner, size, mtime, link target), the SHA-256 of every file outside
/var/lib, the account databases, and every celery/flower unit (load, active
and enabled state, main PID, restarts, start time).

* a pending change: mol-worker1's `default` worker gets another concurrency;
  the run must say it would rewrite that unit and restart that worker;
* a fresh host: mol-worker2 gets a user, group, base, config and state
  directory and workers that do not exist on it, as on a host the role never
  saw; the run must say it would create the account and write the units.

Both runs must end with rc 0 (check mode on a fresh host must not fail on
what does not exist yet) and leave the snapshots identical.
"""

from __future__ import annotations

import pytest
import yaml

from ansible_run import podman_host, results_by_host, run_site
from conftest import INVENTORY, workers_of

HOSTS = ["mol-worker1", "mol-worker2"]
FRESH = {
    "celery_workers_user": "freshcelery",
    "celery_workers_group": "freshcelery",
    "celery_workers_base_dir": "/opt/fresh-celery",
    "celery_workers_config_dir": "/etc/fresh-celery",
    "celery_workers_state_dir": "/var/lib/fresh-celery",
    "celery_workers": [
        {"name": "fresh-a", "queues": ["fresh"], "concurrency": 1},
        {"name": "fresh-b", "queue": "fresh2", "time_limit": 60, "env": {"FRESH": "1"}},
    ],
}
# Flower saves its state every celery_flower_state_save_interval (10 s in this
# scenario): its files may change size and mtime during a run, nothing else.
VOLATILE = ("/var/lib/celery-flower/", "/var/lib/celery-flower ")

SNAPSHOT = r"""
set -eu
echo '# tree'
find /etc/systemd/system /etc/celery* /opt /var/lib -xdev -printf '%p %y %m %u %g %s %T@ %l\n' 2>/dev/null | sort
echo '# checksums'
find /etc/systemd/system /etc/celery* /opt -xdev -type f -print0 | sort -z | xargs -0 -r sha256sum
sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow
echo '# units'
systemctl list-unit-files 'celery*' 'flower*' --no-legend --no-pager
for u in $(systemctl list-units 'celery*' 'flower*' --all --no-legend --no-pager --plain | awk '{print $1}'); do
  echo "$u" $(systemctl show "$u" -p LoadState -p ActiveState -p SubState -p UnitFileState -p MainPID -p NRestarts \
    -p ActiveEnterTimestampMonotonic -p NeedDaemonReload -p FragmentPath | sort)
done
"""


def snapshot(hostname: str) -> list[str]:
    lines = podman_host(hostname).check_output(SNAPSHOT).splitlines()
    # Volatile files: keep path, type, mode and owner; drop size and mtime.
    return [" ".join(line.split()[:5]) if line.startswith(VOLATILE) else line for line in lines]


def snapshots() -> dict[str, list[str]]:
    return {h: snapshot(h) for h in HOSTS}


def assert_same(before: dict[str, list[str]], after: dict[str, list[str]]) -> None:
    for h in HOSTS:
        gone = sorted(set(before[h]) - set(after[h]))
        new = sorted(set(after[h]) - set(before[h]))
        assert not gone and not new, f"{h} changed in check mode:\n- " + "\n- ".join(gone) + "\n+ " + "\n+ ".join(new)


def _result(results, name):
    found = [r for n, r in results if n == name or n.startswith(name + " - ")]
    assert found, f"no task {name!r} in {[n for n, _ in results]}"
    return found


def changed_items(result: dict, key: str = "name") -> list:
    return [r["item"][key] if isinstance(r["item"], dict) else r["item"]
            for r in result.get("results", []) if r.get("changed")]


@pytest.fixture(scope="module")
def steady():
    """The hosts are converged and in steady state: two snapshots a few seconds apart agree."""
    first = snapshots()
    for h in HOSTS:
        text = "\n".join(first[h])
        for w in workers_of(h):
            assert f"celery-worker-{w['name']}.service " in text, (h, w["name"])
    assert_same(first, snapshots())
    return first


def test_pending_change_is_reported_not_made(steady):
    first = workers_of("mol-worker1")[0]
    entries = yaml.safe_load((INVENTORY / "host_vars" / "mol-worker1.yml").read_text())["celery_workers"]
    entries[0]["concurrency"] = first["concurrency"] + 1
    before = snapshots()
    proc = run_site(["--check", "--diff"], host_vars={"mol-worker1": {"celery_workers": entries}}, json_output=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = results_by_host(proc.stdout)
    # Control: the run saw the change, would write that unit and restart that worker only.
    (units,) = _result(results["mol-worker1"], "celery_fleet.celery.celery_workers : Write the worker units")
    assert changed_items(units) == [first["name"]]
    diff = [r for r in units["results"] if r.get("changed")][0]["diff"]
    assert f"--concurrency={first['concurrency'] + 1}" in str(diff), diff
    restarts = [r for n, r in results["mol-worker1"] if n.startswith("celery_fleet.celery.celery_workers : Restart worker ")]
    assert [(r.get("name"), r.get("changed")) for r in restarts] == [(f"celery-worker-{first['name']}.service", True)]
    assert not any(n.startswith("celery_fleet.celery.celery_workers : Restart worker ") for n, _ in results["mol-worker2"])
    assert not any(r.get("changed") for _, r in results["mol-worker2"]), "mol-worker2 has nothing to change"
    assert_same(before, snapshots())
    assert_same(steady, snapshots())


def test_fresh_host_in_check_mode_passes_and_changes_nothing(steady):
    host = podman_host("mol-worker2")
    # The fresh host's things exist nowhere yet.
    assert host.run(f"getent passwd {FRESH['celery_workers_user']}").rc == 2
    assert host.run(f"getent group {FRESH['celery_workers_group']}").rc == 2
    for key in ("celery_workers_base_dir", "celery_workers_config_dir", "celery_workers_state_dir"):
        assert not host.file(FRESH[key]).exists, FRESH[key]
    for w in FRESH["celery_workers"]:
        assert not host.file(f"/etc/systemd/system/celery-worker-{w['name']}.service").exists
    before = snapshots()
    proc = run_site(["--check", "--diff"], host_vars={"mol-worker2": FRESH}, json_output=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = results_by_host(proc.stdout)["mol-worker2"]
    # The only failures allowed are the ones the role ignores in check mode
    # (ignore_errors: "{{ ansible_check_mode }}"): starting units not written yet.
    failed = [(n, item.get("msg", "")) for n, r in results if r.get("failed")
              for item in (r.get("results") or [r]) if item.get("failed")]
    assert failed, "control: starting the unwritten units must fail (and be ignored)"
    assert all("Could not find the requested service" in msg for _, msg in failed), failed
    assert {n for n, _ in failed} <= {"celery_fleet.celery.celery_workers : Enable and start the workers",
                                      "celery_fleet.celery.celery_workers : Enable and start beat"}, failed
    # Control: the run would create the account, the directories and both units.
    for task in ("celery_fleet.celery.celery_workers : Create the workers' group", "celery_fleet.celery.celery_workers : Create the workers' system user"):
        assert [r.get("changed") for r in _result(results, task)] == [True], task
    (dirs,) = _result(results, "celery_fleet.celery.celery_workers : Create the directories")
    assert sorted(changed_items(dirs, "path")) == sorted([
        FRESH["celery_workers_base_dir"], FRESH["celery_workers_base_dir"] + "/bin", FRESH["celery_workers_base_dir"] + "/app",
        FRESH["celery_workers_config_dir"], FRESH["celery_workers_state_dir"]])
    (units,) = _result(results, "celery_fleet.celery.celery_workers : Write the worker units")
    assert changed_items(units) == [w["name"] for w in FRESH["celery_workers"]]
    assert_same(before, snapshots())
    assert_same(steady, snapshots())
    assert host.run(f"getent passwd {FRESH['celery_workers_user']}").rc == 2

"""The default scenario's fixtures; the shared helpers are molecule/shared/fleet.py."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

os.environ.setdefault("MOLECULE_SCENARIO_DIRECTORY", str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))

from fleet import WORKER_HOSTS, celery_client, deadline, node, pytest_configure, workers_of  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import


@pytest.fixture(scope="session")
def celery_app():
    """The deployed application, loaded on the controller and pointed at the test broker."""
    with celery_client() as module:
        yield module


@pytest.fixture(scope="session")
def inspect(celery_app):
    return celery_app.app.control.inspect(timeout=3.0)


@pytest.fixture()
def worker_host(host):
    """Skip tests of worker hosts on the broker host."""
    name = host.check_output("hostname")
    if name not in WORKER_HOSTS:
        pytest.skip(f"{name} is not a worker host")
    return name


@pytest.fixture()
def workers(worker_host):
    return workers_of(worker_host)


# ---------------------------------------------------------------------------
# The hosts' state, before and after a run that must change nothing
# ---------------------------------------------------------------------------

# Every file, directory and link under the role's trees (systemd's, any
# *celery* directory of /etc and /var/lib, /opt: type, mode, owner, size,
# mtime, link target; not apt's cache, which the apt task may refresh without
# a change), the SHA-256 of every file outside /var/lib, the
# account databases, and every celery/flower unit (load, active and enabled
# state, main PID, restarts, start time).
SNAPSHOT = r"""
set -eu
echo '# tree'
find /etc/systemd/system /etc/*celery* /opt /var/lib/*celery* -xdev -printf '%p %y %m %u %g %s %T@ %l\n' 2>/dev/null | sort
echo '# checksums'
find /etc/systemd/system /etc/*celery* /opt -xdev -type f -print0 | sort -z | xargs -0 -r sha256sum
sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow
echo '# units'
systemctl list-unit-files 'celery*' 'flower*' --no-legend --no-pager
for u in $(systemctl list-units 'celery*' 'flower*' --all --no-legend --no-pager --plain | awk '{print $1}'); do
  echo "$u" $(systemctl show "$u" -p LoadState -p ActiveState -p SubState -p UnitFileState -p MainPID -p NRestarts \
    -p ActiveEnterTimestampMonotonic -p NeedDaemonReload -p FragmentPath | sort)
done
"""
# Flower saves its state every celery_flower_state_save_interval (10 s in this
# scenario): its files may change size and mtime during a run, nothing else.
VOLATILE = ("/var/lib/celery-flower/", "/var/lib/celery-flower ")


def snapshots() -> dict[str, list[str]]:
    out = {}
    for h in WORKER_HOSTS:
        lines = node(h).check_output(SNAPSHOT).splitlines()
        out[h] = [" ".join(line.split()[:5]) if line.startswith(VOLATILE) else line for line in lines]
    return out


def assert_same(before: dict[str, list[str]], after: dict[str, list[str]]) -> None:
    for h in WORKER_HOSTS:
        gone = sorted(set(before[h]) - set(after[h]))
        new = sorted(set(after[h]) - set(before[h]))
        assert not gone and not new, f"{h} changed:\n- " + "\n- ".join(gone) + "\n+ " + "\n+ ".join(new)


@pytest.fixture(scope="session")
def steady():
    """The hosts are converged and in steady state: two snapshots a few seconds apart agree."""
    first = snapshots()
    for h in WORKER_HOSTS:
        text = "\n".join(first[h])
        for w in workers_of(h):
            assert f"{w['unit']} " in text, (h, w["name"])
    assert_same(first, snapshots())
    return first


def task_output(output: str, task: str) -> str:
    """The default callback's output of one task (all hosts; a looped include repeats a name: all of them)."""
    parts = output.split(f"TASK [celery_fleet.celery.{task}]")
    assert len(parts) > 1, f"no task {task!r} in the output"
    return "\n".join(part.split("\nTASK [", 1)[0] for part in parts[1:])

"""The probe's verdict (library/celery_workers_probe.py) and the fast-mode script
its action plugin runs on the host (action_plugins/celery_workers_probe.py).

Molecule proves both on real hosts; these cases cover every clause of the
verdict, which a lab host only shows in its good state and a few drifts.
"""

from __future__ import annotations

import copy
import getpass
import grp
import hashlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROLE = pathlib.Path(__file__).resolve().parents[1] / "roles" / "celery_workers"


def load(path: pathlib.Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe = load(ROLE / "library" / "celery_workers_probe.py", "celery_workers_probe_module")
action = load(ROLE / "action_plugins" / "celery_workers_probe.py", "celery_workers_probe_action")

UNITS = ["celery-worker-a.service", "celery-worker-b.service"]
EXPECT = {"account": ["Celery workers", "/var/lib/celery", "/usr/sbin/nologin"], "celery_version": "5.7.0",
          "names": ["a", "b"]}
GOOD = {
    "passwd": ["x", "997", "997", "Celery workers", "/var/lib/celery", "/usr/sbin/nologin"],
    "group": ["x", "997", ""],
    "packages_missing": [],
    "celery_version": "5.7.0",
    "managed": ["a", "b"],
    "units": {u: {"load": "loaded", "active": "active", "enabled": "enabled"} for u in UNITS},
    "paths": {"/etc/systemd/system/celery-beat.service": False},
    "directories_to_fix": [],
    "files_to_write": [],
}


def probed(result, units=UNITS):
    """result as probe() returns it: with the units found running."""
    return dict(result, units_running=probe.running_units(result["units"], units))


def changed(path, value):
    result = copy.deepcopy(GOOD)
    target = result
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return result


def test_verdict_good_host():
    assert probe.verdict(probed(GOOD), EXPECT, UNITS) is True


@pytest.mark.parametrize("result", [
    changed(["packages_missing"], ["python3-venv"]),
    changed(["passwd"], None),
    changed(["group"], None),
    changed(["passwd", 1], "0"),
    changed(["group", 1], "0"),
    changed(["passwd", 2], "998"),
    changed(["passwd", 5], "/bin/bash"),
    changed(["passwd", 4], "/home/celery"),
    changed(["directories_to_fix"], ["/opt/celery"]),
    changed(["files_to_write"], ["/etc/celery/a.env"]),
    changed(["celery_version"], "5.6.0"),
    changed(["celery_version"], None),
    changed(["managed"], ["a", "b", "old"]),
    changed(["paths", "/etc/systemd/system/celery-beat.service"], True),
    changed(["units", UNITS[1], "active"], "failed"),
    changed(["units", UNITS[1], "enabled"], "disabled"),
    changed(["units", UNITS[0], "load"], "not-found"),
    changed(["units"], {UNITS[0]: GOOD["units"][UNITS[0]]}),
], ids=lambda r: next(f"{k}" for k in GOOD if r[k] != GOOD[k]))
def test_verdict_each_difference(result):
    assert probe.verdict(probed(result), EXPECT, UNITS) is False


def test_verdict_without_expect_or_other_settings():
    assert probe.verdict(probed(GOOD), None, UNITS) is False  # settings that always leave work (beat, extra pip packages)
    assert probe.verdict(probed(GOOD), dict(EXPECT, celery_version=None), UNITS) is False
    assert probe.verdict(probed(GOOD), dict(EXPECT, names=["a"]), UNITS) is False  # remove_absent: b is a stray unit
    assert probe.verdict(probed(changed(["managed"], ["a", "b", "old"])), dict(EXPECT, names=None), UNITS) is True
    more = UNITS + ["celery-worker-c.service"]
    assert probe.verdict(probed(GOOD, more), EXPECT, more) is False


def test_running_units_keeps_only_loaded_enabled_active():
    states = dict(GOOD["units"], **{"celery-worker-c.service": {"load": "loaded", "active": "failed", "enabled": "enabled"}})
    assert probe.running_units(states, UNITS + ["celery-worker-c.service", "celery-worker-d.service"]) == UNITS


@pytest.fixture(name="record")
def fixture_record(tmp_path):
    """A record of this machine's own user, a directory and a file under tmp_path."""
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    data = tmp_path / "app.env"
    data.write_text("A=1\n")
    data.chmod(0o640)
    options = {"user": user, "group": group, "packages": [], "venv": str(tmp_path / "venv"),
               "unit_dir": str(tmp_path), "unit_prefix": "celery-worker-", "marker": "# marker", "units": [],
               "paths": [str(tmp_path / "beat.service")],
               "directories": [{"path": str(tmp_path), "owner": user, "group": group,
                                "mode": oct(tmp_path.stat().st_mode & 0o7777)[2:].zfill(4)}],
               "expect": EXPECT}
    files = [{"path": str(data), "owner": user, "group": group, "mode": "0640",
              "sha256": hashlib.sha256(b"A=1\n").hexdigest()}]
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"fingerprint": "f1", "options": options, "files": files}))
    return state, data


def test_fast_mode_reads_the_record(record):
    state, data = record
    assert probe.fast(str(state), "other") == {"changed": False, "recorded": False, "in_shape": False,
                                               "directories_to_fix": None, "files_to_write": None}
    found = probe.fast(str(state), "f1")
    assert found["recorded"] is True and found["files_to_write"] == [] and found["directories_to_fix"] == []
    assert found["in_shape"] is False  # no celery in the venv, and this machine's user is not the workers'
    data.write_text("A=2\n")
    assert probe.fast(str(state), "f1")["files_to_write"] == [str(data)]
    data.write_text("A=1\n")
    data.chmod(0o600)
    assert probe.fast(str(state), "f1")["files_to_write"] == [str(data)]


def test_fast_script_is_the_module_code(record):
    """The action plugin's command runs the module's own fast() and prints its result."""
    state, _data = record
    for fingerprint in ("f1", "other", "it's \"quoted\"\n"):
        out = subprocess.run([sys.executable, "-c", action.fast_script(str(state), fingerprint)],
                             check=True, capture_output=True, text=True).stdout
        assert json.loads(out) == probe.fast(str(state), fingerprint)

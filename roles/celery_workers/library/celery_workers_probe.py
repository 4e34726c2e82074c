#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Read, in one call, what the celery_workers role needs to know about a host."""

from __future__ import annotations

import glob
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess

DOCUMENTATION = r"""
module: celery_workers_probe
short_description: Read the state the celery_workers role needs, in one call
description:
  - Read-only (but for I(record)). Looks up the workers' user and group, the OS packages that are
    not installed, the Celery version in the virtualenv, the unit files that
    carry the role's marker, and the load, active and enablement state of
    units, so the role runs no per-worker task when nothing has to change.
options:
  user:
    description:
      - Account to look up.
      - Without it, fast mode; every option but I(state_file) and I(fingerprint) comes from the record.
    type: str
  group: {description: Group to look up (with I(user))., type: str}
  packages: {description: Debian packages that must be installed., type: list, elements: str, default: []}
  venv: {description: Virtualenv whose Celery version to read., type: path}
  unit_dir: {description: Directory of the unit files., type: path, default: /etc/systemd/system}
  unit_prefix: {description: File name prefix of the role's worker units., type: str, default: celery-worker-}
  marker: {description: Line that marks a unit written by the role., type: str}
  units: {description: "Units whose state to read (systemctl show); all loaded, enabled and active for C(in_shape).", type: list, elements: str, default: []}
  paths: {description: "Paths whose existence to report (none may exist for C(in_shape)).", type: list, elements: path, default: []}
  directories:
    description: "Directories {path, owner, group, mode}: report those missing or with other owner, group or mode."
    type: list
    elements: dict
    default: []
  files:
    description: "Files {path, content, owner, group, mode}: report those whose content, owner, group or mode differ."
    type: list
    elements: dict
    default: []
  state_file:
    description:
      - Where the role records the settings of its last complete run (JSON, root only).
      - Fast mode (no I(user)) takes every other option, and the files' SHA-256,
        from this record when its fingerprint is I(fingerprint); else it returns
        C(recorded=false) and null I(directories_to_fix) and I(files_to_write)
        (unknown: the role checks everything).
    type: path
  fingerprint:
    description: Hash of the role's code and variables (vars/main.yml, __celery_workers_fingerprint).
    type: str
  expect:
    description:
      - "What a host in shape has, for C(in_shape): C(account) (the passwd fields after the gid:
        gecos, home, shell), C(celery_version) (in the virtualenv) and C(names) (when not null,
        the only worker units carrying the marker). Null: these settings never leave a host
        where the role has nothing to do (C(in_shape) is false)."
      - Kept in the record.
    type: dict
  record:
    description:
      - Write I(state_file) (fingerprint, options, SHA-256 of each file) when the
        directories and files are as wanted. Nothing else is changed.
    type: bool
    default: false
notes:
  - The role's action plugin of the same name runs fast mode as a plain Python
    script (no module wrapper); this module does the rest. The functions below
    use only the standard library, for that script.
"""

RETURN = r"""
passwd: {description: getent passwd fields of user (password, uid, gid, gecos, home, shell) or null, type: list}
group: {description: getent group fields of group (password, gid, members) or null, type: list}
packages_missing: {description: packages not installed, type: list}
celery_version: {description: Celery version in the virtualenv, or null, type: str}
managed: {description: names of the role's worker units found (without prefix and .service), type: list}
units: {description: "unit -> {load, active, enabled}", type: dict}
units_running: {description: "units of I(units) loaded, enabled and active", type: list}
paths: {description: "path -> exists", type: dict}
directories_to_fix: {description: directories of I(directories) not in the wanted state, type: list}
files_to_write: {description: files of I(files) not in the wanted state, type: list}
recorded: {description: "fast mode: the record's fingerprint is I(fingerprint) (then the options came from it)", type: bool}
in_shape: {description: "the host is as I(expect) says, nothing for the role to do (false without I(expect))", type: bool}
"""


def passwd_entry(name):
    try:
        p = pwd.getpwnam(name)
    except KeyError:
        return None
    return [p.pw_passwd, str(p.pw_uid), str(p.pw_gid), p.pw_gecos, p.pw_dir, p.pw_shell]


def group_entry(name):
    try:
        g = grp.getgrnam(name)
    except KeyError:
        return None
    return [g.gr_passwd, str(g.gr_gid), ",".join(g.gr_mem)]


def run(name, args):
    """(rc, stdout) of the command name (searched like AnsibleModule.get_bin_path), or None if absent."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/sbin", "/usr/sbin", "/usr/local/sbin"])
    binary = shutil.which(name, path=path)
    if not binary:
        return None
    proc = subprocess.run([binary] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False, env=dict(os.environ, LC_ALL="C"))
    return proc.returncode, proc.stdout.decode("utf-8", errors="replace")


def missing_packages(packages):
    if not packages:
        return []
    ran = run("dpkg-query", ["-W", "-f=${Package} ${db:Status-Abbrev}\\n", "--"] + packages)
    if ran is None:
        return list(packages)
    out = ran[1]
    installed = {line.split()[0].split(":")[0] for line in out.splitlines()
                 if len(line.split()) >= 2 and line.split()[1] == "ii"}
    return [p for p in packages if p not in installed]


def celery_version(venv):
    if not venv or not os.access(os.path.join(venv, "bin", "python"), os.X_OK):
        return None
    for meta in sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "celery-*.dist-info", "METADATA"))):
        with open(meta, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():
                    break
    return None


def managed_units(unit_dir, prefix, marker):
    if not marker or not os.path.isdir(unit_dir):
        return []
    names = []
    pattern = re.compile("^" + re.escape(prefix) + r"(.+)\.service$")
    for entry in sorted(os.listdir(unit_dir)):
        match = pattern.match(entry)
        path = os.path.join(unit_dir, entry)
        if not match or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            if any(line.rstrip("\n") == marker for line in handle):
                names.append(match.group(1))
    return names


def unit_states(units):
    if not units:
        return {}
    ran = run("systemctl", ["show", "--property=Id,LoadState,ActiveState,UnitFileState", "--"] + units)
    if ran is None or ran[0] != 0:
        return {}
    out = ran[1]
    states = {}
    for block in out.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            states[props["Id"]] = {"load": props.get("LoadState", ""), "active": props.get("ActiveState", ""),
                                   "enabled": props.get("UnitFileState", "")}
    return states


def ids(owner, group):
    try:
        return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        return None, None


def in_shape(st, spec):
    uid, gid = ids(spec["owner"], spec["group"])
    return (uid is not None and st.st_uid == uid and st.st_gid == gid
            and stat.S_IMODE(st.st_mode) == int(str(spec["mode"]), 8))


def directories_to_fix(directories):
    out = []
    for d in directories:
        try:
            st = os.stat(d["path"])
        except OSError:
            out.append(d["path"])
            continue
        if not stat.S_ISDIR(st.st_mode) or not in_shape(st, d):
            out.append(d["path"])
    return out


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def files_to_write(files):
    """files: {path, owner, group, mode} and either content (text) or sha256 (from a record)."""
    out = []
    for f in files:
        try:
            st = os.stat(f["path"])
            with open(f["path"], "rb") as handle:
                data = handle.read()
            same = sha256(data) == f["sha256"] if "sha256" in f else data == f["content"].encode("utf-8")
        except OSError:
            out.append(f["path"])
            continue
        if not same or not stat.S_ISREG(st.st_mode) or not in_shape(st, f):
            out.append(f["path"])
    return out


# Options kept in the record: everything the probe needs except the files' content.
RECORDED = ("user", "group", "packages", "venv", "unit_dir", "unit_prefix", "marker", "units", "paths", "directories",
            "expect")


def read_record(path, fingerprint):
    """The record at path when its fingerprint is fingerprint, else None."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint:
        return None
    if not all(key in record.get("options", {}) for key in RECORDED) or not isinstance(record.get("files"), list):
        return None
    return record


def write_record(path, record, check_mode):
    """Write record to path (0600), atomically; True when it changed."""
    data = json.dumps(record, indent=1, sort_keys=True) + "\n"
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == data:
                return False
    except OSError:
        pass
    if check_mode:
        return True
    import tempfile  # pylint: disable=import-outside-toplevel  # only here: fast mode never writes

    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".celery_workers_state.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


# A unit as a running worker needs it (systemctl show's LoadState, UnitFileState, ActiveState).
UNIT_ENABLED = ("enabled", "enabled-runtime", "static", "alias")
UNIT_ACTIVE = ("active", "reloading")


def verdict(result, expect, units):
    """True when the host, as probed, leaves the role nothing to do: every unit of units is
    running, and the rest is as expect says (vars/main.yml: __celery_workers_expect)."""
    if not isinstance(expect, dict):
        return False
    passwd, group, names = result["passwd"], result["group"], expect.get("names")
    return bool(
        not result["packages_missing"]
        and passwd is not None and group is not None and passwd[1] != "0" and group[1] != "0"
        and passwd[2:] == [group[1]] + list(expect.get("account") or [])
        and not result["directories_to_fix"] and not result["files_to_write"]
        and expect.get("celery_version") is not None and result["celery_version"] == expect["celery_version"]
        and (names is None or not set(result["managed"]) - set(names))
        and not any(result["paths"].values())
        and set(units) <= set(result["units_running"]))


def running_units(states, units):
    """The units of units whose state (unit_states) is loaded, enabled and active."""
    return [unit for unit in units if unit in states and states[unit]["load"] == "loaded"
            and states[unit]["enabled"] in UNIT_ENABLED and states[unit]["active"] in UNIT_ACTIVE]


def probe(p):
    result = dict(
        passwd=passwd_entry(p["user"]),
        group=group_entry(p["group"]),
        packages_missing=missing_packages(p["packages"]),
        celery_version=celery_version(p["venv"]),
        managed=managed_units(p["unit_dir"], p["unit_prefix"], p["marker"]),
        units=unit_states(p["units"]),
        paths={path: os.path.exists(path) for path in p["paths"]},
        directories_to_fix=directories_to_fix(p["directories"]),
        files_to_write=files_to_write(p["files"]),
    )
    result["units_running"] = running_units(result["units"], p["units"])
    result["in_shape"] = verdict(result, p.get("expect"), p["units"])
    return result


def fast(state_file, fingerprint):
    """Fast mode: every option from the record of the last complete run with these settings."""
    record = read_record(state_file, fingerprint)
    if record is None:
        return dict(changed=False, recorded=False, in_shape=False, directories_to_fix=None, files_to_write=None)
    return dict(probe(dict(record["options"], files=record["files"])), changed=False, recorded=True)


def main():
    from ansible.module_utils.basic import AnsibleModule  # pylint: disable=import-outside-toplevel

    module = AnsibleModule(
        argument_spec={
            "user": {"type": "str"},
            "group": {"type": "str"},
            "packages": {"type": "list", "elements": "str", "default": []},
            "venv": {"type": "path"},
            "unit_dir": {"type": "path", "default": "/etc/systemd/system"},
            "unit_prefix": {"type": "str", "default": "celery-worker-"},
            "marker": {"type": "str"},
            "units": {"type": "list", "elements": "str", "default": []},
            "paths": {"type": "list", "elements": "path", "default": []},
            "directories": {"type": "list", "elements": "dict", "default": []},
            "files": {"type": "list", "elements": "dict", "default": []},
            "expect": {"type": "dict"},
            "state_file": {"type": "path"},
            "fingerprint": {"type": "str"},
            "record": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    if (p["record"] or p["user"] is None) and not (p["state_file"] and p["fingerprint"]):
        module.fail_json(msg="record, and a probe without user, need state_file and fingerprint")
    if p["user"] is None:
        module.exit_json(**fast(p["state_file"], p["fingerprint"]))
    result = probe(p)
    changed = False
    if p["record"]:
        if not result["directories_to_fix"] and not result["files_to_write"]:
            files = [{"path": f["path"], "owner": f["owner"], "group": f["group"], "mode": str(f["mode"]),
                      "sha256": sha256(f["content"].encode("utf-8"))} for f in p["files"]]
            record = {"fingerprint": p["fingerprint"], "options": {key: p[key] for key in RECORDED}, "files": files}
            changed = write_record(p["state_file"], record, module.check_mode)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()

"""`--check --diff` reports what would change, changes nothing and shows no secret.

Each run below is compared with a snapshot of both worker hosts taken before
and after (conftest.SNAPSHOT: every file under the role's trees with its
checksum, the accounts, every celery/flower unit with its main PID).

* One `--check --diff -vvv` run of site.yml:
  - mol-worker1 (converged) gets a pending change: its first worker another
    concurrency, and Flower another password. The run must say it would
    rewrite that worker's drop-in and restart that worker only, and rewrite
    and restart Flower.
  - mol-worker2 is a fresh host: a user, group, base, config and state
    directory and workers that do not exist on it, as on a host the role
    never saw. The run must say it would create them all, and pass: check
    mode on a fresh host must not fail on what does not exist yet.
  Secrets on a path that would change (the fresh host's environment file and
  client key, Flower's users) are in no line of the output.
* One `--check` run where the broker TLS settings would change, which the
  role tries first, from a private directory, in check mode too
  (tasks/broker_check.yml): mol-worker1 a CA bundle that still holds the
  broker's CA, mol-worker2 verification turned off (with another CA). Both
  are accepted by the broker, and every running worker of each host would
  restart, in the order of its list.
"""

from __future__ import annotations

import re

import yaml

from conftest import assert_same, snapshots, task_output
from fleet import GROUP_VARS, INVENTORY, NAME, PROJECT, TLS_DIR, broker_password, node, results_by_host, run_site, unit, workers_of

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
FLOWER_CANARY = "CanaryFlowerPw42"


def _tls(**keys) -> dict:
    """The scenario's broker TLS settings (group_vars) with some keys changed, paths resolved."""
    base = {k: v.replace("{{ lab_broker_tls_dir }}", str(TLS_DIR)) if isinstance(v, str) else v
            for k, v in GROUP_VARS["celery_workers_broker_tls"].items()}
    return {**base, **keys}


def _key_body() -> str:
    """A line from the middle of the client key: unique to it, no PEM boilerplate."""
    lines = (TLS_DIR / "client.key").read_text().splitlines()
    return lines[len(lines) // 2]


def _changed(section: str, host: str) -> list[str]:
    """Items (or the task itself: '') a host changed in a task's output."""
    return [m.group(1) or "" for m in re.finditer(rf"^changed: \[{host}\](?: => \(item=([^)]*)\))?", section, re.M)]


def test_pending_change_and_fresh_host_reported_not_made_no_secret_shown(steady):
    first = workers_of("mol-worker1")[0]
    entries = yaml.safe_load((INVENTORY / "host_vars" / "mol-worker1.yml").read_text())["celery_workers"]
    entries[0]["concurrency"] = first["concurrency"] + 1
    fresh = node("mol-worker2")
    # The fresh host's things exist nowhere yet.
    assert fresh.run(f"getent passwd {FRESH['celery_workers_user']}").rc == 2
    for key in ("celery_workers_base_dir", "celery_workers_config_dir", "celery_workers_state_dir"):
        assert not fresh.file(FRESH[key]).exists, FRESH[key]
    before = snapshots()
    proc = run_site(["--check", "--diff", "-vvv"], host_vars={
        "mol-worker1": {"celery_workers": entries, "celery_flower_basic_auth": [{"user": "flower", "password": FLOWER_CANARY}]},
        "mol-worker2": FRESH})
    output = proc.stdout  # stdout and stderr in order (run_site)
    assert proc.returncode == 0, output[-4000:]

    # mol-worker1: that worker's drop-in (its new concurrency in the diff) and that worker's restart only.
    dropins = task_output(output, "celery_workers : Write each worker's drop-in")
    assert _changed(dropins, "mol-worker1") == [first["name"]], dropins[-2000:]
    assert f"+    --concurrency={first['concurrency'] + 1} \\" in dropins
    names = set(re.findall(r"TASK \[celery_fleet\.celery\.celery_workers : Restart ([\w-]+)\]", output))
    restarts = {(name, host) for name in names for host in ("mol-worker1", "mol-worker2")
                if _changed(task_output(output, f"celery_workers : Restart {name}"), host)}
    assert restarts == {(first["name"], "mol-worker1")}, restarts
    flower_env = task_output(output, "celery_flower : Write the environment file (broker URL, users, management API)")
    assert _changed(flower_env, "mol-worker1") == [""] and "censored" in flower_env, flower_env
    assert _changed(task_output(output, "celery_flower : Restart Flower when its configuration changed"), "mol-worker1") == [""]

    # mol-worker2: the account, the directories, the files and the units would all be made.
    for task in ("Create the workers' group", "Create the workers' system user", "Write the shared environment file (broker URL)"):
        assert _changed(task_output(output, f"celery_workers : {task}"), "mol-worker2") == [""], task
    dirs = _changed(task_output(output, "celery_workers : Create the directories"), "mol-worker2")
    assert sorted(dirs) == sorted([FRESH["celery_workers_base_dir"], FRESH["celery_workers_base_dir"] + "/bin",
                                   FRESH["celery_workers_base_dir"] + "/app", FRESH["celery_workers_config_dir"],
                                   FRESH["celery_workers_state_dir"]])
    assert _changed(dropins, "mol-worker2") == [w["name"] for w in FRESH["celery_workers"]]
    # Only fresh-b has env (the item is censored: no_log).
    env_files = task_output(output, "celery_workers : Write the environment files of the workers with env")
    assert len(_changed(env_files, "mol-worker2")) == len([w for w in FRESH["celery_workers"] if "env" in w]) == 1
    # The only failures are the ones the role ignores in check mode: starting units not written yet.
    failed = re.findall(r"^(?:failed|fatal): \[mol-worker2\].*$", output, re.M)
    ignored = [task_output(output, "celery_workers : Enable and start the workers that are not"),
               task_output(output, "celery_workers : Enable and start the workers' target")]
    assert failed and all(any(line in section for section in ignored) for line in failed), failed
    assert "...ignoring" in ignored[0]

    # No secret in any line, though every file holding one was on a path that would change.
    flower_password = (PROJECT / ".lab" / f"{NAME}_flower_password").read_text().split()[0]
    for secret in (broker_password(), FLOWER_CANARY, flower_password, _key_body()):
        assert secret not in output
    assert "censored" in task_output(output, "celery_workers : Deploy the broker TLS files")
    assert_same(before, snapshots())
    assert_same(steady, snapshots())
    assert fresh.run(f"getent passwd {FRESH['celery_workers_user']}").rc == 2


def test_changed_broker_tls_is_tried_in_check_mode_and_would_restart_every_worker(steady, tmp_path):
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text((TLS_DIR / "ca.pem").read_text() + (TLS_DIR / "other-ca.pem").read_text())
    before = snapshots()
    proc = run_site(["--check"], json_output=True, host_vars={
        "mol-worker1": {"celery_workers_broker_tls": _tls(ca_src=str(bundle))},
        "mol-worker2": {"celery_workers_broker_tls": _tls(ca_src=str(TLS_DIR / "other-ca.pem"), verify=False, unverified_ok=True)}})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    results = results_by_host(proc.stdout)
    for host in ("mol-worker1", "mol-worker2"):
        tasks = dict(results[host])
        probe = tasks["celery_fleet.celery.celery_workers : Connect to the broker with the new settings as the workers' user"]
        assert probe["stdout"] == "the broker accepts the new settings", probe
        assert tasks["celery_fleet.celery.celery_workers : Deploy the broker TLS files"]["changed"]
        restarted = [r.get("name") for n, r in results[host]
                     if n.startswith("celery_fleet.celery.celery_workers : Restart ") and r.get("changed") and r.get("name")]
        assert restarted == [unit(w["name"]) for w in workers_of(host)], (host, restarted)
    assert_same(before, snapshots())

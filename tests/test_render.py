"""What the role's templates render, read back the way systemd reads it.

One ansible-playbook run on this machine (`ansible_connection: local`, one
inventory host per case) includes the role's preflight with `public: true`
(so every case is valid input, and the role's defaults and vars apply as in
a real run, with the host's workers composed and sized), then runs the
role's own template tasks (tasks/install.yml, configure.yml, beat.yml: the
same src, dest, loop and when), each dest under a temporary directory: the
template unit celery-worker@.service, celery-workers.target, each worker's
drop-in celery-worker@NAME.service.d/worker.conf (dest a directory, which
the template task creates), worker-NAME.env for the workers with env,
celery.env, pip.conf with a private index and the beat unit where beat is
enabled. Nothing else on this machine is touched.

The tests then parse the files as systemd does (systemd_syntax.py): an
instance's unit is the template with its drop-in added, its command line
the drop-in's ExecStart= with specifiers and variables expanded, `%i` being
the worker's name; and compare the *resulting* argv and environment with
what each entry asks for. An escaping mistake therefore shows as a wrong
argument or value, not as a string that merely looks right.
"""

from __future__ import annotations

import configparser
import os
import pathlib
import re
import subprocess

import pytest
import yaml

from preflight_harness import ANSIBLE_PLAYBOOK, LOCAL, PEM_SRC, PEM_VAR, ROOT, ansible_env, plugin_util, spec_options, write_pem
from systemd_syntax import exec_argv, expand_specifiers, one, parse_env_file, parse_unit, split_words, values

ROLE = ROOT / "roles" / "celery_workers"
TEMPLATES = ROLE / "templates"
ROLE_VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
UNIT_DIR = ROLE_VARS["__celery_workers_unit_dir"]
TEMPLATE_UNIT = ROLE_VARS["__celery_workers_template_unit"]
TARGET = ROLE_VARS["__celery_workers_target"]
DROPIN_FILE = ROLE_VARS["__celery_workers_dropin_file"]
MARKER = ROLE_VARS["__celery_workers_marker"]
SYSTEMD = plugin_util("_systemd")
CANARY = "RenderCanaryPw9"  # in every case's broker password: never in a unit
CPUS = len(os.sched_getaffinity(0))  # what nproc says to the role

# Values that need every kind of escaping: quotes, %, $, backslashes, backticks,
# spaces, a lone semicolon (an unquoted one separates commands in ExecStart=).
TRICKY_ARGS = [
    "--without-mingle",
    "-O",
    "fair",
    "--x=it's \"quoted\"",
    "50%",
    "%h%n%%",
    "%i",
    "$HOME",
    "${HOME}",
    "$$",
    "back\\slash",
    "\\n-not-a-newline",
    "trailing\\",
    "with space",
    ";",
    "`id`",
]
TRICKY_VALUE = "50% \"quoted\" $HOME ${X} `id` back\\slash \\n a\\\"b \\$x \\`y 'single' ; # not a comment"
# A value ending in a backslash: unescaped, it would escape the closing quote.
TRAILING_BACKSLASH = "ends\\"

STOP_TIMEOUT = 120
RESTART_SEC = 7
UNIT_EXTRA = ["MemoryMax=1G", "Environment=RENDER_EXTRA=1", "ExecStartPre=-/bin/true", "Nice=5"]

FULL = {
    "celery_workers_stop_timeout": STOP_TIMEOUT,
    "celery_workers_restart_sec": RESTART_SEC,
    "celery_workers_concurrency": 5,
    "celery_workers_loglevel": "error",
    "celery_workers_pool": "threads",
    "celery_workers_unit_extra": UNIT_EXTRA,
    "celery_workers_app_module": "proj.celery:app",
    "celery_workers_result_backend": "redis://cache:6379/1?x=%41",
    "celery_workers_environment": {"SHARED_TRICKY": TRICKY_VALUE, "SHARED_NUMBER": 42, "EMPTY": "",
                                   "SHARED_TRAILING": TRAILING_BACKSLASH},
    "celery_workers": [
        {"name": "all_opts", "queues": ["a", "b.c:d@e-f"], "concurrency": 3, "loglevel": "warning", "pool": "prefork",
         "max_tasks_per_child": 100, "max_memory_per_child": 262144, "prefetch_multiplier": 4,
         "time_limit": 600, "soft_time_limit": 500,
         "env": {"TRICKY": TRICKY_VALUE, "N": 3, "EMPTY": "", "TRAILING": TRAILING_BACKSLASH}, "extra_args": TRICKY_ARGS},
        {"name": "scaled", "queue": "q", "autoscale": {"max": 8, "min": 2}},
        {"name": "Plain-1", "queues": ["default"]},
        {"name": "limit_below_margin", "queues": ["x"], "time_limit": 10},
        {"name": "limit_at_margin", "queues": ["x2"], "time_limit": STOP_TIMEOUT - 30},
        {"name": "limit_above_margin", "queues": ["x3"], "time_limit": STOP_TIMEOUT - 29, "soft_time_limit": 5},
        {"name": "long_limit", "queues": ["y"], "time_limit": 1000, "max_tasks_per_child": 1,
         "env": {"ONLY_HERE": "in-its-env-file-only"}},
    ],
}

CASES = {
    "defaults": {},
    "full": FULL,
    "paths": {
        "celery_workers_user": "svc_celery",
        "celery_workers_group": "svc-grp",
        "celery_workers_base_dir": "/srv/celery-x",
        "celery_workers_config_dir": "/etc/celery-x",
        "celery_workers_state_dir": "/srv/celery-state",
        "celery_workers_beat_enabled": True,
        "celery_workers_beat_loglevel": "debug",
        "celery_workers_restart_sec": 11,
        "celery_workers_pip_index_url": f"https://ci:{CANARY}-pip%40x@pypi.example.org/simple/",
        "celery_workers": [{"name": "solo", "queue": "s", "pool": "solo", "concurrency": 1}],
    },
    # A fleet-wide list changed for this host: the units get the host's workers, sizes resolved.
    "overrides": {
        "celery_workers": [{"name": "a", "queues": ["a"], "autoscale": {"max": 4, "min": 1}},
                           {"name": "b", "queue": "b"},
                           {"name": "c", "queue": "c", "autoscale": {"max": {"per_cpu": 2}, "min": 1}}],
        "celery_workers_overrides": {"a": {"concurrency": {"per_cpu": 1, "max": 64}}, "b": {"present": False}},
    },
    # amqps:// (broker_url) with a CA and a client certificate: their paths, the name, verify.
    "tls": {
        "celery_workers_config_dir": "/etc/celery-tls",
        "celery_workers_broker_tls": {"ca_content": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                                      "cert_src": PEM_SRC,
                                      "key_content": "-----BEGIN PRIVATE KEY-----\nRENDERKEYBODY\n-----END PRIVATE KEY-----\n",
                                      "server_name": "mq.internal"},
    },
    # amqps:// with nothing given: the system's CA store, the URL's host, verified.
    "tls_defaults": {},
    "tls_unverified": {"celery_workers_broker_tls": {"verify": False, "unverified_ok": True}},
}
TLS_CASES = ["tls", "tls_defaults", "tls_unverified"]
# The TLS cases differ from the others only in celery.env: only it is rendered for them.
UNIT_CASES = [case for case in CASES if case not in TLS_CASES]
# The workers of each case's host, worked out here (overrides applied, sizes resolved for CPUS).
HOST_WORKERS = {"overrides": [{"name": "a", "queues": ["a"], "concurrency": min(CPUS, 64)},
                              {"name": "c", "queue": "c", "autoscale": {"max": 2 * CPUS, "min": 1}}]}

DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
ENTRY_OPTIONS = spec_options("celery_workers")["celery_workers"]["options"]
# The entry's numbers, each an option --name-with-dashes=N of celery worker.
INT_FIELDS = [field for field, opt in ENTRY_OPTIONS.items() if opt["type"] == "int"]


def settings(case: str) -> dict:
    """The role's defaults with the case's variables on top (what the templates saw)."""
    return {**DEFAULTS, **CASES[case], "celery_workers_broker_url": broker_url(case)}


def host_workers(case: str) -> list[dict]:
    return HOST_WORKERS.get(case, settings(case)["celery_workers"])


def broker_url(case: str) -> str:
    # Characters that would need escaping in an environment file, and the canary.
    return f"{'amqps' if case in TLS_CASES else 'amqp'}://celery:{CANARY}-{case}-p%40ss$w\"rd`x`\\@mq.example.org:5672/celery"


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

# The role's own tasks that write these files (tasks/configure.yml, beat.yml, install.yml).
TASK_FILES = ["install.yml", "configure.yml", "beat.yml"]


def _registered(names: list[str]) -> set[str]:
    return {task["register"] for name in names for task in yaml.safe_load((ROLE / "tasks" / name).read_text()) if "register" in task}


def role_template_tasks() -> list[dict]:
    """The role's template tasks that write a file (not the check-mode previews), as they are."""
    tasks = [task for name in TASK_FILES for task in yaml.safe_load((ROLE / "tasks" / name).read_text())
             if "ansible.builtin.template" in task and task.get("check_mode") is not True]
    assert len(tasks) >= 6, [task["name"] for task in tasks]
    return tasks


def _render_task(task: dict, host_dir: str, units: str) -> dict:
    """A template task of the role, writing under host_dir: the same src, dest, loop and vars; no owner or
    group (the role's accounts do not exist here), no handler; a `when` on what an earlier task of the role
    registered (a preview of this very file) left out."""
    args = task["ansible.builtin.template"]
    out = {"name": task["name"],
           "ansible.builtin.template": {"src": f"{TEMPLATES}/{args['src']}", "dest": f"{host_dir}{args['dest']}", "mode": args["mode"]}}
    out.update({key: task[key] for key in ("loop", "loop_control", "vars", "no_log") if key in task})
    later = _registered(TASK_FILES)
    when = [task["when"]] if isinstance(task.get("when"), str) else list(task.get("when", []))
    when = [condition for condition in when if not any(name in condition for name in later)]
    # The TLS cases differ from the others only in celery.env: only it is rendered for them.
    if args["src"] != "celery.env.j2":
        when.append(units)
    return {**out, "when": when}


def _playbook(out: pathlib.Path) -> list[dict]:
    host_dir = f"{out}/{{{{ inventory_hostname }}}}"
    units = f"inventory_hostname in {UNIT_CASES}"
    return [{
        "name": "Render the role's templates",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            # The role's defaults and vars, exactly as a run applies them; every case must be valid.
            {"ansible.builtin.include_role": {"name": "celery_workers", "tasks_from": "preflight.yml", "public": True}},
            *(_render_task(task, host_dir, units) for task in role_template_tasks()),
        ],
    }]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> pathlib.Path:
    work = tmp_path_factory.mktemp("render")
    out = work / "out"
    inventory = {"all": {"vars": {PEM_VAR: str(write_pem(work))}, "hosts": {
        case: {**LOCAL, **variables, "celery_workers_broker_url": broker_url(case)} for case, variables in CASES.items()}}}
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (work / "playbook.yml").write_text(yaml.safe_dump(_playbook(out), sort_keys=False))
    for case in CASES:  # the directories the role's install step makes (not the drop-in directories)
        for directory in (UNIT_DIR, settings(case)["celery_workers_config_dir"]):
            (out / case / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(work / "inventory.yml"), str(work / "playbook.yml")],
                          cwd=work, env=ansible_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert CANARY not in proc.stdout + proc.stderr
    return out


def test_parsers_read_systemd_syntax():
    """The model of systemd_syntax.py, on hand-written lines whose systemd reading is documented."""
    assert exec_argv('/bin/x "a b" c\\td "%%h" "$$X" "\\"q\\"" \'s q\' "back\\\\slash" "\\x41" ";"') == [
        "/bin/x", "a b", "c\td", "%h", "$X", '"q"', "s q", "back\\slash", "A", ";"]
    assert exec_argv("/bin/x %h $HOME ${HOME}") == ["/bin/x", "<%h>", "<$>HOME", "<$>{HOME}"]
    assert exec_argv("/bin/x %i %%i", instance="w1") == ["/bin/x", "w1", "%i"]
    with pytest.raises(AssertionError):
        exec_argv("/bin/x a ; /bin/y")
    assert parse_env_file('A="x \\" \\\\ \\$ \\` \\n y"\n# c\nB=""\n') == {"A": 'x " \\ $ ` \\n y', "B": ""}
    for unescaped in ['A="$x"', 'A="`id`"', 'A="a"b"', 'A="ends\\"', "A=bare"]:
        with pytest.raises(AssertionError):
            parse_env_file(unescaped)
    assert parse_unit("[S]\nA=1 \\\n  2 \\\n# c\n  3\nB=\n") == {"S": [("A", "1  2  3"), ("B", "")]}


# ---------------------------------------------------------------------------
# What each entry must give
# ---------------------------------------------------------------------------

def paths(s: dict) -> dict[str, str]:
    base = s["celery_workers_base_dir"]
    return {"venv": f"{base}/venv", "app": f"{base}/app", "config": s["celery_workers_config_dir"],
            "state": s["celery_workers_state_dir"], "beat": f"{s['celery_workers_state_dir']}/beat"}


def expected_options(s: dict, w: dict) -> list[str]:
    """The worker's options other than the fixed head and extra_args, in any order."""
    opts = [f"--queues={','.join(w['queues'] if 'queues' in w else [w['queue']])}"]
    if "autoscale" in w:
        opts.append(f"--autoscale={w['autoscale']['max']},{w['autoscale']['min']}")
    else:
        opts.append(f"--concurrency={w.get('concurrency', s['celery_workers_concurrency'])}")
    opts.append(f"--pool={w.get('pool', s['celery_workers_pool'])}")
    opts.append(f"--loglevel={w.get('loglevel', s['celery_workers_loglevel']).upper()}")
    for field in INT_FIELDS:
        if field in w:
            opts.append(f"--{field.replace('_', '-')}={w[field]}")
    return sorted(opts)


def expected_stop_timeout(s: dict, w: dict) -> int:
    return max(s["celery_workers_stop_timeout"], w["time_limit"] + 30 if "time_limit" in w else 0)


def worker_cases():
    return [(case, w) for case in UNIT_CASES for w in host_workers(case)]


def _id(param):
    case, w = param
    return f"{case}-{w['name']}"


def unit_path(root: pathlib.Path, name: str) -> pathlib.Path:
    return root / UNIT_DIR.lstrip("/") / name


def instance_unit(template: dict, dropin: dict) -> dict:
    """The unit systemd loads for an instance: each section of the template, the drop-in's lines after its own."""
    return {section: template.get(section, []) + dropin.get(section, []) for section in {**template, **dropin}}


@pytest.fixture(params=worker_cases(), ids=_id)
def worker(request, rendered):
    case, w = request.param
    s = settings(case)
    root = rendered / case
    template_text = unit_path(root, TEMPLATE_UNIT).read_text()
    dropin_text = unit_path(root, f"celery-worker@{w['name']}.service.d/{DROPIN_FILE}").read_text()
    dropin = parse_unit(dropin_text)
    return {"case": case, "s": s, "w": w, "dropin_text": dropin_text, "dropin": dropin,
            "unit": instance_unit(parse_unit(template_text), dropin), "paths": paths(s), "root": root}


def test_every_case_and_option_is_covered():
    """The cases use every field of an entry and every role-wide setting the templates read."""
    fields = {k for _, w in worker_cases() for k in w} | {k for case in CASES.values() for w in case.get("celery_workers", []) for k in w}
    entry_fields = set(ENTRY_OPTIONS)
    assert len(INT_FIELDS) >= 5, INT_FIELDS
    assert entry_fields <= fields, entry_fields - fields
    templates = " ".join(p.read_text() for p in TEMPLATES.iterdir())
    used = set(re.findall(r"\b(celery_workers_[a-z_]+)", templates))
    assert used, "no variable found: the pattern is broken"
    overridden = {k for case in CASES.values() for k in case}
    assert used - overridden <= {"celery_workers_broker_url"}, used - overridden
    # Every template of the role is rendered here.
    rendered_templates = {f"{TEMPLATE_UNIT}.j2", f"{TARGET}.j2", DROPIN_FILE, "worker.env.j2", "celery.env.j2",
                          "celery-beat.service.j2", "unit_hardening.j2", "pip.conf.j2"}
    assert {p.name for p in TEMPLATES.iterdir()} == rendered_templates


@pytest.mark.parametrize("case", UNIT_CASES)
def test_units_and_files_written_are_those_of_the_host_workers(rendered, case):
    """A drop-in per worker of the host (a worker left out by an override has none), an
    environment file only for a worker with env."""
    root, s = rendered / case, settings(case)
    names = [w["name"] for w in host_workers(case)]
    dropins = sorted(p.relative_to(unit_path(root, "")) for p in unit_path(root, "").glob("*.d/*"))
    assert dropins == sorted(pathlib.Path(f"celery-worker@{name}.service.d/{DROPIN_FILE}") for name in names)
    env_files = sorted(p.name for p in (root / paths(s)["config"].lstrip("/")).glob("worker-*.env"))
    assert env_files == sorted(f"worker-{w['name']}.env" for w in host_workers(case) if "env" in w)


def test_exec_start_is_exactly_the_entry(worker):
    s, w, p = worker["s"], worker["w"], worker["paths"]
    argv = exec_argv(one(worker["unit"]["Service"], "ExecStart"), instance=w["name"])
    head = [f"{p['venv']}/bin/celery", f"--app={s['celery_workers_app_module']}", "worker", "-n", f"{w['name']}@%h"]
    assert argv[:5] == head, argv
    rest = argv[5:]
    extra = list(w.get("extra_args", []))
    # extra_args arrive unchanged, in order, as separate arguments; -E (task events) is on.
    assert "-E" in rest
    if extra:
        starts = [i for i in range(len(rest)) if rest[i:i + len(extra)] == extra]
        assert len(starts) == 1, (extra, rest)
        rest = rest[:starts[0]] + rest[starts[0] + len(extra):]
    rest.remove("-E")
    assert sorted(rest) == expected_options(s, w)
    if "autoscale" in w:
        assert not any(a.startswith(("--concurrency", "-c")) for a in argv), argv


def test_node_name_keeps_the_hostname_specifier_for_celery(worker):
    """`%%h` in the file: systemd hands Celery a literal %h, which Celery expands to the hostname."""
    assert f" -n {worker['w']['name']}@%%h " in worker["dropin_text"].replace("\\\n", " ")


def test_extra_args_escaping_in_the_file(worker):
    """Each extra argument is one double-quoted word with \\ " % $ escaped (the argv test proves the reading)."""
    w = worker["w"]
    for arg in w.get("extra_args", []):
        quoted = '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'
        assert f"    {quoted} \\\n" in worker["dropin_text"], quoted


def test_service_settings(worker):
    s, w, p = worker["s"], worker["w"], worker["paths"]
    unit, svc = worker["unit"], worker["unit"]["Service"]
    name = w["name"]
    assert one(svc, "Type") == "exec"
    assert one(svc, "User") == s["celery_workers_user"]
    assert one(svc, "Group") == s["celery_workers_group"]
    assert one(svc, "WorkingDirectory") == p["app"]
    # The shared file from the template; the worker's own file from its drop-in, only when it has env.
    assert values(svc, "EnvironmentFile") == [f"{p['config']}/celery.env"] + ([f"{p['config']}/worker-{name}.env"] if "env" in w else [])
    assert [split_words(expand_specifiers(v, name)) for v in values(svc, "Environment")
            if v.startswith("CELERY_WORKER_NAME=")] == [[f"CELERY_WORKER_NAME={name}"]]
    assert one(svc, "KillMode") == "mixed"
    assert one(svc, "KillSignal") == "SIGTERM"
    assert one(svc, "Restart") == "always"
    assert one(svc, "RestartSec") == str(s["celery_workers_restart_sec"])
    assert one(svc, "TimeoutStopSec") == str(expected_stop_timeout(s, w))
    assert expand_specifiers(one(svc, "SyslogIdentifier"), name) == f"celery-worker-{name}"
    assert one(svc, "StandardOutput") == "journal" and one(svc, "StandardError") == "journal"
    assert one(unit["Unit"], "PartOf") == TARGET
    # The drop-in's Description (after the template's) is the one systemd shows.
    assert values(unit["Unit"], "Description")[-1].startswith(f"Celery worker {name} (queues: ")
    assert unit["Install"] == [("WantedBy", TARGET)]
    assert set(unit) == {"Unit", "Service", "Install"}


def test_dropin_holds_only_what_differs_per_worker(worker):
    """The drop-in: its marker, its Description, and in [Service] only the command, its stop timeout and its env file."""
    dropin = worker["dropin"]
    assert set(dropin) == {"Unit", "Service"}
    assert [k for k, _ in dropin["Unit"]] == ["Description", MARKER.split("=")[0]]
    assert ("X-Celery-Workers-Role", "managed") in dropin["Unit"] and MARKER in worker["dropin_text"].splitlines()
    keys = [k for k, _ in dropin["Service"]]
    assert keys == (["EnvironmentFile"] if "env" in worker["w"] else []) + ["ExecStart", "TimeoutStopSec"]


def test_stop_timeout_covers_the_hard_time_limit(worker):
    """A stop never kills a task inside its own hard limit: TimeoutStopSec >= time_limit + 30."""
    s, w = worker["s"], worker["w"]
    timeout = int(one(worker["unit"]["Service"], "TimeoutStopSec"))
    assert timeout >= s["celery_workers_stop_timeout"]
    if "time_limit" in w:
        assert timeout >= w["time_limit"] + 30


def test_stop_timeout_cases_cover_both_sides_of_the_margin():
    limits = {w["name"]: expected_stop_timeout(settings("full"), w) for w in FULL["celery_workers"]}
    assert limits["limit_below_margin"] == limits["limit_at_margin"] == STOP_TIMEOUT
    assert limits["limit_above_margin"] == STOP_TIMEOUT + 1
    assert limits["long_limit"] == 1030


def test_no_secret_in_the_unit_or_dropin(worker):
    for text in (worker["dropin_text"], unit_path(worker["root"], TEMPLATE_UNIT).read_text()):
        assert CANARY not in text
        assert "CELERY_BROKER_URL" not in text
        assert "amqp://" not in text
    # The worker's env (which may hold secrets) only in its environment file, which the drop-in names.
    for value in worker["w"].get("env", {}).values():
        assert len(str(value)) < 8 or str(value) not in worker["dropin_text"], value


def test_worker_environment_file(worker):
    w = worker["w"]
    path = worker["root"] / worker["paths"]["config"].lstrip("/") / f"worker-{w['name']}.env"
    if "env" not in w:
        assert not path.exists()
        return
    text = path.read_text()
    assert parse_env_file(text) == {k: str(v) for k, v in w["env"].items()}
    assert f"# {MARKER}" in text.splitlines()
    assert CANARY not in text


# ---------------------------------------------------------------------------
# Per host: the template unit, the target, the shared environment file, beat
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", UNIT_CASES)
def test_template_unit(rendered, case):
    s, p = settings(case), paths(settings(case))
    text = unit_path(rendered / case, TEMPLATE_UNIT).read_text()
    unit = parse_unit(text)
    svc = unit["Service"]
    assert values(svc, "ExecStart") == [], "the template has no command: a worker without its drop-in does not start"
    assert values(svc, "TimeoutStopSec") == []
    assert MARKER in text.splitlines()
    assert one(unit["Unit"], "PartOf") == TARGET
    assert unit["Install"] == [("WantedBy", TARGET)]
    # The sandbox, every line of _systemd.HARDENING, with the state directory the only writable path.
    for line in SYSTEMD.hardening_lines(p["state"]):
        key, _, value = line.partition("=")
        assert one(svc, key) == value, key
    # celery_workers_unit_extra: each line verbatim at the end of [Service], after the role's own directives.
    extra = s["celery_workers_unit_extra"]
    if extra:
        assert [f"{k}={v}" for k, v in svc[-len(extra):]] == extra
    role_keys = {"Type", "User", "Group", "WorkingDirectory", "EnvironmentFile", "Environment", "StandardOutput",
                 "StandardError", "SyslogIdentifier", "KillMode", "KillSignal", "Restart", "RestartSec", "ReadWritePaths",
                 *(line.split("=")[0] for line in SYSTEMD.HARDENING)}
    assert [k for k, _ in svc[:len(svc) - len(extra)] if k not in role_keys] == []


@pytest.mark.parametrize("case", UNIT_CASES)
def test_target(rendered, case):
    text = unit_path(rendered / case, TARGET).read_text()
    unit = parse_unit(text)
    assert set(unit) == {"Unit", "Install"}
    assert MARKER in text.splitlines()
    assert unit["Install"] == [("WantedBy", "multi-user.target")]


def test_hardening_table_is_well_formed():
    """_systemd.HARDENING is the one statement of the sandbox: one Directive=value line per directive,
    each locked against celery_workers_unit_extra."""
    keys = [line.split("=")[0] for line in SYSTEMD.HARDENING]
    assert all(re.fullmatch(r"[A-Z][A-Za-z]+=\S*", line) for line in SYSTEMD.HARDENING), SYSTEMD.HARDENING
    assert len(set(keys)) == len(keys) and set(keys) <= set(SYSTEMD.LOCKED_DIRECTIVES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_shared_environment_file(rendered, case):
    s = settings(case)
    text = (rendered / case / paths(s)["config"].lstrip("/") / "celery.env").read_text()
    expected = {"CELERY_BROKER_URL": broker_url(case), "CELERY_RESULT_BACKEND": s["celery_workers_result_backend"],
                **{k: str(v) for k, v in s["celery_workers_environment"].items()}}
    if case in TLS_CASES:
        # Written out here: the files given, at their documented paths, never their content.
        tls = s["celery_workers_broker_tls"]
        tls_dir = paths(s)["config"] + "/tls"
        for kind, var, name in [("ca", "CELERY_BROKER_TLS_CA", "ca.pem"), ("cert", "CELERY_BROKER_TLS_CERT", "client.pem"),
                                ("key", "CELERY_BROKER_TLS_KEY", "client.key")]:
            if tls.get(kind + "_src") or tls.get(kind + "_content"):
                expected[var] = f"{tls_dir}/{name}"
        expected["CELERY_BROKER_TLS_SERVER_NAME"] = tls.get("server_name", "")
        expected["CELERY_BROKER_TLS_VERIFY"] = "0" if tls.get("verify") is False else "1"
        assert "RENDERKEYBODY" not in text and "BEGIN" not in text
    assert parse_env_file(text) == expected


@pytest.mark.parametrize("case", UNIT_CASES)
def test_pip_conf(rendered, case):
    """The private index only in pip.conf, as pip reads it (RawConfigParser: no interpolation)."""
    s = settings(case)
    path = rendered / case / paths(s)["config"].lstrip("/") / "pip.conf"
    if not s["celery_workers_pip_index_url"]:
        assert not path.exists()
        return
    parser = configparser.RawConfigParser()
    parser.read_string(path.read_text())
    assert dict(parser["global"]) == {"index-url": s["celery_workers_pip_index_url"]}


def test_tricky_values_are_really_in_use():
    """The escaping tests mean something only if the inputs need escaping."""
    joined = "".join(TRICKY_ARGS)
    assert all(c in joined for c in "\"'%$\\`; ")
    assert all(c in TRICKY_VALUE for c in "\"%$\\`")
    assert all(c in broker_url("x") for c in "\"%$\\`")


@pytest.mark.parametrize("case", UNIT_CASES)
def test_beat_unit(rendered, case):
    s, p = settings(case), paths(settings(case))
    path = unit_path(rendered / case, ROLE_VARS["__celery_workers_beat_unit"])
    if not s["celery_workers_beat_enabled"]:
        assert not path.exists()
        return
    text = path.read_text()
    unit = parse_unit(text)
    svc = unit["Service"]
    assert exec_argv(one(svc, "ExecStart")) == [
        f"{p['venv']}/bin/celery", f"--app={s['celery_workers_app_module']}", "beat",
        f"--schedule={p['beat']}/celerybeat-schedule", "--pidfile=", f"--loglevel={s['celery_workers_beat_loglevel'].upper()}"]
    assert one(svc, "Type") == "exec"
    assert one(svc, "User") == s["celery_workers_user"] and one(svc, "Group") == s["celery_workers_group"]
    assert one(svc, "WorkingDirectory") == p["app"]
    assert values(svc, "EnvironmentFile") == [f"{p['config']}/celery.env"]
    assert one(svc, "RestartSec") == str(s["celery_workers_restart_sec"])
    assert one(svc, "Restart") == "always"
    assert one(svc, "SyslogIdentifier") == "celery-beat"
    for line in SYSTEMD.hardening_lines(p["beat"]):
        key, _, value = line.partition("=")
        assert one(svc, key) == value, key
    assert MARKER in text.splitlines()
    assert unit["Install"] == [("WantedBy", "multi-user.target")]
    assert CANARY not in text and "CELERY_BROKER_URL" not in text

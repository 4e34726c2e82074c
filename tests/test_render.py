"""What the role's templates render, read back the way systemd reads it.

One ansible-playbook run on this machine (`ansible_connection: local`, one
inventory host per case) includes the role's preflight with `public: true`
(so every case is valid input and the role's defaults and vars apply as in a
real run), then renders celery-worker.service.j2, worker.env.j2,
celery.env.j2 and celery-beat.service.j2 with `ansible.builtin.template`
into a temporary directory. Nothing else on this machine is touched.

The tests then parse the files as systemd does (systemd.syntax(7),
systemd.service(7) "Command lines", systemd.exec(7) EnvironmentFile=): line
continuations, quoting and C escapes, `%` specifiers, `$` variables and the
double-quote rules of environment files, and compare the *resulting* argv
and environment with what each entry asks for. An escaping mistake therefore
shows as a wrong argument or value, not as a string that merely looks right.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest
import yaml

from preflight_harness import ANSIBLE_PLAYBOOK, LOCAL, PEM_FILE, ROOT, ansible_env

ROLE = ROOT / "roles" / "celery_workers"
TEMPLATES = ROLE / "templates"
CANARY = "RenderCanaryPw9"  # in every case's broker password: never in a unit

# Values that need every kind of escaping: quotes, %, $, backslashes, backticks,
# spaces, a lone semicolon (an unquoted one separates commands in ExecStart=).
TRICKY_ARGS = [
    "--without-mingle",
    "-O",
    "fair",
    "--x=it's \"quoted\"",
    "50%",
    "%h%n%%",
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
        {"name": "long_limit", "queues": ["y"], "time_limit": 1000, "max_tasks_per_child": 1},
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
        "celery_workers": [{"name": "solo", "queue": "s", "pool": "solo", "concurrency": 1}],
    },
    # amqps:// (broker_url) with a CA and a client certificate: their paths, the name, verify.
    "tls": {
        "celery_workers_config_dir": "/etc/celery-tls",
        "celery_workers_broker_tls": {"ca_content": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                                      "cert_src": str(PEM_FILE),
                                      "key_content": "-----BEGIN PRIVATE KEY-----\nRENDERKEYBODY\n-----END PRIVATE KEY-----\n",
                                      "server_name": "mq.internal"},
    },
    # amqps:// with nothing given: the system's CA store, the URL's host, verified.
    "tls_defaults": {},
    "tls_unverified": {"celery_workers_broker_tls": {"verify": False, "unverified_ok": True}},
}
TLS_CASES = ["tls", "tls_defaults", "tls_unverified"]

# The sandbox of every unit of the role, written out here (not read from
# unit_hardening.j2), so that dropping or loosening a line fails a test.
HARDENING = {
    "UMask": "0027",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictRealtime": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "SystemCallArchitectures": "native",
}

DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def settings(case: str) -> dict:
    """The role's defaults with the case's variables on top (what the templates saw)."""
    return {**DEFAULTS, **CASES[case], "celery_workers_broker_url": broker_url(case)}


def broker_url(case: str) -> str:
    # Characters that would need escaping in an environment file, and the canary.
    return f"{'amqps' if case in TLS_CASES else 'amqp'}://celery:{CANARY}-{case}-p%40ss$w\"rd`x`\\@mq.example.org:5672/celery"


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

def _playbook(out: pathlib.Path) -> list[dict]:
    host_dir = f"{out}/{{{{ inventory_hostname }}}}"
    unit_dir = "{{ __celery_workers_unit_dir }}"
    return [{
        "name": "Render the role's templates",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            # The role's defaults and vars, exactly as a run applies them; every case must be valid.
            {"ansible.builtin.include_role": {"name": "celery_workers", "tasks_from": "preflight.yml", "public": True}},
            {"ansible.builtin.file": {"path": f"{host_dir}{unit_dir}", "state": "directory", "mode": "0755"}},
            {"ansible.builtin.file": {"path": f"{host_dir}{{{{ celery_workers_config_dir }}}}", "state": "directory",
                                      "mode": "0755"}},
            {"name": "Worker units",
             "ansible.builtin.template": {
                 "src": str(TEMPLATES / "celery-worker.service.j2"),
                 "dest": f"{host_dir}{unit_dir}/{{{{ __celery_workers_unit_format | format(item.name) }}}}",
                 "mode": "0644"},
             "loop": "{{ celery_workers }}"},
            {"name": "Worker environment files",
             "ansible.builtin.template": {
                 "src": str(TEMPLATES / "worker.env.j2"),
                 "dest": f"{host_dir}{{{{ __celery_workers_worker_env_format | format(item.name) }}}}",
                 "mode": "0644"},
             "loop": "{{ celery_workers }}"},
            {"name": "Shared environment file",
             "ansible.builtin.template": {"src": str(TEMPLATES / "celery.env.j2"),
                                          "dest": f"{host_dir}{{{{ __celery_workers_env_file }}}}", "mode": "0644"}},
            {"name": "Beat unit",
             "ansible.builtin.template": {"src": str(TEMPLATES / "celery-beat.service.j2"),
                                          "dest": f"{host_dir}{unit_dir}/{{{{ __celery_workers_beat_unit }}}}",
                                          "mode": "0644"}},
        ],
    }]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> pathlib.Path:
    work = tmp_path_factory.mktemp("render")
    out = work / "out"
    inventory = {"all": {"hosts": {
        case: {**LOCAL, **variables, "celery_workers_broker_url": broker_url(case)} for case, variables in CASES.items()}}}
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (work / "playbook.yml").write_text(yaml.safe_dump(_playbook(out), sort_keys=False))
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(work / "inventory.yml"), str(work / "playbook.yml")],
                          cwd=work, env=ansible_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert CANARY not in proc.stdout + proc.stderr
    return out


# ---------------------------------------------------------------------------
# systemd's reading of a unit file and of an environment file
# ---------------------------------------------------------------------------

def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections -> [(directive, value)] in order; continuation lines joined (backslash -> space)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    lines = iter(text.splitlines())
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        while stripped.endswith("\\"):
            nxt = next(lines).strip()
            if nxt[:1] in "#;":  # comment lines inside a continuation are skipped
                continue
            stripped = stripped[:-1] + " " + nxt
        if stripped.startswith("["):
            assert stripped.endswith("]"), stripped
            current = stripped[1:-1]
            assert current not in sections, f"section [{current}] twice"
            sections[current] = []
            continue
        assert current is not None, f"directive outside a section: {stripped!r}"
        key, sep, value = stripped.partition("=")
        assert sep, f"not a directive: {stripped!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}= set {len(found)} times: {found}"
    return found[0]


C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "s": " ",
             "\\": "\\", '"': '"', "'": "'"}


def split_words(line: str) -> list[str]:
    """extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE), word by word; an unquoted `;` is refused."""
    words, i, n = [], 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return words
        if line[i] == ";" and (i + 1 == n or line[i + 1] in " \t"):
            raise AssertionError(f"unquoted ';' would end the command line at {line[i:i + 40]!r}")
        word, quote = [], None
        while i < n and (quote or line[i] not in " \t"):
            c = line[i]
            if c == "\\":
                assert i + 1 < n, f"backslash at the end of {line!r}"
                e = line[i + 1]
                if e == "x":
                    word.append(chr(int(line[i + 2:i + 4], 16)))
                    i += 4
                    continue
                assert e in C_ESCAPES, f"unknown escape \\{e} in {line!r}"
                word.append(C_ESCAPES[e])
                i += 2
                continue
            if quote:
                if c == quote:
                    quote = None
                else:
                    word.append(c)
            elif c in "\"'":
                quote = c
            else:
                word.append(c)
            i += 1
        assert quote is None, f"unterminated quote in {line!r}"
        words.append("".join(word))


SPECIFIER_RE = re.compile(r"%(.)")


def expand_specifiers(word: str) -> str:
    """%% -> %; any other specifier becomes <%X> (the tests expect none)."""
    return SPECIFIER_RE.sub(lambda m: "%" if m.group(1) == "%" else f"<%{m.group(1)}>", word)


def expand_variables(word: str) -> str:
    """$$ -> $ (at exec time); a single $ before a name or { would be substituted: marked <$>."""
    out, i = [], 0
    while i < len(word):
        if word[i] == "$":
            if word[i + 1:i + 2] == "$":
                out.append("$")
                i += 2
                continue
            if re.match(r"[A-Za-z_{]", word[i + 1:i + 2]):
                out.append("<$>")
                i += 1
                continue
        out.append(word[i])
        i += 1
    return "".join(out)


def exec_argv(value: str) -> list[str]:
    """The argv systemd runs for an ExecStart= value."""
    return [expand_variables(expand_specifiers(w)) for w in split_words(value)]


def parse_env_file(text: str) -> dict[str, str]:
    """systemd's EnvironmentFile= reading of the KEY="value" lines the role writes."""
    env = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip()[0] in "#;":
            continue
        key, sep, rest = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"not KEY=value: {line!r}"
        assert rest.startswith('"'), f"{key}: value not double-quoted: {line!r}"
        value, i = [], 1
        while True:
            assert i < len(rest), f"{key}: unterminated quote: {line!r}"
            c = rest[i]
            if c == "\\":
                e = rest[i + 1]
                # Inside double quotes only \ " ` $ are escapes; any other backslash stays.
                value.append(e if e in '"\\`$' else "\\" + e)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        assert rest[i:].strip() == "", f"{key}: text after the closing quote: {line!r}"
        assert key not in env, f"{key} twice"
        env[key] = "".join(value)
    return env


def test_parsers_read_systemd_syntax():
    """The model above, on hand-written lines whose systemd reading is documented."""
    assert exec_argv('/bin/x "a b" c\\td "%%h" "$$X" "\\"q\\"" \'s q\' "back\\\\slash" "\\x41" ";"') == [
        "/bin/x", "a b", "c\td", "%h", "$X", '"q"', "s q", "back\\slash", "A", ";"]
    assert exec_argv("/bin/x %h $HOME ${HOME}") == ["/bin/x", "<%h>", "<$>HOME", "<$>{HOME}"]
    with pytest.raises(AssertionError):
        exec_argv("/bin/x a ; /bin/y")
    assert parse_env_file('A="x \\" \\\\ \\$ \\` \\n y"\n# c\nB=""\n') == {"A": 'x " \\ $ ` \\n y', "B": ""}
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
    for field in ("max_tasks_per_child", "max_memory_per_child", "prefetch_multiplier", "time_limit", "soft_time_limit"):
        if field in w:
            opts.append(f"--{field.replace('_', '-')}={w[field]}")
    return sorted(opts)


def expected_stop_timeout(s: dict, w: dict) -> int:
    return max(s["celery_workers_stop_timeout"], w["time_limit"] + 30 if "time_limit" in w else 0)


def worker_cases():
    return [(case, w) for case in CASES for w in settings(case)["celery_workers"]]


def _id(param):
    case, w = param
    return f"{case}-{w['name']}"


@pytest.fixture(params=worker_cases(), ids=_id)
def worker(request, rendered):
    case, w = request.param
    s = settings(case)
    text = (rendered / case / "etc/systemd/system" / f"celery-worker-{w['name']}.service").read_text()
    return {"case": case, "s": s, "w": w, "text": text, "unit": parse_unit(text), "paths": paths(s),
            "root": rendered / case}


def test_every_case_and_option_is_covered():
    """The cases use every field of an entry and every role-wide setting the templates read."""
    fields = {k for _, w in worker_cases() for k in w}
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    entry_fields = set(spec["argument_specs"]["main"]["options"]["celery_workers"]["options"])
    assert entry_fields <= fields, entry_fields - fields
    templates = " ".join(p.read_text() for p in TEMPLATES.glob("*.j2") if "preflight" not in p.name)
    used = set(re.findall(r"\b(celery_workers_[a-z_]+)", templates)) - {"celery_workers_preflight"}
    overridden = {k for case in CASES.values() for k in case}
    assert used - overridden <= {"celery_workers_broker_url"}, used - overridden


def test_exec_start_is_exactly_the_entry(worker):
    s, w, p = worker["s"], worker["w"], worker["paths"]
    argv = exec_argv(one(worker["unit"]["Service"], "ExecStart"))
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
    assert f" -n {worker['w']['name']}@%%h " in worker["text"].replace("\\\n", " ")


def test_extra_args_escaping_in_the_file(worker):
    """Each extra argument is one double-quoted word with \\ " % $ escaped (the argv test proves the reading)."""
    w = worker["w"]
    for arg in w.get("extra_args", []):
        quoted = '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'
        assert f"    {quoted} \\\n" in worker["text"], quoted


def test_service_settings(worker):
    s, w, p = worker["s"], worker["w"], worker["paths"]
    svc = worker["unit"]["Service"]
    assert one(svc, "Type") == "exec"
    assert one(svc, "User") == s["celery_workers_user"]
    assert one(svc, "Group") == s["celery_workers_group"]
    assert one(svc, "WorkingDirectory") == p["app"]
    assert values(svc, "EnvironmentFile") == [f"{p['config']}/celery.env", f"{p['config']}/worker-{w['name']}.env"]
    assert one(svc, "KillMode") == "mixed"
    assert one(svc, "KillSignal") == "SIGTERM"
    assert one(svc, "Restart") == "always"
    assert one(svc, "RestartSec") == str(s["celery_workers_restart_sec"])
    assert one(svc, "TimeoutStopSec") == str(expected_stop_timeout(s, w))
    assert one(svc, "SyslogIdentifier") == f"celery-worker-{w['name']}"
    assert one(svc, "StandardOutput") == "journal" and one(svc, "StandardError") == "journal"
    assert "X-Celery-Workers-Role=managed" in worker["text"].splitlines()
    assert worker["unit"]["Install"] == [("WantedBy", "multi-user.target")]
    assert set(worker["unit"]) == {"Unit", "Service", "Install"}


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


def test_hardening(worker):
    svc = worker["unit"]["Service"]
    for key, value in {**HARDENING, "ReadWritePaths": worker["paths"]["state"]}.items():
        assert one(svc, key) == value, key


def test_unit_extra_lines_end_the_service_section(worker):
    """celery_workers_unit_extra: each line verbatim in [Service], after the role's own directives."""
    extra = worker["s"]["celery_workers_unit_extra"]
    svc = worker["unit"]["Service"]
    if extra:
        assert [f"{k}={v}" for k, v in svc[-len(extra):]] == extra
    # Nothing else beyond what the role writes.
    role_keys = {"Type", "User", "Group", "WorkingDirectory", "EnvironmentFile", "ExecStart", "StandardOutput",
                 "StandardError", "SyslogIdentifier", "KillMode", "KillSignal", "TimeoutStopSec", "Restart",
                 "RestartSec", "ReadWritePaths", *HARDENING}
    assert [k for k, _ in svc[:len(svc) - len(extra)] if k not in role_keys] == []


def test_no_secret_in_the_unit(worker):
    assert CANARY not in worker["text"]
    assert "CELERY_BROKER_URL" not in worker["text"]
    assert "amqp://" not in worker["text"]


def test_worker_environment_file(worker):
    w = worker["w"]
    text = (worker["root"] / worker["paths"]["config"].lstrip("/") / f"worker-{w['name']}.env").read_text()
    expected = {"CELERY_WORKER_NAME": w["name"], **{k: str(v) for k, v in w.get("env", {}).items()}}
    assert parse_env_file(text) == expected
    assert CANARY not in text


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


def test_tricky_values_are_really_in_use():
    """The escaping tests mean something only if the inputs need escaping."""
    joined = "".join(TRICKY_ARGS)
    assert all(c in joined for c in "\"'%$\\`; ")
    assert all(c in TRICKY_VALUE for c in "\"%$\\`")
    assert all(c in broker_url("x") for c in "\"%$\\`")


@pytest.mark.parametrize("case", sorted(CASES))
def test_beat_unit(rendered, case):
    s, p = settings(case), paths(settings(case))
    text = (rendered / case / "etc/systemd/system/celery-beat.service").read_text()
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
    for key, value in {**HARDENING, "ReadWritePaths": p["beat"]}.items():
        assert one(svc, key) == value, key
    assert "X-Celery-Workers-Role=managed" in text.splitlines()
    assert unit["Install"] == [("WantedBy", "multi-user.target")]
    assert CANARY not in text and "CELERY_BROKER_URL" not in text

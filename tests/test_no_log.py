"""Every task of the roles that handles a secret is `no_log: true`.

The secrets are what the roles' argument specs mark `no_log: true` (read from
meta/argument_specs.yml, not listed here): the variables so marked, and the
keys so marked inside a variable's entries (an entry's `env`, a user's
`password`, the TLS key). A task of roles/*/tasks or roles/*/handlers
handles a secret when it

* names a secret variable (also through `query('ansible.builtin.varnames', REGEX)`),
  or reads a secret key of an entry (`item.env`, `w['env']`);
* renders a template of the role that does (celery.env.j2, worker.env.j2,
  flower.env.j2: found by their text, not listed), by its src or by name;
* loops over entries that hold a secret key (celery_workers, or a private
  variable of vars/main.yml made from it without `map`): Ansible shows each
  item, whole, with the task's result.

It must then be `no_log: true` itself or inside a block that is. Not counted:
`when:` (a condition's value is never shown), `environment:` (no_log would
not hide it, Ansible puts it on the command line it runs; such a variable's
credentials must be refused by preflight instead, checked below), and
`ansible.builtin.validate_argument_spec` (it is given the spec's own no_log
marks). test_preflight.py, test_flower_preflight.py and molecule's
test_security.py check the output for canary passwords; this finds the task
that would print one before a run does.
"""

from __future__ import annotations

import functools
import re

import pytest
import yaml
from ansible.playbook.task import Task

from preflight_harness import ROOT, filters, role_defaults, spec_options

ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))
NOT_SHOWN = ("when", "environment")
EXEMPT_ACTIONS = ("ansible.builtin.validate_argument_spec", "validate_argument_spec")
TEMPLATE_ACTIONS = ("ansible.builtin.template", "template")
LOOPS = ("loop", "with_items", "with_list")


def _spec_secrets():
    """(secret variables, secret keys of entries, entry lists holding secret keys), from every role's spec."""
    variables, keys, entry_lists = set(), set(), {}
    for role in ROLES:
        for name, opt in spec_options(role.name).items():
            if opt.get("no_log"):
                variables.add(name)
            nested = {key for key, sub in opt.get("options", {}).items() if sub.get("no_log")}
            keys |= nested
            if nested and opt["type"] == "list" and not opt.get("no_log"):
                entry_lists[name] = nested
    return variables, keys, entry_lists


SECRET_VARS, SECRET_KEYS, ENTRY_LISTS = _spec_secrets()


def _var_re(names):
    return re.compile(r"(?<![\w.'\"])(" + "|".join(sorted(map(re.escape, names))) + r")\b(?!['\"])")


SECRET_VAR_RE = _var_re(SECRET_VARS)
# item.env, w.env, x['env'], map(attribute='env') as a value (not `is defined`, not selectattr('env', 'defined')).
SECRET_KEY_RE = re.compile(r"(?:\.(?:KEYS)\b(?!\s+is\s+(?:not\s+)?(?:defined|undefined))|\[['\"](?:KEYS)['\"]\]"
                           r"|attribute=['\"](?:KEYS)['\"])".replace("KEYS", "|".join(sorted(SECRET_KEYS))))
VARNAMES_RE = re.compile(r"varnames['\"],\s*['\"]([^'\"]+)['\"]")


@functools.cache
def _entry_list_vars(role):
    """celery_workers and the private variables made from it that still hold whole entries (no map): name -> secret keys."""
    names = dict(ENTRY_LISTS)
    private = yaml.safe_load((role / "vars" / "main.yml").read_text()) or {}
    grown = True
    while grown:
        grown = False
        for name, value in private.items():
            head = re.match(r"\s*\{\{\s*(\w+)", value) if isinstance(value, str) else None
            if name not in names and head and head.group(1) in names and "map(" not in value:
                names[name] = names[head.group(1)]
                grown = True
    return names


@functools.cache
def _secret_templates(role):
    """The role's templates that render a secret."""
    return {path.name for path in (role / "templates").iterdir()
            if SECRET_VAR_RE.search(jinja(path.read_text())) or SECRET_KEY_RE.search(jinja(path.read_text()))}


def _tasks(items, inherited=False, where=""):
    """(where, task, effective no_log) of every task, blocks walked, no_log inherited from a block."""
    for i, task in enumerate(items or []):
        no_log = task.get("no_log", inherited)
        name = f"{where}[{i}] {task.get('name', '')}"
        sections = [key for key in ("block", "rescue", "always") if key in task]
        if sections:
            for key in sections:
                yield from _tasks(task[key], no_log, f"{name} {key}")
        else:
            yield name, task, no_log


# Task keywords, as Ansible knows them (plus a handler's listen and the with_* loops).
KEYWORDS = set(Task.fattributes) | {"listen"}


def _action(task):
    actions = [key for key in task if key not in KEYWORDS and not key.startswith("with_")]
    assert len(actions) == 1, f"cannot tell the action of {task}"
    return actions[0]


def _template_srcs(role, task):
    """The template names a template task may render: its src, simple variables of vars/main.yml and loop items resolved."""
    src = str(task[_action(task)]["src"])
    private = yaml.safe_load((role / "vars" / "main.yml").read_text()) or {}
    candidates = [src]
    if "{{ item }}" in src:
        assert isinstance(task.get("loop"), list), f"cannot tell the items of {task}"
        candidates = [src.replace("{{ item }}", str(item)) for item in task["loop"]]
    resolved = []
    for candidate in candidates:
        for _ in range(3):
            candidate = re.sub(r"\{\{\s*(__\w+)\s*\}\}", lambda m: str(private.get(m.group(1), m.group(0))), candidate)
        assert "{{" not in candidate, f"cannot tell which template {src!r} is"
        resolved.append(candidate.rsplit("/", 1)[-1])
    return resolved


def _strings(value):
    """Every string of a task (or of its parts), keys too."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif value is not None:
        yield str(value)


EXPRESSION_KEYS = ("that", "changed_when", "failed_when", "until")  # bare Jinja expressions
JINJA_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def jinja(text):
    """The Jinja expressions of a text (what can read a variable)."""
    return "\n".join(JINJA_RE.findall(text))


def _expressions(task):
    shown = {key: value for key, value in task.items() if key not in NOT_SHOWN}
    bare = [str(s) for key in EXPRESSION_KEYS for s in _strings(shown.pop(key, None))]
    return "\n".join([jinja("\n".join(_strings(shown))), *bare])


def why_secret(role, task):
    """Why the task handles a secret (empty: it does not)."""
    if _action(task) in EXEMPT_ACTIONS:
        return []
    code = _expressions(task)
    reasons = [f"names {m}" for m in sorted(set(SECRET_VAR_RE.findall(code)))]
    reasons += [f"reads an entry's {re.sub('[^a-z_]|attribute', '', m)}" for m in sorted(set(SECRET_KEY_RE.findall(code)))]
    for pattern in VARNAMES_RE.findall(code):
        reasons += [f"queries {name} (varnames {pattern})" for name in sorted(SECRET_VARS) if re.search(pattern, name)]
    templates = _secret_templates(role)
    rendered = _template_srcs(role, task) if _action(task) in TEMPLATE_ACTIONS else []
    reasons += [f"renders {name}" for name in rendered if name in templates]
    everything = "\n".join(_strings(task))
    reasons += [f"mentions {name}" for name in sorted(templates) if name in everything and name not in rendered]
    for key in LOOPS:
        head = re.match(r"\s*\{\{\s*(\w+)", str(task.get(key, "")))
        entry_lists = _entry_list_vars(role)
        if head and head.group(1) in entry_lists and "map(" not in str(task[key]):
            reasons.append(f"loops over the entries of {head.group(1)} (each item shown whole with the result, "
                           f"its {', '.join(sorted(entry_lists[head.group(1)]))} too)")
    return reasons


def _task_files():
    return sorted(p for role in ROLES for d in ("tasks", "handlers") for p in (role / d).glob("*.yml"))


def test_the_specs_mark_the_secrets():
    """What this test reads from the specs (if a mark went, so would the check of its tasks)."""
    assert {"celery_workers_broker_url", "celery_workers_broker_tls", "celery_workers_environment",
            "celery_workers_result_backend", "celery_flower_broker_url", "celery_flower_basic_auth",
            "celery_flower_broker_api", "celery_flower_environment", "celery_flower_broker_tls"} <= SECRET_VARS
    assert {"env", "password", "key_content"} <= SECRET_KEYS and "celery_workers" in ENTRY_LISTS
    workers = ROOT / "roles" / "celery_workers"
    assert {"celery.env.j2", "worker.env.j2"} <= _secret_templates(workers)
    assert "flower.env.j2" in _secret_templates(ROOT / "roles" / "celery_flower")
    assert "__celery_workers_list" in _entry_list_vars(workers) and "__celery_workers_names" not in _entry_list_vars(workers)


@pytest.mark.parametrize("path", _task_files(), ids=[str(p.relative_to(ROOT / "roles")) for p in _task_files()])
def test_every_task_handling_a_secret_is_no_log(path):
    role = path.parents[1]
    missing = []
    for where, task, no_log in _tasks(yaml.safe_load(path.read_text())):
        reasons = why_secret(role, task)
        if reasons and no_log is not True:
            missing.append(f"{where}: {'; '.join(reasons)}")
    assert not missing, (f"{path.relative_to(ROOT)}: tasks that handle a secret without no_log: true "
                         f"(add it, or keep the secret out of the task):\n" + "\n".join(missing))


def test_the_check_finds_the_tasks_that_handle_secrets():
    """Not vacuous: the tasks known to handle secrets are found, in each role."""
    found = {}
    for path in _task_files():
        for _, task, _ in _tasks(yaml.safe_load(path.read_text())):
            if why_secret(path.parents[1], task):
                found.setdefault(path.parents[1].name, []).append(task.get("name"))
    assert "Write the shared environment file (broker URL)" in found["celery_workers"]
    assert "Write the environment files of the workers with env" in found["celery_workers"]
    assert "Collect configuration errors" in found["celery_workers"]
    assert "Write the environment file (broker URL, users, management API)" in found["celery_flower"]
    for expression in ["{{ item.env }}", "{{ w['env'] }}", "{{ workers | map(attribute='env') }}", "{{ celery_workers_broker_url }}",
                       "{{ lookup('ansible.builtin.template', 'celery.env.j2') }}"]:
        assert why_secret(ROOT / "roles" / "celery_workers", {"name": "x", "ansible.builtin.debug": {"msg": expression}}), expression
    assert not why_secret(ROOT / "roles" / "celery_workers", {"name": "x", "ansible.builtin.debug": {"msg": "{{ item.env is defined }}"}})
    assert not why_secret(ROOT / "roles" / "celery_workers", {"name": "x", "ansible.builtin.debug": {"msg": "{{ item.name }}"},
                                                              "loop": "{{ __celery_workers_list | map(attribute='name') }}"})


def _errors(role, variables):
    role_filter = filters()[f"celery_fleet_{role.removeprefix('celery_')}_errors"]
    merged = {**role_defaults(role), f"{role}_broker_url": "amqp://u:p@mq/v", **variables}
    return role_filter(merged, []) if role == "celery_workers" else role_filter(merged)


def test_secret_variables_in_a_task_environment_hold_no_credentials():
    """A secret variable a task passes as its environment (not hidden by no_log: Ansible puts it on the
    command line it runs on the host): preflight refuses credentials in it."""
    used = set()
    for path in _task_files():
        for _, task, _ in _tasks(yaml.safe_load(path.read_text())):
            for name in SECRET_VAR_RE.findall(yaml.safe_dump(task.get("environment", ""))):
                used.add((path.parents[1].name, name))
    assert used, "no secret variable in an environment: keyword; this test has nothing left to check"
    for role, name in sorted(used):
        errors = _errors(role, {name: {"PIP_INDEX_URL": "https://user:CanaryEnvPw@pypi.example/simple"}})
        assert any(e.startswith(f"{name}.PIP_INDEX_URL: holds a URL with credentials") for e in errors), (name, errors)

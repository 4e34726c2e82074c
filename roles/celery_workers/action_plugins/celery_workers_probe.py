"""Action of the celery_workers_probe module (library/celery_workers_probe.py).

Fast mode (only state_file and fingerprint: the first task of a run, on every
host) runs the module file's own functions as a plain Python script, one
remote command: `python3 -c <the module source, compressed> <fast(...)>`. It
skips the module wrapper (AnsiballZ), whose zip and the import of
ansible.module_utils.basic on the host cost more than the probe itself. The
command line holds the module's source, the record's path and the
fingerprint (a hash), nothing secret; the record is read on the host.

Every other use (the full probe, record) runs the module as usual. So does
fast mode when the script cannot run (no such interpreter: rc 126/127).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import zlib

from ansible.plugins.action import ActionBase

MODULE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "library", "celery_workers_probe.py")
FAST_ARGS = {"state_file", "fingerprint"}
# The role installs Debian packages with apt: this is Debian's Python 3.
DEFAULT_PYTHON = "/usr/bin/python3"
SCRIPT = ("import binascii,json,sys,zlib;g={{'__name__':'celery_workers_probe'}};"
          "exec(compile(zlib.decompress(binascii.a2b_base64('{source}')),'celery_workers_probe.py','exec'),g);"
          "sys.stdout.write(json.dumps(g['fast']({state_file},{fingerprint})))")


def fast_script(state_file: str, fingerprint: str) -> str:
    """The Python source that runs the module's fast() and prints its result as JSON."""
    with open(MODULE, "rb") as handle:
        source = base64.b64encode(zlib.compress(handle.read(), 9)).decode("ascii")
    return SCRIPT.format(source=source, state_file=json.dumps(state_file), fingerprint=json.dumps(fingerprint))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        fast = (set(args) == FAST_ARGS and all(isinstance(args[k], str) and args[k] for k in FAST_ARGS))
        if fast:
            cmd = f"{shlex.quote(self._python(task_vars))} -c {shlex.quote(fast_script(args['state_file'], args['fingerprint']))}"
            res = self._low_level_execute_command(cmd, sudoable=True)
            if res["rc"] not in (126, 127):
                try:
                    data = json.loads(res["stdout"])
                except ValueError:
                    data = None
                if res["rc"] != 0 or not isinstance(data, dict):
                    result.update(failed=True, rc=res["rc"], stdout=res["stdout"], stderr=res["stderr"],
                                  msg="celery_workers_probe (fast mode) failed on the host")
                    return result
                result.update(data)
                return result
        result.update(self._execute_module(module_name="celery_workers_probe", module_args=args, task_vars=task_vars))
        return result

    def _python(self, task_vars) -> str:
        """The host's Python as the module would use it; Debian's python3 when discovery is due."""
        value = task_vars.get("ansible_python_interpreter")
        value = self._templar.template(value) if value else None
        if not value or str(value).startswith("auto"):
            value = task_vars.get("ansible_facts", {}).get("discovered_interpreter_python") or DEFAULT_PYTHON
        return str(value)

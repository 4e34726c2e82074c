"""containers.podman.podman with pipelining, for bench/run.

The stock plugin declares has_pipelining = False: it runs `podman exec` without
-i, so a module cannot be fed on stdin, and each module costs several podman
calls (mkdir of a temporary directory, copy, chmod, run, rm). Real hosts are
reached over ssh, where ansible.cfg's `pipelining = true` runs each module
with one remote command. This subclass passes -i when Ansible sends data on
stdin, so pipelining works and a module costs one `podman exec`, as it does
over ssh. The stock plugin also runs `podman mount` at every connection (one
per task and host), for its file transfers only: here the mount waits for
the first transfer (put_file, fetch_file). Everything else is the stock plugin.
"""

from __future__ import annotations

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible_collections.containers.podman.plugins.connection.podman import (  # pylint: disable=import-error
    DOCUMENTATION as _DOC,
    Connection as PodmanConnection,
)

DOCUMENTATION = _DOC.replace("name: podman", "name: podman_pipelined", 1).replace(
    "short_description: Interact with an existing podman container",
    "short_description: podman connection with pipelining (bench/run)", 1)


class Connection(PodmanConnection):
    transport = "podman_pipelined"
    has_pipelining = True

    def _connect(self):
        # Connected, not mounted yet (the stock _connect does both).
        if not self._connected:
            super(PodmanConnection, self)._connect()  # pylint: disable=bad-super-call
            self._mount_point = None
            self._connected = True
        return self

    def _mount(self):
        if not getattr(self, "_mounted", False):
            self._mounted = True
            self._connected = False
            super()._connect()  # the stock plugin's: podman mount

    def put_file(self, in_path, out_path):
        self._mount()
        return super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._mount()
        return super().fetch_file(in_path, out_path)

    def exec_command(self, cmd, in_data=None, sudoable=False):
        if in_data is None:
            return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        # ConnectionBase.exec_command only logs; the stock plugin's version would drop -i.
        if not self._connected:
            self._connect()
        args = ["exec", "-i"] + (["--user", self.user] if self.user else [])
        return self._podman(args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)

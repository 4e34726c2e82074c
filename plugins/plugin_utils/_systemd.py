# Copyright (c) celery-fleet maintainers
# MIT License

# Note that this plugin util is PRIVATE to the collection celery_fleet.celery.

"""systemd pieces both roles' units share: the sandbox, and what
celery_workers_unit_extra may not change. The tests read HARDENING from here."""

from __future__ import annotations

# Sandboxing of every unit of both roles, in the order of the unit file;
# ReadWritePaths= comes right after ProtectSystem= (see hardening_lines).
HARDENING = [
    "UMask=0027",
    "NoNewPrivileges=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictSUIDSGID=yes",
    "RestrictRealtime=yes",
    "RestrictNamespaces=yes",
    "LockPersonality=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "SystemCallArchitectures=native",
]

# Directives the units set (user, command, hardening): celery_workers_unit_extra must not loosen them.
LOCKED_DIRECTIVES = (["User", "Group", "DynamicUser", "PermissionsStartOnly", "ExecStart", "Type", "EnvironmentFile", "ReadWritePaths", "SecureBits"]
                     + [line.split("=", maxsplit=1)[0] for line in HARDENING])


def hardening_lines(rw_path):
    """HARDENING, with ReadWritePaths=rw_path after ProtectSystem= unless rw_path is empty."""
    lines = list(HARDENING)
    if rw_path:
        lines.insert(lines.index("ProtectSystem=strict") + 1, f"ReadWritePaths={rw_path}")
    return lines

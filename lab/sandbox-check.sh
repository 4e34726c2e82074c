#!/usr/bin/env bash
# Check that systemd's sandboxing really takes effect in a lab host (see the
# "Hardening" notes in lab/host.sh): start a transient unit with the settings
# of the role's units and test, from inside it, that each one is in force.
# Without CAP_SYS_ADMIN systemd silently skips the mount-namespace settings,
# so "the unit started" proves nothing; this does.
#
# Usage: lab/sandbox-check.sh NAME     (exit 0 when every check passes)
set -euo pipefail

export LAB_PROG=sandbox-check
# shellcheck source-path=SCRIPTDIR/..
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# == 1)) || die "usage: $0 NAME"
name="$1"
require_root
podman container exists "$name" || die "no container $name"

# Runs in the container (sh); the inner script runs in the transient unit.
# Each check was seen to FAIL in a unit without these settings (except the
# two podman already enforces: a seccomp filter and a read-only /proc/sys).
out="$(podman exec -i "$name" sh -s <<'PROBE'
set -u
mkdir -p /var/lib/sandbox-check
echo outside >/tmp/sandbox-check-outside
systemd-run --wait --pipe --quiet --collect \
    -E OUTDEV="$(stat -c %d /dev)" \
    -p UMask=0027 -p NoNewPrivileges=yes -p PrivateTmp=yes -p PrivateDevices=yes \
    -p ProtectSystem=strict -p ReadWritePaths=/var/lib/sandbox-check -p ProtectHome=yes \
    -p ProtectKernelTunables=yes -p ProtectKernelModules=yes -p ProtectKernelLogs=yes \
    -p ProtectControlGroups=yes -p ProtectClock=yes -p ProtectHostname=yes \
    -p RestrictSUIDSGID=yes -p RestrictRealtime=yes -p RestrictNamespaces=yes \
    -p LockPersonality=yes -p CapabilityBoundingSet= -p AmbientCapabilities= \
    -p SystemCallArchitectures=native \
    /bin/sh -c '
ok() { echo "PASS $1"; }
no() { echo "FAIL $1"; }
if touch /usr/sandbox-check 2>/dev/null; then no ProtectSystem=strict:/usr; else ok ProtectSystem=strict:/usr; fi
if touch /etc/sandbox-check 2>/dev/null; then no ProtectSystem=strict:/etc; else ok ProtectSystem=strict:/etc; fi
if touch /var/lib/sandbox-check/x 2>/dev/null; then ok ReadWritePaths; else no ReadWritePaths; fi
if test -e /tmp/sandbox-check-outside; then no PrivateTmp; else ok PrivateTmp; fi
if test "$(stat -c %d /dev)" != "$OUTDEV"; then ok PrivateDevices; else no PrivateDevices; fi
if ls /root >/dev/null 2>&1; then no ProtectHome; else ok ProtectHome; fi
if grep -q "^NoNewPrivs:[[:space:]]*1" /proc/self/status; then ok NoNewPrivileges; else no NoNewPrivileges; fi
if grep -q "^CapBnd:[[:space:]]*0*$" /proc/self/status; then ok CapabilityBoundingSet=; else no CapabilityBoundingSet=; fi
if awk "\$5 ~ \"^/sys/fs/cgroup\" && \$6 !~ /(^|,)ro(,|\$)/ { rw = 1 } END { exit rw }" /proc/self/mountinfo
then ok ProtectControlGroups; else no ProtectControlGroups; fi
if unshare -U true 2>/dev/null; then no RestrictNamespaces; else ok RestrictNamespaces; fi
touch /var/lib/sandbox-check/s
if chmod u+s /var/lib/sandbox-check/s 2>/dev/null; then no RestrictSUIDSGID; else ok RestrictSUIDSGID; fi
if setarch linux32 true 2>/dev/null; then no LockPersonality; else ok LockPersonality; fi
'
echo "unit-exit $?"
rm -rf /tmp/sandbox-check-outside /var/lib/sandbox-check /usr/sandbox-check /etc/sandbox-check 2>/dev/null
PROBE
)" || true

printf '%s\n' "$out" | sed "s/^/  $name: /" >&2
if grep -q '^PASS' <<<"$out" && ! grep -q '^FAIL' <<<"$out" && grep -q '^unit-exit 0$' <<<"$out"; then
    log "$name: systemd sandboxing in effect"
else
    die "$name: systemd sandboxing NOT in effect (container started without --cap-add SYS_ADMIN?)"
fi

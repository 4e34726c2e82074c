#!/usr/bin/env bash
# Start or remove one systemd "host" of the lab: a podman container that boots
# systemd and is driven by Ansible over the containers.podman.podman
# connection. Used by scripts/lab and by the molecule scenario.
#
#   lab/host.sh start NAME IMAGE [--broker]   start (or keep) NAME, wait for its boot
#   lab/host.sh rm NAME                       remove NAME (no error if absent)
#
# A host shares the machine's network (--network host): every container
# reaches the others, and the broker, at 127.0.0.1; so two brokers only run
# side by side on different ports (lab/broker.yml's lab_broker_*_port).
#
# Hardening. The worker units use ProtectSystem=strict, PrivateTmp,
# PrivateDevices, ProtectHome, ProtectControlGroups, ProtectHostname, ... which
# systemd sets up in new mount/UTS namespaces. In a default podman container
# (no CAP_SYS_ADMIN) systemd 252 cannot unshare them ("Failed to unshare the
# mount namespace: Operation not permitted"). It then fails with 226/NAMESPACE
# only the units whose mounts it insists on (bind mounts, RootDirectory=,
# TemporaryFileSystem=, ...); for all others - the role's units included - it
# logs "assuming containerized execution and ignoring" at debug level and runs
# the service WITHOUT the file-system sandbox. So `systemd-run --wait
# -p ProtectSystem=strict -p PrivateTmp=yes ... /bin/true` "succeeds" either
# way, and the role's workers start, yet they can write /usr and /etc and see
# the container's /tmp, /dev and /root. lab/sandbox-check.sh tells the two
# apart: it runs a transient unit with the role's settings and checks each one
# from inside. Measured with it (podman 4.3.1, runc 1.1.5, cgroup v1 hybrid,
# Debian 12 image, systemd 252):
#   default options               ProtectSystem (/usr, /etc), PrivateTmp,
#                                 PrivateDevices, ProtectHome,
#                                 ProtectControlGroups NOT in effect (the
#                                 seccomp/capability ones are: NoNewPrivileges,
#                                 CapabilityBoundingSet=, RestrictNamespaces,
#                                 RestrictSUIDSGID, LockPersonality)
#   --cap-add SYS_ADMIN           all in effect, ProtectHostname too; boot "running"
#   ... + seccomp=unconfined      same: not needed
#   --privileged                  all but ProtectControlGroups (cgroup mounts stay
#                                 rw), and the container gets every device and cap
# So hosts get --cap-add SYS_ADMIN and nothing more: podman's seccomp profile,
# masked /proc paths, read-only /proc/sys and /sys and the device list stay.
# The broker (--broker) gets no extra capability: rabbitmq-server.service has
# no sandboxing.
#
# Also: the host's CA bundle is mounted read-only at the same path (pip behind
# a TLS-intercepting proxy; set PIP_CERT to it; the images have ca-certificates
# preinstalled, so nothing runs update-ca-certificates on that read-only file),
# and each container is labelled io.celery-lab.host=NAME and
# io.celery-lab.kind=host|broker (`scripts/lab down` finds them by it).
#
# Environment: LAB_BOOT_TIMEOUT  seconds to wait for systemd (default 90)
set -euo pipefail

export LAB_PROG=host.sh
# shellcheck source-path=SCRIPTDIR/..
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
BOOT_TIMEOUT="${LAB_BOOT_TIMEOUT:-90}"

usage() {
    cat >&2 <<EOF
usage: $0 start NAME IMAGE [--broker]
       $0 rm NAME
EOF
    exit 2
}

exists() { podman container exists "$1"; }

state() { podman container inspect --format '{{ .State.Status }}' "$1" 2>/dev/null || true; }

# Wait until systemd in NAME has finished booting; print failed units if it
# is degraded; fail with its journal if it does not come up.
wait_boot() {
    local name="$1" t out deadline
    t="$(now)"
    deadline=$((SECONDS + BOOT_TIMEOUT))
    while :; do
        # Before systemd has its bus up, systemctl says "Failed to connect to bus".
        out="$(timeout 30 podman exec "$name" systemctl is-system-running --wait 2>&1 || true)"
        case "$out" in
        running)
            log "$name: systemd $out after $(elapsed "$t")"
            return 0
            ;;
        degraded)
            warn "$name: systemd degraded after $(elapsed "$t"); failed units:"
            podman exec "$name" systemctl --failed --no-legend --no-pager >&2 || true
            return 0
            ;;
        esac
        if [[ "$(state "$name")" != running ]]; then
            podman logs --tail 30 "$name" >&2 || true
            die "$name: container is $(state "$name"), not running"
        fi
        if ((SECONDS >= deadline)); then
            podman exec "$name" journalctl -b --no-pager -n 40 >&2 || true
            die "$name: systemd not up after ${BOOT_TIMEOUT}s (last state: ${out:-none})"
        fi
        sleep 0.3
    done
}

cmd_start() {
    (($# >= 2 && $# <= 3)) || usage
    local name="$1" image="$2" kind=host t
    if (($# == 3)); then
        [[ "$3" == --broker ]] || usage
        kind=broker
    fi
    [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "invalid host name: $name"
    t="$(now)"

    if exists "$name"; then
        local have want
        have="$(podman container inspect --format '{{ .Image }}' "$name")"
        want="$(podman image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)"
        if [[ -n "$want" && "$have" != "$want" ]]; then
            warn "$name: runs an older build of $image; 'lab/host.sh rm $name' to recreate it"
        fi
        if [[ "$(state "$name")" == running ]]; then
            log "$name: already running"
        else
            log "$name: starting the existing container"
            podman start "$name" >/dev/null
        fi
    else
        podman image exists "$image" || die "image $image not found: run lab/image/build.sh"
        local opts=(
            --detach
            --name "$name"
            --hostname "$name"
            --network host
            --systemd always
            --label "io.celery-lab.host=$name"
            --label "io.celery-lab.kind=$kind"
        )
        if [[ "$kind" == host ]]; then
            # Lets systemd set up the units' mount namespaces (see the top).
            opts+=(--cap-add SYS_ADMIN)
        fi
        if [[ -f "$CA_BUNDLE" ]]; then
            opts+=(--volume "$CA_BUNDLE:$CA_BUNDLE:ro")
        fi
        log "$name: podman run $image ($kind)"
        podman run "${opts[@]}" "$image" >/dev/null
    fi
    wait_boot "$name"
    log "$name: ready in $(elapsed "$t")"
}

cmd_rm() {
    (($# == 1)) || usage
    local name="$1" t
    t="$(now)"
    if exists "$name"; then
        podman rm --force --time 10 "$name" >/dev/null
        log "$name: removed in $(elapsed "$t")"
    else
        log "$name: not present"
    fi
}

(($# >= 1)) || usage
require_root
command -v podman >/dev/null || die "podman not found: run scripts/bootstrap first"
sub="$1"
shift
case "$sub" in
start) cmd_start "$@" ;;
rm) cmd_rm "$@" ;;
*) usage ;;
esac

#!/usr/bin/env bash
# Start or remove one systemd "host" of the lab: a podman container that boots
# systemd. A worker host started with --ssh-port is reached the way production
# hosts are: over SSH as the unprivileged user `deploy`, with passwordless sudo
# (Ansible's become); without it (and for the broker, a test fixture) Ansible
# uses the containers.podman.podman connection. Used by scripts/lab and by
# the molecule scenarios (molecule/shared/create.yml).
#
#   lab/host.sh start NAME IMAGE [--broker] [--ssh-port N] [--ssh-pubkey FILE] [--noisy]
#                             start (or keep) NAME, wait for its boot, and with
#                             --ssh-port set up its sshd and `deploy`
#   lab/host.sh rm NAME       remove NAME (no error if absent)
#
# SSH (--ssh-port N, 1024-65535, unique on the machine). The images ship
# openssh-server with ssh.service conditioned on /etc/ssh/sshd_config.d/lab.conf
# (lab/image/Containerfile.host): on the shared host network a second sshd on
# port 22 would fail and leave the host "degraded", so sshd only starts once
# this script has written that file: Port N, ListenAddress 127.0.0.1,
# PasswordAuthentication no. It also gives the host its own host keys, creates
# `deploy` (bash) with /etc/sudoers.d/deploy (NOPASSWD, 0440), installs the
# public key FILE (--ssh-pubkey, or $LAB_SSH_PUBKEY) as its authorized_keys,
# restarts ssh and waits until `ssh -p N deploy@127.0.0.1 sudo -n true` works
# (with the private key next to FILE, FILE without .pub). The host name is in
# /etc/hosts (127.0.1.1), so sudo resolves it and stays quiet.
#
# --noisy makes a host as chatty as many real ones, to prove the playbooks do
# not depend on a clean stdout/stderr: the host name is NOT in /etc/hosts
# (sudo prints "sudo: unable to resolve host NAME" on stderr on every call),
# ~deploy/.bashrc starts with `echo "Welcome to NAME (noisy test host)"` (bash
# sources it for every command sshd runs, before Debian's "not interactive"
# return: a banner on stdout of every non-interactive command), and sshd shows
# a pre-login Banner. The script checks that both noises really appear.
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
#              LAB_SSH_PUBKEY    public key of `deploy` (default of --ssh-pubkey)
#              LAB_SSH_TIMEOUT   seconds to wait for SSH + sudo (default 30)
set -euo pipefail

export LAB_PROG=host.sh
# shellcheck source-path=SCRIPTDIR/..
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
BOOT_TIMEOUT="${LAB_BOOT_TIMEOUT:-90}"
SSH_TIMEOUT="${LAB_SSH_TIMEOUT:-30}"
SSH_USER=deploy

usage() {
    cat >&2 <<EOF
usage: $0 start NAME IMAGE [--broker] [--ssh-port N] [--ssh-pubkey FILE] [--noisy]
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
    (($# >= 2)) || usage
    local name="$1" image="$2" kind=host t ssh_port="" pubkey="${LAB_SSH_PUBKEY:-}" noisy=false
    shift 2
    while (($#)); do
        case "$1" in
        --broker) kind=broker ;;
        --ssh-port)
            (($# >= 2)) || usage
            ssh_port="$2"
            shift
            ;;
        --ssh-pubkey)
            (($# >= 2)) || usage
            pubkey="$2"
            shift
            ;;
        --noisy) noisy=true ;;
        *) usage ;;
        esac
        shift
    done
    [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "invalid host name: $name"
    if [[ -n "$ssh_port" ]]; then
        [[ "$ssh_port" =~ ^[0-9]+$ ]] && ((ssh_port >= 1024 && ssh_port <= 65535)) ||
            die "--ssh-port must be a number in 1024-65535, not $ssh_port"
        [[ -n "$pubkey" ]] || die "--ssh-port needs a public key: --ssh-pubkey FILE or LAB_SSH_PUBKEY"
        [[ -r "$pubkey" ]] || die "public key $pubkey not readable"
        command -v ssh >/dev/null || die "ssh not found: apt-get install openssh-client"
    elif $noisy; then
        die "--noisy needs --ssh-port (the noise is that of an SSH host)"
    fi
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
        # With --network host podman copies the machine's /etc/hosts and adds
        # no entry for the container's name; sudo wants one (see the top).
        if ! $noisy; then
            opts+=(--add-host "$name:127.0.1.1")
        fi
        if [[ -f "$CA_BUNDLE" ]]; then
            opts+=(--volume "$CA_BUNDLE:$CA_BUNDLE:ro")
        fi
        log "$name: podman run $image ($kind)"
        podman run "${opts[@]}" "$image" >/dev/null
    fi
    wait_boot "$name"
    if [[ -n "$ssh_port" ]]; then
        setup_ssh "$name" "$ssh_port" "$pubkey" "$noisy"
    fi
    log "$name: ready in $(elapsed "$t")"
}

# The host-side part of setup_ssh, run as root in the container by bash -s.
# Idempotent: a second `start` of a running host rewrites the same files.
# shellcheck disable=SC2016 # expanded in the container
SSH_SETUP='
set -euo pipefail
umask 022
# sshd: this host'"'"'s port on loopback only, keys only.
{
    echo "# Written by lab/host.sh: this host'"'"'s sshd on the shared host network."
    echo "Port $LAB_PORT"
    echo "ListenAddress 127.0.0.1"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "PermitRootLogin no"
    if [[ "$LAB_NOISY" == true ]]; then
        echo "Banner /etc/ssh/lab-banner"
    fi
} >/etc/ssh/sshd_config.d/lab.conf.new
printf "%s\n" "This is $LAB_NAME, a noisy test host of the celery lab." >/etc/ssh/lab-banner
# Host keys of its own (the image has none, see Containerfile.host).
if [[ ! -e /etc/ssh/ssh_host_ed25519_key ]]; then
    ssh-keygen -q -A >/dev/null 2>&1
fi
mv /etc/ssh/sshd_config.d/lab.conf.new /etc/ssh/sshd_config.d/lab.conf
install -d -m 0755 /run/sshd  # ssh.service makes it; sshd -t needs it now
sshd -t
# The unprivileged user Ansible logs in as, with passwordless sudo.
id -u deploy >/dev/null 2>&1 || useradd --create-home --shell /bin/bash deploy
printf "%s\n" "deploy ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/deploy.new
chmod 0440 /etc/sudoers.d/deploy.new
visudo -cqf /etc/sudoers.d/deploy.new
mv /etc/sudoers.d/deploy.new /etc/sudoers.d/deploy
install -d -o deploy -g deploy -m 0700 /home/deploy/.ssh
printf "%s\n" "$LAB_PUBKEY" >/home/deploy/.ssh/authorized_keys
chown deploy:deploy /home/deploy/.ssh/authorized_keys
chmod 0600 /home/deploy/.ssh/authorized_keys
# .bashrc: Debian'"'"'s, with a banner on stdout first on a noisy host.
{
    if [[ "$LAB_NOISY" == true ]]; then
        echo "# lab/host.sh --noisy: a banner on stdout for every command, even non-interactive ones."
        echo "echo \"Welcome to $LAB_NAME (noisy test host)\""
    fi
    cat /etc/skel/.bashrc
} >/home/deploy/.bashrc
chown deploy:deploy /home/deploy/.bashrc
systemctl restart ssh.service
'

# setup_ssh NAME PORT PUBKEY NOISY: sshd on PORT, user deploy; wait until
# `ssh deploy@127.0.0.1 sudo -n true` works; check the noise (or its absence).
setup_ssh() {
    local name="$1" port="$2" pubkey="$3" noisy="$4" t key deadline out err
    t="$(now)"
    if ! podman exec -i \
        -e LAB_NAME="$name" -e LAB_PORT="$port" -e LAB_NOISY="$noisy" \
        -e LAB_PUBKEY="$(head -n 1 "$pubkey")" \
        "$name" bash -s <<<"$SSH_SETUP"; then
        podman exec "$name" journalctl -u ssh.service --no-pager -n 20 >&2 || true
        die "$name: SSH setup failed"
    fi
    key="${pubkey%.pub}"
    if [[ "$key" == "$pubkey" || ! -r "$key" ]]; then
        # No private key to log in with: check sshd and sudo from inside.
        podman exec "$name" systemctl is-active --quiet ssh.service || die "$name: ssh.service not active"
        podman exec "$name" runuser -u "$SSH_USER" -- sudo -n true 2>/dev/null ||
            die "$name: sudo -n as $SSH_USER fails"
        log "$name: sshd on 127.0.0.1:$port, user $SSH_USER (not logged in: no private key next to $pubkey) in $(elapsed "$t")"
        return 0
    fi
    local ssh_cmd=(ssh -p "$port" -i "$key" -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=5
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
        -o ControlPath=none "$SSH_USER@127.0.0.1")
    err="$(mktemp)"
    deadline=$((SECONDS + SSH_TIMEOUT))
    until out="$("${ssh_cmd[@]}" sudo -n true 2>"$err")"; do
        if ((SECONDS >= deadline)); then
            cat "$err" >&2
            rm -f "$err"
            podman exec "$name" journalctl -u ssh.service --no-pager -n 20 >&2 || true
            die "$name: ssh -p $port $SSH_USER@127.0.0.1 sudo -n true still fails after ${SSH_TIMEOUT}s"
        fi
        sleep 0.2
    done
    # The noise, on the connection Ansible uses.
    local banner_ok=false sudo_ok=false
    [[ "$out" == *"Welcome to $name"* ]] && banner_ok=true
    grep -q "unable to resolve host $name" "$err" && sudo_ok=true
    rm -f "$err"
    if [[ "$noisy" == true ]]; then
        $banner_ok || die "$name: --noisy, yet no banner on stdout of a non-interactive ssh command"
        $sudo_ok || die "$name: --noisy, yet sudo does not warn about the host name"
        log "$name: ssh $SSH_USER@127.0.0.1:$port + sudo ok in $(elapsed "$t"), noisy (banner on stdout, sudo warning on stderr)"
    else
        ! $banner_ok && ! $sudo_ok || warn "$name: not --noisy, yet ssh or sudo print noise"
        log "$name: ssh $SSH_USER@127.0.0.1:$port + sudo ok in $(elapsed "$t")"
    fi
}

cmd_rm() {
    (($# == 1)) || usage
    local name="$1" t
    t="$(now)"
    if exists "$name"; then
        # systemd in the container gets SIGRTMIN+3 and 20 s to stop (RabbitMQ can be
        # slow); podman then sends SIGKILL and can lose a race with a container that
        # exits at that moment ("container state improper: stopped"): remove again.
        if ! podman rm --force --time 20 "$name" >/dev/null; then
            sleep 1
            ! exists "$name" || podman rm --force --time 0 "$name" >/dev/null
        fi
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

#!/usr/bin/env bash
# Build the lab's container images, each only when missing or out of date:
#
#   localhost/celery-lab-rootfs:SUITE    debootstrap SUITE (rootfs.env) + podman import
#                                        (CMD /lib/systemd/systemd, STOPSIGNAL SIGRTMIN+3)
#   localhost/celery-lab-host:SUITE      rootfs + Containerfile.host (python3-apt,
#                                        openssh-server, sudo, ...; ARG SUITE)
#   localhost/celery-lab-broker:bookworm host:bookworm + Containerfile.broker (rabbitmq-server)
#
# SUITE is each Debian suite asked for: bookworm (12) and trixie (13) by
# default; the broker is a test fixture and exists for bookworm only.
#
# Every image carries the label io.celery-lab.inputs = sha256 of its inputs:
#   rootfs: the suite, rootfs.env and the code of build_rootfs below
#   host:   the rootfs key, the suite and Containerfile.host
#   broker: the bookworm host key and Containerfile.broker
# An image whose label matches is kept; a change of an input rebuilds that
# image and the ones built on it. No registry is used: the base is made here.
#
# Progress goes to stderr; the last line, on stdout, is "built: IMAGE..." when
# something was built, else "cached: IMAGE...".
#
# Usage: lab/image/build.sh [--force] [--suite SUITE]... [all|host|broker]
#   all     (default) the host images of the suites, and the broker
#   host    the host images of the suites only
#   broker  the broker (and the bookworm host image it is built on)
#   --suite host image(s) of SUITE only (repeatable; default: bookworm trixie,
#           or $LAB_SUITES)
set -euo pipefail

export LAB_PROG=build-images
# shellcheck source-path=SCRIPTDIR/../..
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

IMAGE_DIR="$LAB_REPO_ROOT/lab/image"
BROKER_SUITE=bookworm
BROKER_IMAGE=localhost/celery-lab-broker:$BROKER_SUITE
rootfs_image() { printf 'localhost/celery-lab-rootfs:%s' "$1"; }
host_image() { printf 'localhost/celery-lab-host:%s' "$1"; }
LABEL=io.celery-lab.inputs

# shellcheck source=lab/image/rootfs.env
source "$IMAGE_DIR/rootfs.env"

usage() {
    sed -n 's/^# \{0,1\}//; 2,/^set -euo/p' "$0" | sed '$d'
    exit "${1:-0}"
}

force=false
target=all
suites=()
while (($#)); do
    case "$1" in
    --force) force=true ;;
    --suite)
        (($# >= 2)) || usage 2
        [[ "$2" =~ ^[a-z]+$ ]] || die "invalid suite: $2"
        [[ " ${suites[*]} " == *" $2 "* ]] || suites+=("$2")
        shift
        ;;
    all | host | broker) target="$1" ;;
    -h | --help) usage 0 ;;
    *)
        printf 'unknown argument: %s\n' "$1" >&2
        usage 2
        ;;
    esac
    shift
done

# shellcheck disable=SC2206 # a list of words
((${#suites[@]})) || suites=(${LAB_SUITES:-bookworm trixie})

require_root
command -v podman >/dev/null || die "podman not found: run scripts/bootstrap first"

sha() { sha256sum | cut -d' ' -f1; }

image_label() {
    podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

image_id() {
    podman image inspect --format '{{ .Id }}' "$1" 2>/dev/null || true
}

# Is IMAGE present with label KEY (and not forced)?
up_to_date() {
    local image="$1" key="$2"
    ! $force && [[ "$(image_label "$image")" == "$key" ]]
}

# Remove an image that a rebuild left untagged (ignore it if still in use).
drop_old() {
    local old="$1" image="$2"
    if [[ -n "$old" && "$old" != "$(image_id "$image")" ]]; then
        podman rmi "$old" >/dev/null 2>&1 || true
    fi
}

# --- rootfs -----------------------------------------------------------------
ROOTFS_TMP=""
cleanup_rootfs() {
    [[ -n "$ROOTFS_TMP" && -d "$ROOTFS_TMP" ]] || return 0
    # debootstrap mounts proc/sys in the target; never rm -rf through them.
    local mp
    while read -r mp; do
        umount -l "$mp" 2>/dev/null || true
    done < <(awk -v p="$ROOTFS_TMP/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$ROOTFS_TMP"
    ROOTFS_TMP=""
}
trap cleanup_rootfs EXIT
trap 'exit 130' INT TERM

build_rootfs() {
    local suite="$1" key="$2" image rootfs t
    image="$(rootfs_image "$suite")"
    ROOTFS_TMP="$(mktemp -d /var/tmp/celery-lab-rootfs.XXXXXX)"
    rootfs="$ROOTFS_TMP/rootfs"

    t="$(now)"
    log "rootfs: debootstrap --variant=$ROOTFS_VARIANT $suite from $ROOTFS_MIRROR (about a minute)"
    if ! debootstrap --variant="$ROOTFS_VARIANT" --include="$ROOTFS_INCLUDE" \
        "$suite" "$rootfs" "$ROOTFS_MIRROR" >"$ROOTFS_TMP/debootstrap.log" 2>&1; then
        tail -n 30 "$ROOTFS_TMP/debootstrap.log" >&2
        [[ -f "$rootfs/debootstrap/debootstrap.log" ]] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        die "debootstrap $suite failed"
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    log "rootfs: debootstrap $suite done in $(elapsed "$t")"

    t="$(now)"
    tar --numeric-owner --xattrs -C "$rootfs" -c . |
        podman import --quiet \
            --change 'CMD ["/lib/systemd/systemd"]' \
            --change 'STOPSIGNAL SIGRTMIN+3' \
            --change "LABEL $LABEL=$key" \
            --message "celery lab rootfs: debootstrap $ROOTFS_VARIANT $suite" \
            - "$image" >/dev/null
    log "rootfs: podman import as $image done in $(elapsed "$t")"
    cleanup_rootfs
}

# --- Containerfile layers -----------------------------------------------------
build_layer() {
    local image="$1" containerfile="$2" base="$3" key="$4" suite="$5" t old
    old="$(image_id "$image")"
    t="$(now)"
    log "$image: podman build -f $(basename "$containerfile") FROM $base"
    podman build --network host --pull=never --quiet \
        --build-arg "BASE=$base" \
        --build-arg "SUITE=$suite" \
        --label "$LABEL=$key" \
        -f "$containerfile" -t "$image" "$IMAGE_DIR" >/dev/null
    drop_old "$old" "$image"
    BUILT+=("$image")
    log "$image: built in $(elapsed "$t")"
}

start_all="$(now)"
BUILT=()
CACHED=()
DONE=()

rootfs_key() {
    {
        printf 'suite %s\n' "$1"
        cat "$IMAGE_DIR/rootfs.env"
        declare -f build_rootfs
    } | sha
}
host_key() {
    cat <(printf '%s\nsuite %s\n' "$(rootfs_key "$1")" "$1") "$IMAGE_DIR/Containerfile.host" | sha
}
broker_key="$(cat <(host_key "$BROKER_SUITE") "$IMAGE_DIR/Containerfile.broker" | sha)"

ensure_host() {
    local suite="$1" image rootfs key rkey
    image="$(host_image "$suite")"
    rootfs="$(rootfs_image "$suite")"
    key="$(host_key "$suite")"
    rkey="$(rootfs_key "$suite")"
    # Once per run (the broker needs the bookworm host image too).
    [[ " ${DONE[*]} " == *" $image "* ]] && return 0
    DONE+=("$image")
    if up_to_date "$image" "$key"; then
        log "$image: cached (inputs ${key:0:12})"
        CACHED+=("$image")
        return 0
    fi
    if up_to_date "$rootfs" "$rkey"; then
        log "$rootfs: cached (inputs ${rkey:0:12})"
    else
        local old
        old="$(image_id "$rootfs")"
        build_rootfs "$suite" "$rkey"
        drop_old "$old" "$rootfs"
    fi
    build_layer "$image" "$IMAGE_DIR/Containerfile.host" "$rootfs" "$key" "$suite"
}

ensure_broker() {
    ensure_host "$BROKER_SUITE"
    if up_to_date "$BROKER_IMAGE" "$broker_key"; then
        log "$BROKER_IMAGE: cached (inputs ${broker_key:0:12})"
        CACHED+=("$BROKER_IMAGE")
        return 0
    fi
    build_layer "$BROKER_IMAGE" "$IMAGE_DIR/Containerfile.broker" "$(host_image "$BROKER_SUITE")" "$broker_key" "$BROKER_SUITE"
}

for_suites() {
    local s
    for s in "${suites[@]}"; do
        "$@" "$s"
    done
}

case "$target" in
host) for_suites ensure_host ;;
broker) ensure_broker ;;
all)
    for_suites ensure_host
    ensure_broker
    ;;
esac

log "images ready in $(elapsed "$start_all")"
if ((${#BUILT[@]})); then
    echo "built: ${BUILT[*]}"
else
    echo "cached: ${CACHED[*]}"
fi

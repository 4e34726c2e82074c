#!/usr/bin/env bash
# Build the lab's container images, each only when missing or out of date:
#
#   localhost/celery-lab-rootfs:bookworm   debootstrap (rootfs.env) + podman import
#                                          (CMD /lib/systemd/systemd, STOPSIGNAL SIGRTMIN+3)
#   localhost/celery-lab-host:bookworm     rootfs + Containerfile.host (python3-apt, ...)
#   localhost/celery-lab-broker:bookworm   host + Containerfile.broker (rabbitmq-server)
#
# Every image carries the label io.celery-lab.inputs = sha256 of its inputs:
#   rootfs: rootfs.env and the code of build_rootfs below
#   host:   the rootfs key and Containerfile.host
#   broker: the host key and Containerfile.broker
# An image whose label matches is kept; a change of an input rebuilds that
# image and the ones built on it. No registry is used: the base is made here.
#
# Progress goes to stderr; the last line, on stdout, is "built: IMAGE..." when
# something was built, else "cached: IMAGE...".
#
# Usage: lab/image/build.sh [--force] [all|host|broker]      (default: all)
# Environment: LAB_HOST_IMAGE, LAB_BROKER_IMAGE, LAB_ROOTFS_IMAGE (tags)
set -euo pipefail

export LAB_PROG=build-images
# shellcheck source-path=SCRIPTDIR/../..
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

IMAGE_DIR="$LAB_REPO_ROOT/lab/image"
ROOTFS_IMAGE="${LAB_ROOTFS_IMAGE:-localhost/celery-lab-rootfs:bookworm}"
HOST_IMAGE="${LAB_HOST_IMAGE:-localhost/celery-lab-host:bookworm}"
BROKER_IMAGE="${LAB_BROKER_IMAGE:-localhost/celery-lab-broker:bookworm}"
LABEL=io.celery-lab.inputs

# shellcheck source=lab/image/rootfs.env
source "$IMAGE_DIR/rootfs.env"

usage() {
    sed -n 's/^# \{0,1\}//; 2,/^set -euo/p' "$0" | sed '$d'
    exit "${1:-0}"
}

force=false
target=all
while (($#)); do
    case "$1" in
    --force) force=true ;;
    all | host | broker) target="$1" ;;
    -h | --help) usage 0 ;;
    *)
        printf 'unknown argument: %s\n' "$1" >&2
        usage 2
        ;;
    esac
    shift
done

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
    local key="$1" rootfs t
    ROOTFS_TMP="$(mktemp -d /var/tmp/celery-lab-rootfs.XXXXXX)"
    rootfs="$ROOTFS_TMP/rootfs"

    t="$(now)"
    log "rootfs: debootstrap --variant=$ROOTFS_VARIANT $ROOTFS_SUITE from $ROOTFS_MIRROR (about a minute)"
    if ! debootstrap --variant="$ROOTFS_VARIANT" --include="$ROOTFS_INCLUDE" \
        "$ROOTFS_SUITE" "$rootfs" "$ROOTFS_MIRROR" >"$ROOTFS_TMP/debootstrap.log" 2>&1; then
        tail -n 30 "$ROOTFS_TMP/debootstrap.log" >&2
        [[ -f "$rootfs/debootstrap/debootstrap.log" ]] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    log "rootfs: debootstrap done in $(elapsed "$t")"

    t="$(now)"
    tar --numeric-owner --xattrs -C "$rootfs" -c . |
        podman import --quiet \
            --change 'CMD ["/lib/systemd/systemd"]' \
            --change 'STOPSIGNAL SIGRTMIN+3' \
            --change "LABEL $LABEL=$key" \
            --message "celery lab rootfs: debootstrap $ROOTFS_VARIANT $ROOTFS_SUITE" \
            - "$ROOTFS_IMAGE" >/dev/null
    log "rootfs: podman import as $ROOTFS_IMAGE done in $(elapsed "$t")"
    cleanup_rootfs
}

# --- Containerfile layers -----------------------------------------------------
build_layer() {
    local image="$1" containerfile="$2" base="$3" key="$4" t old
    old="$(image_id "$image")"
    t="$(now)"
    log "$image: podman build -f $(basename "$containerfile") FROM $base"
    podman build --network host --pull=never --quiet \
        --build-arg "BASE=$base" \
        --label "$LABEL=$key" \
        -f "$containerfile" -t "$image" "$IMAGE_DIR" >/dev/null
    drop_old "$old" "$image"
    BUILT+=("$image")
    log "$image: built in $(elapsed "$t")"
}

start_all="$(now)"
BUILT=()
CACHED=()

rootfs_key="$({
    cat "$IMAGE_DIR/rootfs.env"
    declare -f build_rootfs
} | sha)"
host_key="$(cat <(printf '%s\n' "$rootfs_key") "$IMAGE_DIR/Containerfile.host" | sha)"
broker_key="$(cat <(printf '%s\n' "$host_key") "$IMAGE_DIR/Containerfile.broker" | sha)"

ensure_host() {
    if up_to_date "$HOST_IMAGE" "$host_key"; then
        log "$HOST_IMAGE: cached (inputs ${host_key:0:12})"
        CACHED+=("$HOST_IMAGE")
        return 0
    fi
    if up_to_date "$ROOTFS_IMAGE" "$rootfs_key"; then
        log "$ROOTFS_IMAGE: cached (inputs ${rootfs_key:0:12})"
    else
        local old
        old="$(image_id "$ROOTFS_IMAGE")"
        build_rootfs "$rootfs_key"
        drop_old "$old" "$ROOTFS_IMAGE"
    fi
    build_layer "$HOST_IMAGE" "$IMAGE_DIR/Containerfile.host" "$ROOTFS_IMAGE" "$host_key"
}

ensure_broker() {
    if up_to_date "$BROKER_IMAGE" "$broker_key"; then
        log "$BROKER_IMAGE: cached (inputs ${broker_key:0:12})"
        CACHED+=("$BROKER_IMAGE")
        return 0
    fi
    build_layer "$BROKER_IMAGE" "$IMAGE_DIR/Containerfile.broker" "$HOST_IMAGE" "$broker_key"
}

case "$target" in
host) ensure_host ;;
broker | all)
    ensure_host
    ensure_broker
    ;;
esac

log "images ready in $(elapsed "$start_all")"
if ((${#BUILT[@]})); then
    echo "built: ${BUILT[*]}"
else
    echo "cached: ${CACHED[*]}"
fi

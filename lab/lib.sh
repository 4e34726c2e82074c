# shellcheck shell=bash
# Small helpers shared by scripts/bootstrap, scripts/lab and lab/*.sh.
# Source it; it defines functions and variables only.

# Repository root (this file lives in <repo>/lab/).
LAB_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LAB_REPO_ROOT

# Name of the calling script, used as a prefix of every message.
LAB_PROG="${LAB_PROG:-$(basename "$0")}"

log() { printf '==> [%s] %s\n' "$LAB_PROG" "$*" >&2; }
warn() { printf '==> [%s] WARNING: %s\n' "$LAB_PROG" "$*" >&2; }
die() {
    printf '==> [%s] ERROR: %s\n' "$LAB_PROG" "$*" >&2
    exit 1
}

# Seconds since the epoch with millisecond precision.
now() { date +%s.%N; }

# elapsed START -> "12.3s"
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1fs", e - s }'; }

require_root() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (podman runs rootful here)"
}

#!/usr/bin/env bash
# The options scenario's packages, made on the controller (its dependency step):
#   .lab/wheelhouse/options/   every wheel of examples/django_project/requirements.txt,
#                              downloaded and checked against its hashes
#                              (opt-worker2's celery_workers_wheelhouse_src)
#   .lab/index/options/        the project's own package, shopsite 1.0.0 and 1.0.1,
#                              served by files/index_server.py (its private index)
#   .lab/git/options/optextras.git
#                              a bare git repository of files/optextras/, tag v1.0.0,
#                              served by git daemon (prepare.yml) to opt-worker1
#                              (celery_workers_pip_packages: optextras @ git+git://...)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
PIP="$ROOT/.venv/bin/pip"
PROJECT="$ROOT/examples/django_project"
WHEELHOUSE="$ROOT/.lab/wheelhouse/options"
INDEX="$ROOT/.lab/index/options/shopsite"
REPO="$ROOT/.lab/git/options/optextras.git"
mkdir -p "$WHEELHOUSE" "$INDEX"
"$PIP" download -q --disable-pip-version-check --only-binary=:all: --python-version 3.11 --require-hashes \
    -r "$PROJECT/requirements.txt" -d "$WHEELHOUSE"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for version in 1.0.0 1.0.1; do
    if [[ ! -f "$INDEX/shopsite-$version-py3-none-any.whl" ]]; then
        cp -r "$PROJECT" "$work/$version"
        sed -i "s/^version = .*/version = \"$version\"/" "$work/$version/pyproject.toml"
        "$PIP" wheel -q --disable-pip-version-check --no-deps "$work/$version" -w "$INDEX"
    fi
done
# The git repository anew each time: one commit of files/optextras/, tagged v1.0.0.
rm -rf "$REPO"
git init -q --bare --initial-branch=main "$REPO"
cp -r "$ROOT/molecule/options/files/optextras" "$work/optextras"
git -C "$work/optextras" init -q --initial-branch=main
git -C "$work/optextras" add -A
git -C "$work/optextras" -c user.name=celery-fleet -c user.email=tests@celery-fleet.invalid commit -q -m "optextras 1.0.0"
git -C "$work/optextras" tag v1.0.0
git -C "$work/optextras" push -q "$REPO" HEAD:refs/heads/main refs/tags/v1.0.0
ls "$WHEELHOUSE" "$INDEX" | wc -l

#!/usr/bin/env bash
# Prepare this checkout to run syncd and its tests on Debian/Ubuntu (as root,
# or with sudo available): system packages, then a virtualenv in .venv with
# syncd installed in editable mode. Safe to run again; it only does what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# systemd-python is a C extension: it needs libsystemd's headers, pkg-config,
# a compiler and Python's headers. The test suite also drives real
# systemd-journald / systemd-analyze binaries, checks the alert rules with
# promtool (Debian's prometheus package), and builds the Debian package from
# Debian's own python3 (python3-venv, python3-dev) and lints it (lintian). The PostgreSQL
# journal needs libpq5 (psycopg loads it), and its tests start throwaway clusters with the
# server binaries of Debian's postgresql (syncd/testing/postgres.py), never the system one.
APT_PACKAGES=(libsystemd-dev pkg-config gcc systemd prometheus lintian python3-venv python3-dev libpq5 postgresql)
PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then APT_PACKAGES+=(python3); PY=python3; fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if command -v "$PY" >/dev/null 2>&1; then
    "$PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || missing+=(python3-dev)
    "$PY" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing system packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # We want promtool, not a Prometheus server, and PostgreSQL's binaries, not a system
    # cluster: keep package scripts from starting services, and postgresql-common from
    # creating its "main" cluster at all (nothing to start, enable or upgrade later). The
    # drop-in is there during this install only; the tests' clusters are made by initdb.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$guard" >/dev/null
        $SUDO chmod 0755 "$guard"
    fi
    no_cluster=""
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
        no_cluster=/etc/postgresql-common/createcluster.d/zz-syncd-bootstrap-no-main-cluster.conf
        $SUDO mkdir -p "$(dirname "$no_cluster")"
        echo "create_main_cluster = false" | $SUDO tee "$no_cluster" >/dev/null
    fi
    status=0
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    if [ -n "$guard" ]; then $SUDO rm -f "$guard"; fi
    if [ -n "$no_cluster" ]; then $SUDO rm -f "$no_cluster"; fi
    [ "$status" -eq 0 ] || exit "$status"
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# Reinstall only when the declared dependencies changed.
stamp=.venv/.syncd-installed
want="$(sha1sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing Python packages into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test,bench]'
    echo "$want" > "$stamp"
fi

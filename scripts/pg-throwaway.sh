#!/usr/bin/env bash
# A throwaway native PostgreSQL cluster (with pgvector, see scripts/provision-postgres.sh) for tests and CI.
#
#   URL="$(scripts/pg-throwaway.sh start)"   # prints only the URL on stdout; logs go to stderr
#   scripts/pg-throwaway.sh url              # prints the URL of the running cluster again
#   scripts/pg-throwaway.sh status           # exit 0 when running
#   scripts/pg-throwaway.sh stop             # stops it and deletes its data
#   scripts/pg-throwaway.sh restart          # pg_ctl restart -m fast (same port, same data): fault tests
#   scripts/pg-throwaway.sh down             # stops the server (-m fast) but keeps its data and port
#   scripts/pg-throwaway.sh up               # starts a server stopped by `down` again
#
# The cluster: a fresh initdb in a temporary directory, listening on 127.0.0.1 only, on a free port, with
# fsync off (its data is disposable), max_parallel_maintenance_workers = 0 (pgvector builds before 0.8.2
# could overflow in parallel HNSW builds). The URL's user is the cluster's superuser: tests create a
# database per test file and run CREATE EXTENSION vector (pgvector is not a trusted extension).
# `start` on an already running cluster prints its URL again. As root, the server runs as the `postgres`
# system user (PostgreSQL refuses to run as root).
#
# Settings (environment):
#   PG_THROWAWAY_STATE  state directory (default: .cache/pg in the repository, which git ignores)
#   PG_THROWAWAY_TMP    where the cluster's data directory is created (default: $TMPDIR or /tmp)
#   PG_BIN              PostgreSQL's bin directory (default: the newest /usr/lib/postgresql/*/bin)
#   PG_THROWAWAY_USER   user name in the URL (default: vps)
#   PG_THROWAWAY_DB     database created and named in the URL (default: vps)
#   PG_THROWAWAY_PORT   port to use instead of a free one picked at random
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_DIR="${PG_THROWAWAY_STATE:-$SCRIPT_DIR/../.cache/pg}"
STATE_FILE="$STATE_DIR/state"
PG_USER="${PG_THROWAWAY_USER:-vps}"
PG_DB="${PG_THROWAWAY_DB:-vps}"

LOG_PREFIX=pg-throwaway
# shellcheck source=lib/pg-cluster.sh
source "$SCRIPT_DIR/lib/pg-cluster.sh"

remove_base() {
  if [[ -n "${BASE:-}" && -d "$BASE" ]]; then
    rm -rf -- "$BASE"
  fi
}

cmd_stop() {
  if ! read_state; then
    log "no throwaway cluster recorded in $STATE_FILE; nothing to stop"
    rm -f "$STATE_FILE"
    return 0
  fi
  if [[ -d "$BASE/data" ]] && as_pg "$BIN/pg_ctl" status -D "$BASE/data" >/dev/null 2>&1; then
    log "stopping the cluster on port $PORT"
    as_pg "$BIN/pg_ctl" stop -D "$BASE/data" -m fast -w -t 30 >&2 ||
      as_pg "$BIN/pg_ctl" stop -D "$BASE/data" -m immediate -w -t 30 >&2 || true
  fi
  remove_base
  rm -f "$STATE_FILE"
  log "removed $BASE"
}

cmd_start() {
  if read_state; then
    if is_running; then
      log "already running on port $PORT ($BASE)"
      echo "$URL"
      return 0
    fi
    log "a recorded cluster in $BASE is not running; removing it and starting a new one"
    cmd_stop
  fi

  BIN="$(find_bin)"
  local tmp="${PG_THROWAWAY_TMP:-${TMPDIR:-/tmp}}"
  mkdir -p "$STATE_DIR"
  BASE="$(mktemp -d "$tmp/vps-pg.XXXXXX")"
  chmod 700 "$BASE"
  if [[ "$(id -u)" -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (Debian's postgresql package creates it)"
    chown postgres: "$BASE"
    runuser -u postgres -- test -w "$BASE" ||
      die "user postgres cannot write $BASE (is $tmp private to root?); set PG_THROWAWAY_TMP to a world-traversable directory"
  fi
  # Until the URL is printed, any failure removes the half-made cluster.
  trap 'if [[ $? -ne 0 ]]; then log "start failed"; as_pg "$BIN/pg_ctl" stop -D "$BASE/data" -m immediate >/dev/null 2>&1 || true; remove_base; fi' EXIT

  local password
  password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  (umask 077 && printf '%s\n' "$password" >"$BASE/pwfile")
  [[ "$(id -u)" -eq 0 ]] && chown postgres: "$BASE/pwfile"

  log "initdb in $BASE/data ($("$BIN/postgres" --version))"
  as_pg "$BIN/initdb" -D "$BASE/data" -U "$PG_USER" --pwfile="$BASE/pwfile" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$BASE/initdb.log" 2>&1 ||
    { cat "$BASE/initdb.log" >&2; false; }
  rm -f "$BASE/pwfile"
  cat >>"$BASE/data/postgresql.conf" <<EOF

# --- scripts/pg-throwaway.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BASE'
max_connections = 200
# disposable data: durability off for speed
fsync = off
synchronous_commit = off
full_page_writes = off
# pgvector < 0.8.2: parallel HNSW builds could overflow
max_parallel_maintenance_workers = 0
EOF

  local attempt started=0
  for attempt in 1 2 3 4 5; do
    PORT="${PG_THROWAWAY_PORT:-$(pick_port)}"
    if as_pg "$BIN/pg_ctl" start -D "$BASE/data" -l "$BASE/log" -w -t 30 -o "-p $PORT" >/dev/null 2>&1; then
      started=1
      break
    fi
    [[ -n "${PG_THROWAWAY_PORT:-}" ]] && break
    log "start on port $PORT failed (attempt $attempt); trying another port"
  done
  ((started)) || { cat "$BASE/log" >&2; die "could not start PostgreSQL"; }

  as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$BASE" -p "$PORT" -U "$PG_USER" -d postgres \
    -c "CREATE DATABASE \"$PG_DB\"" >&2

  URL="postgres://$PG_USER:$password@127.0.0.1:$PORT/$PG_DB"
  (
    umask 077
    {
      printf 'BASE=%q\n' "$BASE"
      printf 'PORT=%q\n' "$PORT"
      printf 'BIN=%q\n' "$BIN"
      printf 'URL=%q\n' "$URL"
    } >"$STATE_FILE"
  )
  trap - EXIT
  log "PostgreSQL running on 127.0.0.1:$PORT, data in $BASE/data, log in $BASE/log"
  echo "$URL"
}

cmd_url() {
  read_state || die "no throwaway cluster is running (start one with: scripts/pg-throwaway.sh start)"
  is_running || die "the recorded cluster on port $PORT is not running (start one with: scripts/pg-throwaway.sh start)"
  echo "$URL"
}

cmd_status() {
  if read_state && is_running; then
    log "running on port $PORT ($BASE)"
    return 0
  fi
  log "not running"
  return 1
}

# The server of the recorded cluster, stopped or started in place (data and port kept): for tests of
# how clients survive a database restart or outage.
cmd_restart() {
  read_state || die "no throwaway cluster is recorded (start one with: scripts/pg-throwaway.sh start)"
  log "restarting the cluster on port $PORT (-m fast)"
  as_pg "$BIN/pg_ctl" restart -D "$BASE/data" -l "$BASE/log" -m fast -w -t 30 -o "-p $PORT" >/dev/null
}

cmd_down() { stop_keeping_data "throwaway cluster"; }

cmd_up() { start_again "throwaway cluster" 30; }

case "${1:-}" in
  start) cmd_start ;;
  restart) cmd_restart ;;
  down) cmd_down ;;
  up) cmd_up ;;
  stop) cmd_stop ;;
  url) cmd_url ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|url|status|restart|down|up" >&2
    exit 2
    ;;
esac

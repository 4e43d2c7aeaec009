#!/usr/bin/env bash
# A throwaway streaming replica (hot standby) of a PostgreSQL cluster, for tests and benchmarks of the
# read replicas (DATABASE_READ_URL). Made by pg_basebackup -R from the primary, in a directory of its own,
# on another free loopback port.
#
#   URL="$(scripts/pg-replica.sh start "$PRIMARY_URL")"  # prints only the standby's URL on stdout
#   scripts/pg-replica.sh start                         # primary: the running scripts/pg-throwaway.sh cluster
#   scripts/pg-replica.sh url | status                  # its URL again / exit 0 when running
#   scripts/pg-replica.sh down | up                     # stop the server keeping its data and port / start it again
#   scripts/pg-replica.sh stop                          # stop it and delete its data
#
# The primary must allow replication connections from 127.0.0.1 for its user (initdb's default pg_hba.conf
# does, and the throwaway cluster's user is a superuser) and have wal_level = replica (the default). The
# standby's URL is the primary's with the standby's port: same user, password and database.
#
# Settings (environment):
#   PG_REPLICA_STATE   state directory (default: .cache/pg-replica in the repository, which git ignores)
#   PG_THROWAWAY_TMP   where the standby's data directory is created (default: $TMPDIR or /tmp)
#   PG_BIN             PostgreSQL's bin directory (default: the newest /usr/lib/postgresql/*/bin)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_DIR="${PG_REPLICA_STATE:-$SCRIPT_DIR/../.cache/pg-replica}"
STATE_FILE="$STATE_DIR/state"

LOG_PREFIX=pg-replica
# shellcheck source=lib/pg-cluster.sh
source "$SCRIPT_DIR/lib/pg-cluster.sh"

cmd_stop() {
  if ! read_state; then
    log "no replica recorded in $STATE_FILE; nothing to stop"
    rm -f "$STATE_FILE"
    return 0
  fi
  if [[ -d "$BASE/data" ]] && as_pg "$BIN/pg_ctl" status -D "$BASE/data" >/dev/null 2>&1; then
    log "stopping the replica on port $PORT"
    as_pg "$BIN/pg_ctl" stop -D "$BASE/data" -m fast -w -t 30 >&2 ||
      as_pg "$BIN/pg_ctl" stop -D "$BASE/data" -m immediate -w -t 30 >&2 || true
  fi
  [[ -n "$BASE" && -d "$BASE" ]] && rm -rf -- "$BASE"
  rm -f "$STATE_FILE"
  log "removed $BASE"
}

cmd_start() {
  local primary="${1:-}"
  if read_state; then
    if is_running; then
      log "already running on port $PORT ($BASE)"
      echo "$URL"
      return 0
    fi
    log "a recorded replica in $BASE is not running; removing it and starting a new one"
    cmd_stop
  fi
  if [[ -z "$primary" ]]; then
    primary="$("$SCRIPT_DIR/pg-throwaway.sh" url)" || die "no primary URL given and no throwaway cluster running"
  fi
  [[ "$primary" =~ ^postgres(ql)?://[^/]*@?[^/]*:([0-9]+)/ ]] || die "the primary URL must name host, port and database"

  BIN="$(find_bin)"
  local tmp="${PG_THROWAWAY_TMP:-${TMPDIR:-/tmp}}"
  mkdir -p "$STATE_DIR"
  BASE="$(mktemp -d "$tmp/vps-pg-replica.XXXXXX")"
  chmod 700 "$BASE"
  if [[ "$(id -u)" -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user"
    chown postgres: "$BASE"
  fi
  trap 'if [[ $? -ne 0 ]]; then log "start failed"; as_pg "$BIN/pg_ctl" stop -D "$BASE/data" -m immediate >/dev/null 2>&1 || true; rm -rf -- "$BASE"; fi' EXIT

  # -R writes standby.signal and primary_conninfo; -X stream copies the WAL written during the backup.
  log "pg_basebackup into $BASE/data"
  as_pg "$BIN/pg_basebackup" -d "$primary" -D "$BASE/data" -R -X stream -c fast --no-sync >"$BASE/basebackup.log" 2>&1 ||
    { cat "$BASE/basebackup.log" >&2; false; }
  # The copied postgresql.conf names the primary's socket directory; the standby has its own.
  cat >>"$BASE/data/postgresql.conf" <<EOF

# --- scripts/pg-replica.sh ---
unix_socket_directories = '$BASE'
hot_standby = on
EOF

  local attempt started=0
  for attempt in 1 2 3 4 5; do
    PORT="$(pick_port)"
    if as_pg "$BIN/pg_ctl" start -D "$BASE/data" -l "$BASE/log" -w -t 60 -o "-p $PORT" >/dev/null 2>&1; then
      started=1
      break
    fi
    log "start on port $PORT failed (attempt $attempt); trying another port"
  done
  ((started)) || { cat "$BASE/log" >&2; die "could not start the replica"; }

  # The primary's URL with the standby's port (same credentials and database).
  URL="$(printf '%s' "$primary" | sed -E "s#^(postgres(ql)?://[^/]*:)[0-9]+/#\\1$PORT/#")"
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
  log "replica running on 127.0.0.1:$PORT, data in $BASE/data, log in $BASE/log"
  echo "$URL"
}

cmd_url() {
  read_state || die "no replica is running (start one with: scripts/pg-replica.sh start)"
  is_running || die "the recorded replica on port $PORT is not running"
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

cmd_down() { stop_keeping_data "replica"; }

cmd_up() { start_again "replica" 60; }

case "${1:-}" in
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop ;;
  url) cmd_url ;;
  status) cmd_status ;;
  down) cmd_down ;;
  up) cmd_up ;;
  *)
    echo "usage: $0 start [primary-url]|stop|url|status|down|up" >&2
    exit 2
    ;;
esac

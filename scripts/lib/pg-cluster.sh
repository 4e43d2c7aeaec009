# Shell helpers shared by scripts/pg-throwaway.sh and scripts/pg-replica.sh (sourced, not run). The
# caller sets LOG_PREFIX and STATE_FILE; read_state sets BASE, PORT, URL and BIN from STATE_FILE.

log() { printf '[%s] %s\n' "$LOG_PREFIX" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# PostgreSQL's bin directory: PG_BIN, else the newest /usr/lib/postgresql/*/bin, else pg_config's.
find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
  local d best="" bestv=0 v
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/postgres" ]] || continue
    v="$(basename "$(dirname "$d")")"
    if [[ "$v" =~ ^[0-9]+$ ]] && ((v > bestv)); then best="$d"; bestv="$v"; fi
  done
  if [[ -z "$best" ]] && command -v pg_config >/dev/null 2>&1; then best="$(pg_config --bindir)"; fi
  [[ -n "$best" && -x "$best/postgres" ]] || die "no PostgreSQL server found; run scripts/provision-postgres.sh (as root) first"
  echo "$best"
}

# Run a PostgreSQL program as the user the server runs as (PostgreSQL refuses to run as root: as root,
# the `postgres` system user), from a directory that user can read.
as_pg() {
  if [[ "$(id -u)" -eq 0 ]]; then
    (cd "$BASE" && runuser -u postgres -- "$@")
  else
    (cd "$BASE" && "$@")
  fi
}

read_state() {
  [[ -f "$STATE_FILE" ]] || return 1
  BASE="" PORT="" URL="" BIN=""
  # shellcheck disable=SC1090
  source "$STATE_FILE"
  [[ -n "$BASE" && -n "$PORT" && -n "$URL" && -n "$BIN" ]]
}

is_running() {
  [[ -d "$BASE/data" ]] || return 1
  as_pg "$BIN/pg_ctl" status -D "$BASE/data" >/dev/null 2>&1 || return 1
  as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 5
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    port_in_use "$p" || { echo "$p"; return; }
  done
  die "no free port found"
}

# `down` and `up` of a recorded server: stop it keeping its data and port, and start it again. $1 names
# what is recorded in messages ("throwaway cluster", "replica"); up's $2 is its start timeout in seconds.
stop_keeping_data() {
  read_state || die "no $1 is recorded"
  log "stopping the server on port $PORT (-m fast), keeping its data"
  as_pg "$BIN/pg_ctl" stop -D "$BASE/data" -m fast -w -t 30 >/dev/null
}

start_again() {
  read_state || die "no $1 is recorded"
  log "starting the server on port $PORT again"
  as_pg "$BIN/pg_ctl" start -D "$BASE/data" -l "$BASE/log" -w -t "$2" -o "-p $PORT" >/dev/null
}

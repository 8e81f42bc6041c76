# Private PostgreSQL servers for the depot scripts (source it), run from the
# system binaries, with everything under <project>/.depot/NAME/.
#   depot_pg_start NAME [on|off]  start server NAME (fsync on by default);
#                                 exports DEPOT_DB and DEPOT_PG_NAME, and
#                                 stops the server when the script exits
#   depot_pg_stop [NAME]          stop it (default: $DEPOT_PG_NAME)
#   depot_pg_ctl ARGS...          pg_ctl on $DEPOT_PG_NAME's data directory,
#                                 e.g. `-m immediate stop`, then `-w restart`
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

_depot_pg_bindir() {
  local d
  d=$(pg_config --bindir 2>/dev/null) || true
  if [[ ! -x $d/initdb ]]; then
    d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  [[ -x $d/initdb ]] || depot_die "no PostgreSQL server binaries found: run scripts/install"
  echo "$d"
}

# _depot_pg TOOL ARGS...: run a server tool; they refuse to run as root.
_depot_pg() {
  local tool
  tool="$(_depot_pg_bindir)/$1"
  shift
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$tool" "$@")
  else
    "$tool" "$@"
  fi
}

# Root only: let user postgres reach DIR (o+x down the path, where needed).
_depot_pg_reachable() {
  local d=$1 dirs=()
  while [[ -n $d ]]; do dirs=("$d" "${dirs[@]}"); d=${d%/*}; done
  for d in "${dirs[@]}"; do
    runuser -u postgres -- test -x "$d" || chmod o+x "$d"
  done
}

# Is a postmaster running on DATADIR? Its postmaster.pid names a live
# (not zombie) postgres process.
_depot_pg_alive() {
  local pid=
  [[ -r $1/postmaster.pid ]] && read -r pid <"$1/postmaster.pid"
  [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/stat" 2>/dev/null) == "$pid (postgres) "[!ZX]* ]]
}

# _depot_pg_port [PREFERRED]: a TCP port nobody listens on at 127.0.0.1.
_depot_pg_port() {
  local port=${1:-} i
  for i in {1..100}; do
    if [[ $port =~ ^[0-9]+$ ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
    port=$((15432 + RANDOM % 16000))
  done
  depot_die "no free TCP port found"
}

depot_pg_start() {
  local name=${1:?usage: depot_pg_start NAME [on|off]} fsync=${2:-on}
  [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || depot_die "bad server name: $name"
  [[ $fsync == on || $fsync == off ]] || depot_die "fsync must be on or off, not $fsync"
  local dir="$DEPOT_ROOT/.depot/$name"
  local data="$dir/data" sock="$dir" port= preferred attempt out
  depot_on_exit "depot_pg_stop $name"
  depot_pg_stop "$name" # a server left over from an earlier run
  ! _depot_pg_alive "$data" || depot_die "PostgreSQL $name is still running (data: $data)"
  mkdir -p "$dir"
  if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || depot_die "user postgres missing: run scripts/install"
    chown postgres: "$dir"
    _depot_pg_reachable "$dir"
  fi
  if [[ ! -f $data/PG_VERSION ]]; then
    rm -rf "$data"
    _depot_pg initdb -D "$data" -A trust -U postgres -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; depot_die "initdb failed for $name"; }
  fi
  # Lock files of a dead server: their pids may be zombies, or reused.
  rm -f "$data/postmaster.pid" "$dir"/.s.PGSQL.*.lock
  # A Unix socket path is limited to 107 bytes: past that, TCP only.
  ((${#sock} + 16 <= 107)) || sock=
  preferred=$(cat "$dir/port" 2>/dev/null || true)
  for attempt in 1 2 3 4 5; do
    port=$(_depot_pg_port "$preferred")
    if _depot_pg pg_ctl -D "$data" -l "$data/server.log" -w -o \
      "-p $port -k '$sock' -c listen_addresses=127.0.0.1 -c fsync=$fsync -c max_connections=200" \
      start >/dev/null 2>&1; then
      break
    fi
    port= preferred= # port taken meanwhile, or an old server still exiting
    sleep "$attempt"
  done
  [[ -n $port ]] || { tail -n 20 "$data/server.log" >&2; depot_die "PostgreSQL $name did not start"; }
  echo "$port" >"$dir/port"
  out=$("$(_depot_pg_bindir)/createdb" -h 127.0.0.1 -p "$port" -U postgres depot 2>&1) ||
    [[ $out == *"already exists"* ]] || depot_die "createdb failed: $out"
  export DEPOT_PG_NAME=$name DEPOT_DB="postgresql://postgres@127.0.0.1:$port/depot"
  depot_log "PostgreSQL $name (fsync $fsync): $DEPOT_DB"
}

depot_pg_stop() {
  local name=${1:-${DEPOT_PG_NAME:-}}
  [[ -n $name ]] || return 0
  local data="$DEPOT_ROOT/.depot/$name/data"
  _depot_pg_alive "$data" || return 0
  _depot_pg pg_ctl -D "$data" -m fast -w stop >/dev/null 2>&1 ||
    _depot_pg pg_ctl -D "$data" -m immediate -w stop >/dev/null 2>&1 ||
    depot_warn "could not stop PostgreSQL $name"
}

depot_pg_ctl() {
  local data="$DEPOT_ROOT/.depot/${DEPOT_PG_NAME:?no server started}/data"
  _depot_pg pg_ctl -D "$data" -l "$data/server.log" "$@"
}

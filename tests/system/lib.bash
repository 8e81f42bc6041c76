# Shared by the system tests (source it; it is not a test itself). Every test gets its own
# database sys_<test>_<random> on the server of DEPOT_DB, dropped when the test ends, and every
# process a test starts is killed when it ends (scripts/lib/common.sh's cleanup registry).
#
#   sys_init                      strict mode, paths, cleanup; checks DEPOT_DB and the binary
#   sys_create_db                 create this test's database; exports DEPOT_DB pointing at it
#   step MSG / fail MSG           a progress line on stderr / the reason of a failure, exit 1
#   q SQL                         one query on DEPOT_DB (psql -XtA), fails on SQL errors
#   sys_start_node LABEL ARGS...  `bank run ARGS...` in the background; sets SYS_PID once it
#                                 reports that it runs; logs in $SYS_WORK/LABEL.{out,err}
#   sys_kill9 PID                 kill -9 and reap
#   sys_stop_node PID             SIGTERM; fails unless it exits 0 within 20 s
#   sys_bank_setup                with N ACCOUNTS BALANCE THRESHOLD set: db apply, seed, the N
#                                 debits in $SYS_WORK/debits.jsonl and what they should yield
#   sys_debits N ACCOUNTS         N DebitAccount JSON lines, debit k to acct-(k mod ACCOUNTS + 1)
#   sys_expect N ACCOUNTS BALANCE THRESHOLD
#                                 expected balances ($SYS_WORK/expected) and cascade counts
#                                 (EXP_LOW, EXP_OVERDRAWN, EXP_UPDATED) after those debits
#   sys_handled_debits            debit envelopes handled so far
#   sys_send_debits FILE          `bank send bank.debit-account -` < FILE in the background;
#                                 sets SENDER_PID; sys_wait_sender checks that it succeeded
#   sys_wait_handled MIN PID      wait until MIN debits are handled (node PID must not die)
#   sys_kill_mid_run PID N        kill -9 PID once 20% of N debits are handled; fails unless
#                                 some were still unhandled; sets KILLED_AFTER, LEFT
#   sys_kill_node1_mid_run        start node 1, send $SYS_WORK/debits.jsonl, kill -9 it mid-run
#                                 (sys_kill_mid_run) and check that the sender succeeded
#   sys_wait_drained SECONDS      wait until no envelope is left to handle
#   sys_verify N                  balances, cascade counts, deadlines, dead letters: all exact
#
# Command checks that record a failure and go on (sys_checked fails the test at the end):
#   run WANT DESC CMD...          CMD with stdin $IN (default /dev/null), stdout/stderr in
#                                 $OUT/$ERR; WANT is an exit code or "nonzero"
#   bad MSG                       record a failed check
#   has FILE DESC PATTERN...      every grep -E PATTERN matches FILE
#   one_line DESC                 stderr is exactly one line, starting with "bank: "
#   sys_checked                   fail when a check failed

set -Eeuo pipefail
shopt -s inherit_errexit

_sys_build=${DEPOT_BUILD:-}
# shellcheck source=../../scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"
[[ -n $_sys_build ]] && DEPOT_BUILD=$_sys_build
export DEPOT_BUILD

SYS_NAME=$(basename "$0" .sh)
BANK=$DEPOT_BUILD/samples/bank/bank
SYS_START=$SECONDS
SYS_WORK=
declare -A SYS_LIVE=() # pid -> label of the nodes still running

step() { printf '[%s +%ss] %s\n' "$SYS_NAME" "$((SECONDS - SYS_START))" "$*" >&2; }

# Tails of the logs of every node of this test, to explain a failure.
_sys_dump_logs() {
  local f
  [[ -n $SYS_WORK && -d $SYS_WORK ]] || return 0
  for f in "$SYS_WORK"/*.err "$SYS_WORK"/*.out; do
    [[ -s $f ]] || continue
    printf -- '--- %s (%s warning(s), %s deadlock(s); last 15 lines)\n' "${f##*/}" \
      "$(grep -c 'warning' "$f" || true)" "$(grep -c 'deadlock detected' "$f" || true)" >&2
    tail -n 15 "$f" >&2
  done
}

fail() {
  trap - ERR
  printf '[%s +%ss] FAIL: %s\n' "$SYS_NAME" "$((SECONDS - SYS_START))" "$*" >&2
  _sys_dump_logs
  exit 1
}

trap 'rc=$?; trap - ERR; printf "[%s] FAIL: command failed (exit %s) at %s line %s: %s\n" \
  "$SYS_NAME" "$rc" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2; _sys_dump_logs' ERR

sys_init() {
  [[ -n ${DEPOT_DB:-} ]] || fail "DEPOT_DB is not set (run through scripts/test)"
  [[ -x $BANK ]] || fail "$BANK is not built (ninja -C build)"
  command -v psql >/dev/null || fail "psql not found"
  SYS_WORK=$(mktemp -d "${TMPDIR:-/tmp}/sys_${SYS_NAME}.XXXXXX")
  OUT=$SYS_WORK/out ERR=$SYS_WORK/err IN=/dev/null
  depot_on_exit "rm -rf '$SYS_WORK'"
  depot_on_exit _sys_kill_all
  step "start (bank: $BANK)"
}

SYS_FAILURES=()

run() {
  local want=$1 desc=$2 rc=0
  shift 2
  "$@" >"$OUT" 2>"$ERR" <"$IN" || rc=$?
  if [[ $want == nonzero && $rc -ne 0 ]] || [[ $want == "$rc" ]]; then
    step "ok: $desc (exit $rc)"
    return 0
  fi
  bad "$desc: exit $rc, expected $want; stderr: $(head -c 300 "$ERR")"
  return 1
}

bad() {
  step "NOT OK: $*"
  SYS_FAILURES+=("$*")
}

has() {
  local file=$1 desc=$2 p
  shift 2
  for p in "$@"; do
    grep -qE -- "$p" "$file" || bad "$desc: no '$p' in: $(head -c 400 "$file")"
  done
}

one_line() {
  local lines
  lines=$(grep -c . "$ERR" || true)
  [[ $lines == 1 && $(wc -l <"$ERR") == 1 ]] ||
    bad "$1: stderr should be one line, is $(wc -l <"$ERR") line(s): $(head -c 300 "$ERR")"
  grep -q '^bank: ' "$ERR" || bad "$1: stderr does not start with 'bank: ': $(head -c 200 "$ERR")"
}

sys_checked() {
  ((${#SYS_FAILURES[@]} == 0)) ||
    fail "${#SYS_FAILURES[@]} check(s) failed; first: ${SYS_FAILURES[0]}"
}

_sys_kill_all() {
  local pid
  for pid in "${!SYS_LIVE[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SYS_LIVE=()
}

# The URI of DB on the server of URI: the database name replaced, query parameters kept.
sys_uri_of() {
  local uri=$1 db=$2 base query rest
  base=${uri%%\?*}
  query=${uri#"$base"}
  rest=${base#*://}
  if [[ $rest == */* ]]; then
    base=${base%/*}
  fi
  printf '%s/%s%s\n' "$base" "$db" "$query"
}

sys_create_db() {
  local name admin
  name="sys_${SYS_NAME//[^A-Za-z0-9_]/_}_${RANDOM}${RANDOM}"
  admin=$(sys_uri_of "$DEPOT_DB" postgres)
  psql -XtAq -v ON_ERROR_STOP=1 "$admin" -c "CREATE DATABASE $name" >/dev/null ||
    fail "cannot create database $name through $admin"
  depot_on_exit "psql -XtAq '$admin' -c 'DROP DATABASE IF EXISTS $name WITH (FORCE)' >/dev/null 2>&1"
  DEPOT_DB=$(sys_uri_of "$DEPOT_DB" "$name")
  export DEPOT_DB
  step "database $name"
}

q() { psql -XtAq -v ON_ERROR_STOP=1 "$DEPOT_DB" -c "$1"; }

# Is PID a running (not zombie) process?
sys_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != [ZX] ]]
}

sys_start_node() {
  local label=$1 i
  shift
  "$BANK" run "$@" >"$SYS_WORK/$label.out" 2>"$SYS_WORK/$label.err" &
  SYS_PID=$!
  SYS_LIVE[$SYS_PID]=$label
  for ((i = 0; i < 200; i++)); do
    grep -q ' running' "$SYS_WORK/$label.out" 2>/dev/null && break
    if ! sys_alive "$SYS_PID"; then
      local rc=0
      wait "$SYS_PID" || rc=$?
      unset "SYS_LIVE[$SYS_PID]"
      fail "node $label (bank run $*) exited with code $rc at start: $(head -c 600 "$SYS_WORK/$label.err")"
    fi
    sleep 0.05
  done
  grep -q ' running' "$SYS_WORK/$label.out" || fail "node $label did not report running within 10 s"
  step "node $label (pid $SYS_PID): $(head -n 1 "$SYS_WORK/$label.out")"
}

sys_kill9() {
  kill -KILL "$1"
  wait "$1" 2>/dev/null || true
  unset "SYS_LIVE[$1]"
}

sys_stop_node() {
  local pid=$1 label=${SYS_LIVE[$1]:-?} i rc=0 t0=${EPOCHREALTIME/[.,]/}
  kill -TERM "$pid"
  for ((i = 0; i < 200; i++)); do
    sys_alive "$pid" || break
    sleep 0.1
  done
  sys_alive "$pid" && fail "node $label (pid $pid) still runs 20 s after SIGTERM"
  wait "$pid" || rc=$?
  unset "SYS_LIVE[$pid]"
  ((rc == 0)) || fail "node $label exited with code $rc after SIGTERM (expected 0)"
  step "node $label stopped by SIGTERM: exit 0 after $(((${EPOCHREALTIME/[.,]/} - t0) / 1000)) ms"
}

# The fixed amount of account a; the same in sys_debits and sys_expect.
_SYS_AMOUNT='function amount(a) { return 10 + (a * 7) % 41 }'

sys_debits() {
  awk -v n="$1" -v accts="$2" "$_SYS_AMOUNT"'
    BEGIN { for (k = 0; k < n; k++) { a = k % accts + 1
      printf "{\"account_id\":\"acct-%d\",\"amount\":%d}\n", a, amount(a) } }'
}

sys_expect() {
  local counts
  counts=$(awk -v n="$1" -v accts="$2" -v balance="$3" -v threshold="$4" \
    -v out="$SYS_WORK/expected" "$_SYS_AMOUNT"'
    BEGIN {
      for (a = 1; a <= accts; a++) {
        debits = int(n / accts) + (a <= n % accts ? 1 : 0); b = balance
        for (k = 0; k < debits; k++) {
          b -= amount(a)
          if (b > 0 && b < threshold) low++; else if (b < 0) over++
          upd++
        }
        printf "acct-%d %d\n", a, b > out
      }
      printf "%d %d %d\n", low, over, upd
    }')
  read -r EXP_LOW EXP_OVERDRAWN EXP_UPDATED <<<"$counts"
  sort -o "$SYS_WORK/expected" "$SYS_WORK/expected"
  step "expected after $1 debits: $EXP_LOW low-balance, $EXP_OVERDRAWN overdrawn, $EXP_UPDATED updated"
}

sys_bank_setup() {
  "$BANK" db apply >/dev/null || fail "db apply failed"
  "$BANK" seed --accounts "$ACCOUNTS" --balance "$BALANCE" --threshold "$THRESHOLD" >/dev/null ||
    fail "seed failed"
  sys_debits "$N" "$ACCOUNTS" >"$SYS_WORK/debits.jsonl"
  sys_expect "$N" "$ACCOUNTS" "$BALANCE" "$THRESHOLD"
}

# Debits handled so far, read from their effects: a handled envelope leaves the inbox, and each
# debit of account a takes its fixed amount (10 + 7a mod 41, as sys_debits makes them) off a.
_sys_handled_debits_sql() {
  echo "SELECT coalesce(sum(($BALANCE - balance) / (10 + (substr(id, 6)::int * 7) % 41)), 0) FROM accounts"
}

sys_handled_debits() {
  q "$(_sys_handled_debits_sql)"
}

sys_send_debits() {
  "$BANK" send bank.debit-account - <"$1" >"$SYS_WORK/send.out" 2>"$SYS_WORK/send.err" &
  SENDER_PID=$!
  SYS_LIVE[$SENDER_PID]=sender
}

sys_wait_sender() {
  local rc=0
  wait "$SENDER_PID" || rc=$?
  unset "SYS_LIVE[$SENDER_PID]"
  ((rc == 0)) || fail "bank send exited with code $rc: $(cat "$SYS_WORK/send.err")"
  step "$(cat "$SYS_WORK/send.out")"
}

# sys_wait_handled MIN PID: wait (60 s at most) until at least MIN debits are handled, while
# node PID keeps running; sets HANDLED. Polls through one psql session: starting psql for each
# poll costs more than a batch of debits takes.
sys_wait_handled() {
  local min=$1 pid=$2 deadline=$((SECONDS + 60)) to from psql_pid
  coproc SYS_PSQL { exec psql -XtAq "$DEPOT_DB" 2>&1; }
  psql_pid=$SYS_PSQL_PID to=${SYS_PSQL[1]} from=${SYS_PSQL[0]}
  SYS_LIVE[$psql_pid]=psql
  while :; do
    printf '%s;\n' "$(_sys_handled_debits_sql)" >&"$to"
    read -r -t 10 -u "$from" HANDLED || fail "no answer from psql while polling"
    [[ $HANDLED =~ ^[0-9]+$ ]] || fail "polling psql: $HANDLED"
    ((HANDLED < min)) || break
    ((SECONDS < deadline)) || fail "only $HANDLED debits handled after 60 s (waiting for $min)"
    sys_alive "$pid" || fail "node ${SYS_LIVE[$pid]:-$pid} died by itself"
    sleep 0.005
  done
  exec {to}>&-
  wait "$psql_pid" 2>/dev/null || true
  unset "SYS_LIVE[$psql_pid]"
}

sys_kill_mid_run() {
  local pid=$1 n=$2
  sys_wait_handled $((n / 5)) "$pid"
  sys_kill9 "$pid"
  KILLED_AFTER=$(sys_handled_debits)
  LEFT=$((n - KILLED_AFTER))
  ((LEFT > 0)) || fail "all $n debits were handled before the kill: it was not mid-run"
}

sys_kill_node1_mid_run() {
  sys_start_node node1 --node-id 1
  local first=$SYS_PID
  sys_send_debits "$SYS_WORK/debits.jsonl"
  sys_kill_mid_run "$first" "$N"
  sys_wait_sender
}

# Envelopes still to handle: incoming, or scheduled to run within a day (retries; the overdraft
# deadlines are 10 days out).
_SYS_PENDING="SELECT count(*) FROM depot.incoming WHERE status = 'incoming' OR (status = \
'scheduled' AND execution_time < now() + interval '1 day')"

sys_wait_drained() {
  local deadline=$((SECONDS + $1)) pending next=$((SECONDS + 5))
  while :; do
    pending=$(q "$_SYS_PENDING")
    ((pending == 0)) && break
    ((SECONDS < deadline)) ||
      fail "still $pending envelope(s) to handle after $1 s: $(q "SELECT string_agg(queue || ' ' || status || ': ' || n, '; ') FROM (SELECT queue, status, count(*) n FROM depot.incoming WHERE status IN ('incoming', 'scheduled') AND execution_time < now() + interval '1 day' GROUP BY 1, 2) s")"
    if ((SECONDS >= next)); then
      step "waiting: $pending envelope(s) to handle, $(sys_handled_debits) debits handled"
      next=$((SECONDS + 5))
    fi
    sleep 0.2
  done
  step "drained: nothing left to handle"
}

sys_verify() {
  local n=$1 errors=() got want
  # Balances, every one exact.
  q "SELECT id || ' ' || balance FROM accounts" | sort >"$SYS_WORK/actual"
  if ! diff -q "$SYS_WORK/expected" "$SYS_WORK/actual" >/dev/null; then
    errors+=("balances differ from the expected ones (expected < > actual): $(diff "$SYS_WORK/expected" "$SYS_WORK/actual" | grep '^[<>]' | head -n 6 | tr '\n' ';')")
  fi
  check() { # WHAT GOT WANT
    if [[ $2 != "$3" ]]; then errors+=("$1: $2, expected $3"); fi
  }
  local s="depot.incoming"
  # A handled envelope leaves the inbox: only the overdraft deadlines (10 days out) stay.
  check "debits handled" "$(sys_handled_debits)" "$n"
  check "envelopes left besides the deadlines" "$(q "SELECT count(*) FROM $s WHERE message_type <> 'bank.enforce-account-overdrawn-deadline'")" 0
  check "low-balance-detected recorded" "$(q "SELECT count(*) FROM account_events WHERE message_type = 'bank.low-balance-detected'")" "$EXP_LOW"
  check "account-overdrawn recorded" "$(q "SELECT count(*) FROM account_events WHERE message_type = 'bank.account-overdrawn'")" "$EXP_OVERDRAWN"
  local updated expired
  updated=$(q "SELECT count(*) FROM account_events WHERE message_type = 'bank.account-updated'")
  # AccountUpdated must be handled within 5 s; the nodes log what they discarded unhandled.
  expired=$(cat "$SYS_WORK"/*.err 2>/dev/null |
    sed -n 's/.*queue bank.account-updated: \([0-9]*\) envelope(s) expired unhandled.*/\1/p' |
    awk '{ n += $1 } END { print n + 0 }')
  check "account-updated recorded + expired ($updated + $expired)" "$((updated + expired))" "$EXP_UPDATED"
  check "overdraft deadlines scheduled" "$(q "SELECT count(*) FROM $s WHERE message_type = 'bank.enforce-account-overdrawn-deadline' AND status = 'scheduled' AND execution_time > now() + interval '9 days'")" "$EXP_OVERDRAWN"
  check "overdraft deadlines handled (none is due)" "$(q "SELECT count(*) FROM account_events WHERE message_type = 'bank.enforce-account-overdrawn-deadline'")" 0
  check "dead letters" "$(q "SELECT count(*) FROM depot.dead_letters")" 0
  if ((${#errors[@]})); then
    local e
    for e in "${errors[@]}"; do step "MISMATCH $e"; done
    fail "${#errors[@]} check(s) failed after $n debits (first: ${errors[0]})"
  fi
  step "verified: $(wc -l <"$SYS_WORK/expected") balances exact; $EXP_LOW low-balance, $EXP_OVERDRAWN overdrawn (+ as many deadlines), $updated updated + $expired expired; no dead letters"
}

#!/usr/bin/env bash
# The bank over Kafka killed with -9 mid-consumption and again mid-relay loses nothing, applies
# every debit once, and what it produces twice is the same record under the same id. 2,000
# DebitAccount CloudEvents (structured mode, distinct ids, amount 1, 20 accounts) go through kcat
# to `bank kafka mock` (its own process). Kill 1: the node dies while the listener's transaction
# storing a batch of consumed records is open (held by a lock of the test's). Kill 2: restarted
# under the same node id, it handles every debit while the test holds the relay lock, then dies
# when its relay has delivered a batch to bank.events but not yet removed it from the outbox
# (the DELETE waits for row locks of the test's). A third start finishes; kcat also produces 200
# commands again (ignored) and one more debit per account. Verified: every balance, exactly one
# account-updated event id per debit (naming it as its cause), the expected low-balance events,
# the relayed batch produced again with the same ids and bytes, no dead letters, an empty outbox.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
source "$(dirname "${BASH_SOURCE[0]}")/kafka.bash"
sys_init
sys_create_db
command -v kcat >/dev/null || fail "kcat not found (scripts/install installs it)"

# -- helpers ------------------------------------------------------------------------------------

# wait_for SQL SECONDS [PID]: poll SQL (one boolean) through one psql session until it is true;
# fails after SECONDS, or when node PID dies.
wait_for() {
  local sql=$1 deadline=$((SECONDS + $2)) pid=${3:-} to from psql_pid answer
  coproc WATCH { exec psql -XtAq "$DEPOT_DB" 2>&1; }
  psql_pid=$WATCH_PID to=${WATCH[1]} from=${WATCH[0]}
  SYS_LIVE[$psql_pid]=psql
  while :; do
    printf '%s;\n' "$sql" >&"$to"
    read -r -t 10 -u "$from" answer || fail "no answer from psql while waiting for: $sql"
    [[ $answer == t ]] && break
    [[ $answer == f ]] || fail "waiting for '$sql': $answer"
    ((SECONDS < deadline)) || fail "still not true after $2 s: $sql"
    [[ -z $pid ]] || sys_alive "$pid" || fail "node ${SYS_LIVE[$pid]:-$pid} died by itself"
    sleep 0.005
  done
  exec {to}>&-
  wait "$psql_pid" 2>/dev/null || true
  unset "SYS_LIVE[$psql_pid]"
}

# A psql session of the test's own that holds locks: locker_start; locker SQL; locker_read (one
# line of answer into ANSWER); locker_stop rolls back what it holds and ends it.
locker_start() {
  coproc LOCKER { exec psql -XtAq -v ON_ERROR_STOP=1 "$DEPOT_DB" 2>&1; }
  LOCKER_SESSION=$LOCKER_PID LOCKER_IN=${LOCKER[1]} LOCKER_OUT=${LOCKER[0]}
  SYS_LIVE[$LOCKER_SESSION]=psql-locker
}
locker() { printf '%s\n' "$1" >&"$LOCKER_IN"; }
locker_read() {
  read -r -t 10 -u "$LOCKER_OUT" ANSWER || fail "no answer from the locking psql session"
}
locker_stop() {
  locker "ROLLBACK;"
  exec {LOCKER_IN}>&-
  wait "$LOCKER_SESSION" 2>/dev/null || true
  unset "SYS_LIVE[$LOCKER_SESSION]"
}

# wait_blocked PATTERN SECONDS PID: wait until a session of the test's database runs a statement
# like PATTERN and waits for a lock (node PID must not die); sets BLOCKED to its backend pid.
wait_blocked() {
  local deadline=$((SECONDS + $2))
  until BLOCKED=$(q "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND \
wait_event_type = 'Lock' AND query ILIKE '$1' LIMIT 1") && [[ -n $BLOCKED ]]; do
    ((SECONDS < deadline)) || fail "no statement like $1 waited for a lock within $2 s"
    sys_alive "$3" || fail "node ${SYS_LIVE[$3]:-$3} died by itself"
    sleep 0.05
  done
}

# end_backend PID: end the session of a killed node that waits for a lock of ours, as the node's
# death would once noticed; else it would go on (and commit) when we release the lock.
end_backend() {
  [[ $(q "SELECT pg_terminate_backend($1)") == t ]] || fail "cannot end backend $1"
}

# -- setup ----------------------------------------------------------------------------------------

N=2000 ACCOUNTS=20 BALANCE=1000000 REPEATS=200
THRESHOLD=$((BALANCE - 50)) # the 51st debit of an account on are low-balance events
SOURCE_URI=https://bank.example.test/depot
"$BANK" db apply >/dev/null || fail "db apply failed"
"$BANK" seed --accounts "$ACCOUNTS" --balance "$BALANCE" --threshold "$THRESHOLD" >/dev/null ||
  fail "seed failed"
start_mock
export DEPOT_KAFKA=$KAFKA DEPOT_SERVICE=bank DEPOT_SERVICE_URI=$SOURCE_URI
# A member killed with -9 stays in the consumer group until its session times out (45 s by
# default): the restarted node's consumer waits for that rebalance.
export DEPOT_KAFKA_PROPERTY=session.timeout.ms=6000

# commands FIRST COUNT: COUNT structured DebitAccount events, "key<TAB>value" lines, with ids
# (UUIDs, so that they are the envelope ids) numbered from FIRST; debit k takes 1 from acct-(k mod
# ACCOUNTS + 1).
commands() {
  awk -v first="$1" -v n="$2" -v accts="$ACCOUNTS" 'BEGIN {
    for (k = first; k < first + n; k++) { a = k % accts + 1
      printf "acct-%d\t{\"specversion\":\"1.0\",\"id\":\"00000000-0000-4000-8000-%012d\",", a, k
      printf "\"source\":\"urn:test:kill\",\"type\":\"bank.debit-account\",\"datacontenttype\":"
      printf "\"application/json\",\"data\":{\"account_id\":\"acct-%d\",\"amount\":1}}\n", a } }'
}
produce() { # FILE
  kcat -b "$KAFKA" -P -t bank.commands -K $'\t' -H content-type=application/cloudevents+json \
    -l "$1" 2>"$SYS_WORK/kcat.err" || fail "kcat -P failed: $(head -c 400 "$SYS_WORK/kcat.err")"
}
stored="SELECT count(*) FROM depot.received_ids"
handled="SELECT coalesce(sum($BALANCE - balance), 0) FROM accounts"

# -- kill 1: mid-consumption ----------------------------------------------------------------------

# The first N - 100 commands go to bank.commands now, the last 100 once the node stores the first
# ones. Before, a session of the test's own inserts their ids into received_ids, uncommitted: the
# listener's insert of the batch that holds them waits for that session. Killed then, the node has
# consumed records whose transaction never commits (and whose offsets it never committed).
commands 0 "$((N - 100))" >"$SYS_WORK/commands.tsv"
produce "$SYS_WORK/commands.tsv"
step "produced $((N - 100)) debit commands (distinct ids, amount 1, $ACCOUNTS accounts) to bank.commands"
commands "$((N - 100))" 100 >"$SYS_WORK/last100.tsv"
last_ids=$(sed 's/.*"id":"\([^"]*\)".*/\1/' "$SYS_WORK/last100.tsv" | paste -sd, -)
locker_start
locker "BEGIN;"
locker "INSERT INTO depot.received_ids (id, keep_until) SELECT unnest('{$last_ids}'::uuid[]), now() + interval '1 hour';"
locker "SELECT 'held';"
locker_read
[[ $ANSWER == held ]] || fail "the locking session: $ANSWER"
sys_start_node node1 --node-id 1
first=$SYS_PID
deadline=$((SECONDS + 30))
until (($(q "$stored") > 0)); do # (wait_for would start a second coprocess beside the locker's)
  ((SECONDS < deadline)) || fail "node 1 stored no command within 30 s"
  sys_alive "$first" || fail "node 1 died by itself"
  sleep 0.02
done
produce "$SYS_WORK/last100.tsv"
step "produced the last 100 commands"
wait_blocked '%INSERT INTO%received_ids%' 30 "$first"
listener_backend=$BLOCKED
# The relay's lock (key -1 of the schema's class), which node 1's relay holds.
relay_lock=$(q "SELECT classid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND \
objid = 4294967295 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = \
current_database())")
[[ $relay_lock =~ ^[0-9]+$ ]] || fail "node 1's relay holds no relay lock: '$relay_lock'"
sys_kill9 "$first"
end_backend "$listener_backend"
locker_stop
kill1_stored=$(q "$stored") kill1_handled=$(q "$handled")
step "kill 1: node 1 killed with -9 while storing a batch of consumed commands: $kill1_stored of $N stored before, $kill1_handled handled, $(q "SELECT count(*) FROM depot.outgoing") event(s) in the outbox"

# -- kill 2: during relay -------------------------------------------------------------------------

# The session takes the relay's advisory lock before the node restarts: the node handles every
# debit while its relay waits and the outbox fills. Then the session locks the first 100 outbox
# rows (FOR SHARE) and lets the lock go: the relay reads a batch that holds them, produces it to
# bank.events, and its DELETE after the delivery reports waits for the row locks. Killed then,
# the node has relayed a batch it had not removed yet: its successor produces it again.
locker_start
locker "SELECT pg_advisory_lock($relay_lock, -1);"
locker_read
sys_start_node node1-again --node-id 1
second=$SYS_PID
grep -q '^node 1 running' "$SYS_WORK/node1-again.out" || fail "restarted node is not node 1"
deadline=$((SECONDS + 30))
until (($(q "$handled") >= N)); do
  ((SECONDS < deadline)) || fail "node 1 (second run) handled $(q "$handled") of $N debits in 30 s"
  sys_alive "$second" || fail "node 1 (second run) died by itself"
  sleep 0.1
done
in_outbox=$(q "SELECT count(*) FROM depot.outgoing")
locker "BEGIN;"
locker "SELECT coalesce(string_agg(id::text, ','), '') FROM (SELECT id FROM depot.outgoing ORDER BY seq LIMIT 100 FOR SHARE) s;"
locker_read
IFS=, read -r -a locked_ids <<<"$ANSWER"
((${#locked_ids[@]} > 0)) || fail "the outbox is empty although the relay could not run"
locker "SELECT pg_advisory_unlock($relay_lock, -1);"
locker_read
[[ $ANSWER == t ]] || fail "the locking session did not hold the relay lock: $ANSWER"
step "all $N debits handled by node 1 (second run) while the relay waited: $in_outbox event(s) in the outbox; locked the first ${#locked_ids[@]} and let the relay go"
wait_blocked '%DELETE FROM%outgoing%' 15 "$second"
relay_backend=$BLOCKED
sys_kill9 "$second"
end_backend "$relay_backend"
locker_stop
relayed=$(kcat -b "$KAFKA" -C -t bank.events -o beginning -e -q -f 'x\n' | wc -l)
step "kill 2: node 1 killed with -9 while its relay waited to delete a delivered batch: $(q "SELECT count(*) FROM depot.outgoing") event(s) in the outbox, $relayed record(s) on bank.events"

# -- the third run finishes -----------------------------------------------------------------------

sys_start_node node1-third --node-id 1
third=$SYS_PID
# kcat produces again the first REPEATS commands (a producer retry): the node ignores them. Then
# one more debit per account: each comes after its account's repeats (one key, one partition),
# so once they are applied, the repeats were consumed.
commands 0 "$REPEATS" >"$SYS_WORK/repeats.tsv"
produce "$SYS_WORK/repeats.tsv"
commands "$N" "$ACCOUNTS" >"$SYS_WORK/last.tsv"
produce "$SYS_WORK/last.tsv"
TOTAL=$((N + ACCOUNTS)) PER_ACCOUNT=$(((N + ACCOUNTS) / ACCOUNTS))
step "produced $REPEATS repeated commands, then $ACCOUNTS new ones: $TOTAL debits to apply"
wait_for "SELECT ($handled) >= $TOTAL AND NOT EXISTS (SELECT FROM depot.outgoing) AND NOT EXISTS \
(SELECT FROM depot.incoming WHERE message_type IN ('bank.debit-account', 'bank.low-balance-detected'))" 40 "$third"
step "all debits handled and the outbox empty"

# -- verification ---------------------------------------------------------------------------------

check "debits applied (sum of what the balances lost)" "$(q "$handled")" "$TOTAL"
check "accounts whose balance is not $BALANCE - $PER_ACCOUNT" \
  "$(q "SELECT count(*) FROM accounts WHERE balance <> $BALANCE - $PER_ACCOUNT")" 0
check "envelopes left in the outbox" "$(q "SELECT count(*) FROM depot.outgoing")" 0
check "dead letters" "$(q "SELECT count(*) FROM depot.dead_letters")" 0
check "command ids received (repeats ignored)" "$(q "$stored")" "$TOTAL"
exp_low=0
for ((k = 1; k <= PER_ACCOUNT; k++)); do
  ((BALANCE - k > 0 && BALANCE - k < THRESHOLD)) && exp_low=$((exp_low + 1))
done
exp_low=$((exp_low * ACCOUNTS))
check "low-balance-detected handled by the node (account_events)" \
  "$(q "SELECT count(*) FROM account_events WHERE message_type = 'bank.low-balance-detected'")" "$exp_low"

load_topic bank.events ev
records=$(q "SELECT count(*) FROM ev")
distinct=$(q "SELECT count(DISTINCT headers->>'ce_id') FROM ev")
step "bank.events: $records record(s), $distinct distinct ce_id, $((records - distinct)) duplicate(s)"
upd="FROM ev WHERE headers->>'ce_type' = 'bank.account-updated'"
low="FROM ev WHERE headers->>'ce_type' = 'bank.low-balance-detected'"
check "distinct ce_id of account-updated events" "$(q "SELECT count(DISTINCT headers->>'ce_id') $upd")" "$TOTAL"
check "distinct ce_id of low-balance-detected events" "$(q "SELECT count(DISTINCT headers->>'ce_id') $low")" "$exp_low"
check "events of another type" "$(q "SELECT count(*) FROM ev WHERE headers->>'ce_type' NOT IN \
('bank.account-updated', 'bank.low-balance-detected') OR headers->>'ce_type' IS NULL")" 0
# Every debit caused exactly one event id of each kind it should cause: none lost, none twice.
commands 0 "$TOTAL" | sed 's/.*"id":"\([^"]*\)".*/\1/' | LC_ALL=C sort >"$SYS_WORK/command_ids"
q "SELECT DISTINCT headers->>'ce_causationid' $upd" | LC_ALL=C sort >"$SYS_WORK/caused_ids"
if cmp -s "$SYS_WORK/command_ids" "$SYS_WORK/caused_ids"; then
  step "ok: the account-updated events name each of the $TOTAL debits as their cause"
else
  bad "causes of account-updated events differ from the debits (debits < > causes): $(diff "$SYS_WORK/command_ids" "$SYS_WORK/caused_ids" | grep '^[<>]' | head -n 6 | tr '\n' ';')"
fi
check "debits with more than one account-updated event id" "$(q "SELECT count(*) FROM (SELECT 1 $upd \
GROUP BY headers->>'ce_causationid' HAVING count(DISTINCT headers->>'ce_id') > 1) s")" 0
check "debits with more than one low-balance-detected event id" "$(q "SELECT count(*) FROM (SELECT 1 $low \
GROUP BY headers->>'ce_causationid' HAVING count(DISTINCT headers->>'ce_id') > 1) s")" 0
# A duplicate is the same record again: same id, key, data and attributes.
check "event ids whose copies differ (key, data or headers)" "$(q "SELECT count(*) FROM (SELECT 1 \
FROM ev GROUP BY headers->>'ce_id' HAVING count(DISTINCT (key, payload, headers::text)) > 1) s")" 0
check "events with another ce_source than $SOURCE_URI" \
  "$(q "SELECT count(*) FROM ev WHERE headers->>'ce_source' IS DISTINCT FROM '$SOURCE_URI'")" 0
check "events whose key is not their account" \
  "$(q "SELECT count(*) FROM ev WHERE key IS DISTINCT FROM payload::jsonb->>'account_id' OR key IS \
DISTINCT FROM headers->>'ce_partitionkey'")" 0
# The batch the relay had delivered when it was killed went out again, under the same ids.
ids=$(printf "'%s'," "${locked_ids[@]}")
again=$(q "SELECT count(*) FROM (SELECT 1 FROM ev WHERE headers->>'ce_id' IN (${ids%,}) GROUP BY \
headers->>'ce_id' HAVING count(*) > 1) s")
if ((again == ${#locked_ids[@]})); then
  step "ok: the ${#locked_ids[@]} locked events (relayed, not removed at kill 2) are on bank.events twice, each under its id"
else
  bad "$again of the ${#locked_ids[@]} outbox rows locked at kill 2 are on bank.events more than once, expected all (relayed before the kill, again after)"
fi
sys_alive "$third" || fail "node 1 (third run) died"
sys_stop_node "$third"
sys_checked
step "PASS"

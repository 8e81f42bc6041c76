#!/usr/bin/env bash
# Hostile input: bodies nested far past 100 levels, strings with a NUL, non-positive amounts are
# refused by `bank send` (exit 1, one line, no envelope stored, each kept as a dead letter with
# its reason) and, written straight into the store,
# become dead letters after one attempt while the node keeps running and handles the good
# envelope beside them; out-of-range options and a bad schema name are usage errors (exit 2, one
# line); a node that would need more connections than the server has refuses to start (exit 1)
# and leaves no node row; describe shows a per-queue concurrency.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db
stored() { q "SELECT count(*) FROM depot.incoming"; }
nothing_stored() {
  local n
  n=$(stored)
  [[ $n == 0 ]] || bad "$1: $n envelope(s) stored, expected none"
}
balance() { q "SELECT balance FROM accounts WHERE id = '$1'"; }

"$BANK" db apply >/dev/null || fail "db apply failed"
"$BANK" seed --accounts 10 >/dev/null || fail "seed failed"
[[ $(balance acct-1) == 1000 ]] || fail "seed: acct-1 has $(balance acct-1), expected 1000"

# -- send refuses hostile bodies ----------------------------------------------------------------
deep=$SYS_WORK/deep.json
{
  printf '%s' '{"account_id":"acct-1","amount":1,"x":'
  head -c 200000 /dev/zero | tr '\0' '['
  head -c 200000 /dev/zero | tr '\0' ']'
  printf '}\n'
} >"$deep"
IN=$deep run 1 "send - of a body nested 200000 levels deep" "$BANK" send bank.debit-account - &&
  one_line "send deep body" && has "$ERR" "send deep body" 'nested deeper than 100 levels'
nothing_stored "send deep body"

run 1 "send a body with \\u0000 in a string" "$BANK" send bank.debit-account \
  '{"account_id":"acct-2\u0000evil","amount":7}' &&
  one_line "send NUL" && has "$ERR" "send NUL" 'NUL'
nothing_stored "send NUL"
[[ $(balance acct-2) == 1000 ]] || bad "send NUL: acct-2 has $(balance acct-2), expected 1000"

for amount in -9223372036854775808 0; do
  run 1 "send a debit of $amount" "$BANK" send bank.debit-account \
    "{\"account_id\":\"acct-3\",\"amount\":$amount}" &&
    one_line "send amount $amount" && has "$ERR" "send amount $amount" 'at least 1'
  nothing_stored "send amount $amount"
done

refusals=$(q "SELECT count(*) FROM depot.dead_letters")
[[ $refusals == 4 ]] ||
  bad "refused sends kept $refusals dead letter(s), expected 4: $(q "SELECT string_agg(left(exception_message, 50), ' | ') FROM depot.dead_letters")"
q "DELETE FROM depot.dead_letters" >/dev/null # what follows counts the node's

# -- option bounds: usage errors ----------------------------------------------------------------
# usage DESC PATTERN... -- CMD...: CMD exits 2 with one line on stderr matching every PATTERN.
usage() {
  local desc=$1 pats=()
  shift
  while [[ $1 != -- ]]; do pats+=("$1"); shift; done
  shift
  if run 2 "$desc" "$@"; then
    one_line "$desc"
    has "$ERR" "$desc" "${pats[@]}"
  fi
}
# A run that the bound does not stop would run a node: timeout ends it (exit 124, a mismatch).
usage "run --batch-size 2147483647" 'batch-size' '2147483647' -- \
  timeout 10 "$BANK" run --batch-size 2147483647
usage "describe --queue-concurrency bank.debit-account=abc" 'queue-concurrency' 'abc' -- \
  "$BANK" describe --queue-concurrency 'bank.debit-account=abc'
usage "describe --queue-concurrency bank.debit-account=-3" '-3' -- \
  "$BANK" describe --queue-concurrency 'bank.debit-account=-3'
usage "describe --concurrency 100000" 'concurrency' -- "$BANK" describe --concurrency 100000
usage "describe --schema '\"quoted\"'" 'lower-case identifier' -- \
  "$BANK" describe --schema '"quoted"'
usage "DEPOT_SCHEMA='\"quoted\"' describe" 'lower-case identifier' -- \
  env DEPOT_SCHEMA='"quoted"' "$BANK" describe

# -- describe shows a per-queue concurrency -----------------------------------------------------
if run 0 "describe --queue-concurrency bank.debit-account=2" "$BANK" describe \
  --queue-concurrency bank.debit-account=2; then
  # The queue line must be in the queues section, the option in the configuration section.
  awk '/^queues:/ { s = 1; next } /^[^ ]/ { s = 0 } s' "$OUT" >"$SYS_WORK/queues"
  awk '/^configuration:/ { s = 1; next } /^[^ ]/ { s = 0 } s' "$OUT" >"$SYS_WORK/config"
  has "$SYS_WORK/queues" "describe queues section" '^ +bank.debit-account +durable +workers 2 '
  has "$SYS_WORK/config" "describe configuration section" \
    '^ +queue-concurrency +bank.debit-account=2$'
fi

# -- too few server connections: the node refuses to start, and leaves no node row -------------
t0=$SECONDS
if run 1 "run --concurrency 1000 (server max_connections $(q 'SHOW max_connections'))" \
  timeout 30 "$BANK" run --concurrency 1000 --node-id 5; then
  tail -n 1 "$ERR" | grep -q 'max_connections' ||
    bad "run --concurrency 1000: last stderr line does not mention max_connections: $(tail -n 1 "$ERR" | head -c 300)"
  step "refused after $((SECONDS - t0)) s: $(tail -n 1 "$ERR" | head -c 200)"
fi
nodes=$(q "SELECT count(*) FROM depot.nodes")
[[ $nodes == 0 ]] || bad "run --concurrency 1000 left $nodes node row(s): $(q "SELECT string_agg(id::text, ',') FROM depot.nodes")"

# -- poison rows in the store: dead letters after one attempt, the node keeps running ------------
q "INSERT INTO depot.incoming (id, queue, message_type, body) SELECT gen_random_uuid(),
     'bank.debit-account', 'bank.debit-account', b FROM (VALUES
     ('{\"account_id\":\"acct-1\",\"amount\":1,\"x\":' || repeat('[', 1000000) || repeat(']', 1000000) || '}'),
     ('{\"account_id\":\"acct-2\\u0000evil\",\"amount\":7}'),
     ('{\"account_id\":\"acct-3\",\"amount\":-9223372036854775808}'),
     ('{\"account_id\":\"acct-4\",\"amount\":5}')) v(b)" >/dev/null
[[ $(q "SELECT count(*) FROM depot.incoming WHERE strpos(body, 'acct-2\\u0000evil') > 0") == 1 ]] ||
  fail "the NUL body was not stored as the six characters \\u0000: $(q "SELECT string_agg(left(body, 60), ' | ') FROM depot.incoming")"
step "4 envelopes written straight into depot.incoming (3 poison, 1 good)"

sys_start_node node1 --node-id 1
node=$SYS_PID
deadline=$((SECONDS + 30))
while :; do
  dead=$(q "SELECT count(*) FROM depot.dead_letters")
  acct4=$(balance acct-4)
  ((dead >= 3)) && [[ $acct4 == 995 ]] && break
  sys_alive "$node" || fail "node1 died while handling the poison envelopes ($dead dead letter(s))"
  ((SECONDS < deadline)) || break
  sleep 0.2
done
step "after $((SECONDS - deadline + 30)) s: $dead dead letter(s), acct-4 at $acct4"
[[ $dead == 3 ]] || bad "dead letters: $dead, expected 3"
sys_alive "$node" || fail "node1 died after handling the poison envelopes"

dl() { q "SELECT count(*) FROM depot.dead_letters WHERE $1"; }
[[ $(dl "exception_type = 'depot::decode_error' AND exception_message LIKE 'JSON nested deeper than 100 levels%'") == 1 ]] ||
  bad "no decode_error dead letter 'JSON nested deeper than 100 levels...'"
[[ $(dl "exception_message LIKE '%NUL%'") == 1 ]] || bad "no dead letter mentioning NUL"
[[ $(dl "exception_type = 'depot::validation_error' AND exception_message LIKE '%at least 1%'") == 1 ]] ||
  bad "no validation_error dead letter mentioning 'at least 1'"
[[ $(dl "attempts <> 1") == 0 ]] ||
  bad "dead letters after more than one attempt (or none): $(q "SELECT string_agg(attempts::text, ',') FROM depot.dead_letters")"
reasons=$(q "SELECT string_agg(exception_type || ' (' || attempts || '): ' || left(exception_message, 70), ' | ') FROM depot.dead_letters")
step "dead letters: $reasons"
for a in acct-1:1000 acct-2:1000 acct-3:1000 acct-4:995; do
  got=$(balance "${a%:*}")
  [[ $got == "${a#*:}" ]] || bad "${a%:*} has balance $got, expected ${a#*:}"
done
sys_stop_node "$node"

sys_checked
step "PASS"

#!/usr/bin/env bash
# Failures as an operator meets them, through the node binaries' CLI:
# - a job whose first two attempts fail succeeds on its third across a kill -9 and restart in
#   between: its retry schedule is in the store, not in the dead node;
# - a debit of an account that does not exist yet is retried by the bank's error policy, then
#   dead-lettered; an invalid debit is refused by `bank send` and kept as a dead letter; once the
#   account exists, `bank dead-letters replay --all` applies the debit exactly once, and a second
#   replay changes nothing;
# - dead-letters list --json / show / replay / purge, their refusals and exit codes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db
FLAKY=$DEPOT_BUILD/tests/system/flaky-node
balance() { q "SELECT balance FROM accounts WHERE id = '$1'"; }

# -- a retry schedule survives a restart ---------------------------------------------------------
"$FLAKY" db apply >/dev/null || fail "flaky db apply failed"
bank_binary=$BANK
BANK=$FLAKY # sys_start_node runs $BANK
sys_start_node flaky1 --node-id 1
node=$SYS_PID
"$FLAKY" send flaky.job '{"tag":"j1"}' >/dev/null || fail "send flaky.job failed"
scheduled() { q "SELECT count(*) FROM depot.incoming WHERE status = 'scheduled' AND attempts = 1 AND execution_time > now()"; }
for ((i = 0; i < 100; i++)); do
  [[ $(scheduled) == 1 ]] && break
  sleep 0.05
done
[[ $(scheduled) == 1 ]] || fail "the first failure did not schedule a retry: $(q "SELECT status || ' ' || attempts FROM depot.incoming")"
sys_kill9 "$node"
step "first attempt failed, retry scheduled in the store; node killed with -9"
sys_start_node flaky2 --node-id 1
node=$SYS_PID
for ((i = 0; i < 150; i++)); do
  [[ $(q "SELECT count(*) FROM flaky_done") == 1 ]] && break
  sleep 0.1
done
[[ $(q "SELECT count(*) FROM flaky_done") == 1 ]] || fail "the job was not done after the restart: $(q "SELECT count(*) FROM depot.dead_letters") dead letter(s)"
[[ $(q "SELECT attempts FROM flaky_done") == 2 ]] || fail "the job succeeded at attempt $(($(q "SELECT attempts FROM flaky_done") + 1)), expected 3"
grep -q 'flaky.job .* failed (attempt 2): std::runtime_error: attempt 2 of j1 fails; retrying at' "$SYS_WORK/flaky2.err" ||
  fail "the restarted node did not log the second failure: $(tail -n 3 "$SYS_WORK/flaky2.err")"
sys_stop_node "$node"
[[ $(q "SELECT count(*) FROM depot.incoming") == 0 ]] || fail "the job is still in the inbox"
step "third attempt succeeded on the restarted node; the job is done once"
BANK=$bank_binary
q "DROP SCHEMA depot CASCADE" >/dev/null

# -- the missing account: retried, dead-lettered, replayed once ---------------------------------
"$BANK" db apply >/dev/null || fail "db apply failed"
"$BANK" seed --accounts 5 >/dev/null || fail "seed failed"
run 0 "send a debit of acct-7, which does not exist" "$BANK" send bank.debit-account \
  '{"account_id":"acct-7","amount":5}'
run 1 "send a debit of 0" "$BANK" send bank.debit-account '{"account_id":"acct-1","amount":0}' &&
  one_line "send a debit of 0" && has "$ERR" "send a debit of 0" 'at least 1' 'kept as dead letter'
sys_start_node node1 --node-id 1
node=$SYS_PID
dead_of_missing() { q "SELECT count(*) FROM depot.dead_letters WHERE exception_type = 'bank::no_account'"; }
for ((i = 0; i < 100; i++)); do
  [[ $(dead_of_missing) == 1 ]] && break
  sleep 0.1
done
[[ $(dead_of_missing) == 1 ]] || fail "the debit of acct-7 was not dead-lettered: $(q "SELECT count(*) FROM depot.incoming") still in the inbox"
[[ $(q "SELECT attempts FROM depot.dead_letters WHERE exception_type = 'bank::no_account'") == 3 ]] ||
  bad "the debit of acct-7 was dead-lettered after $(q "SELECT attempts FROM depot.dead_letters WHERE exception_type = 'bank::no_account'") attempts, expected 3"
[[ $(grep -c 'no account acct-7; retrying at' "$SYS_WORK/node1.err") == 2 ]] ||
  bad "expected 2 logged retries of the debit of acct-7"
[[ $(balance acct-1) == 1000 ]] || bad "the refused debit changed acct-1: $(balance acct-1)"
step "the debit of acct-7 failed 3 times and is a dead letter; the debit of 0 was refused"

# -- list, show ---------------------------------------------------------------------------------
run 0 "dead-letters list" "$BANK" dead-letters list &&
  has "$OUT" "dead-letters list" 'bank::no_account: no account acct-7' \
    'depot::validation_error: bank.debit-account is invalid: amount: must be at least 1, not 0' '^2 dead letter\(s\)$'
run 0 "dead-letters list --json --exception bank::no_account" "$BANK" dead-letters list --json \
  --exception bank::no_account
if [[ $(wc -l <"$OUT") == 1 ]]; then
  line=$(cat "$OUT")
  for field in '"id":"' '"queue":"bank.debit-account"' '"message_type":"bank.debit-account"' \
    '"exception_type":"bank::no_account"' '"exception_message":"no account acct-7"' \
    '"attempts":3' '"failed_at":"20' '"body":"{\"account_id\":\"acct-7\",\"amount\":5}"'; do
    [[ $line == *"$field"* ]] || bad "dead-letters list --json lacks $field: $line"
  done
  id=$(sed -E 's/.*"id":"([^"]+)".*/\1/' <<<"$line")
else
  bad "dead-letters list --json --exception bank::no_account printed $(wc -l <"$OUT") lines, expected 1"
  id=none
fi
run 0 "dead-letters show $id" "$BANK" dead-letters show "$id" &&
  has "$OUT" "dead-letters show" "^id +$id\$" '^attempts +3$' '^body +\{"account_id":"acct-7","amount":5\}$'
run 1 "dead-letters show of an id that is no dead letter" "$BANK" dead-letters show \
  01a23864-fd35-7c30-ab4f-350501191dd0 && one_line "show unknown id" &&
  has "$ERR" "show unknown id" 'no dead letter 01a23864-fd35-7c30-ab4f-350501191dd0'
run 2 "dead-letters replay without ids, filter or --all" "$BANK" dead-letters replay &&
  one_line "replay without selection"
run 2 "dead-letters purge without ids, filter or --all" "$BANK" dead-letters purge &&
  one_line "purge without selection"
run 1 "dead-letters replay of an id that is no dead letter" "$BANK" dead-letters replay "$id" \
  01a23864-fd35-7c30-ab4f-350501191dd0 && one_line "replay unknown id"
[[ $(q "SELECT count(*) FROM depot.dead_letters") == 2 ]] || bad "a refused replay changed the dead letters"

# -- the account exists: replay --all applies the debit once -----------------------------------
"$BANK" seed --accounts 7 >/dev/null || fail "seed --accounts 7 failed"
run 0 "dead-letters replay --all" "$BANK" dead-letters replay --all &&
  has "$OUT" "replay --all" '^replayed 2 dead letter\(s\)$'
for ((i = 0; i < 100; i++)); do
  [[ $(balance acct-7) == 995 && $(q "SELECT count(*) FROM depot.incoming WHERE message_type = 'bank.debit-account'") == 0 ]] && break
  sleep 0.1
done
[[ $(balance acct-7) == 995 ]] || fail "after the replay acct-7 has $(balance acct-7), expected 995"
# The invalid debit was replayed too, and is a dead letter again at once: nothing else changed.
for ((i = 0; i < 50; i++)); do
  [[ $(q "SELECT count(*) FROM depot.dead_letters") == 1 ]] && break
  sleep 0.1
done
[[ $(q "SELECT exception_type FROM depot.dead_letters") == depot::validation_error ]] ||
  bad "after the replay the dead letters are: $(q "SELECT string_agg(exception_type, ',') FROM depot.dead_letters")"
step "replay --all: acct-7 debited once (995); the invalid debit is a dead letter again"
run 0 "a second dead-letters replay --all" "$BANK" dead-letters replay --all
sleep 1
[[ $(balance acct-7) == 995 ]] || bad "a second replay changed acct-7: $(balance acct-7)"
[[ $(balance acct-1) == 1000 ]] || bad "a replay changed acct-1: $(balance acct-1)"
[[ $(q "SELECT count(*) FROM account_events WHERE account_id = 'acct-7'") == 1 ]] ||
  bad "acct-7 has $(q "SELECT count(*) FROM account_events WHERE account_id = 'acct-7'") account events, expected 1"
sys_stop_node "$node"
has "$SYS_WORK/node1.out" "node stop line" '^node 1 stopped: handled [0-9]+, expired 0, retried 2, dead-lettered [0-9]+, discarded 0, deferred 0$'

# -- purge ----------------------------------------------------------------------------------------
run 0 "dead-letters purge --exception depot::validation_error" "$BANK" dead-letters purge \
  --exception depot::validation_error && has "$OUT" "purge" '^purged 1 dead letter\(s\)$'
[[ $(q "SELECT count(*) FROM depot.dead_letters") == 0 ]] || bad "purge left dead letters"
sys_checked
step "PASS"

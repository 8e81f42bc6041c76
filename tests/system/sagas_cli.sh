#!/usr/bin/env bash
# The sagas commands as an operator meets them, on the transfer node: list (--type, --status,
# --json), show (state, pending compensations and timeouts, steps), cancel of a running
# transfer whose credit is under way (both compensations run, last first: the credit is
# reversed, then the reservation released), and the refusals with their exit codes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
# lib.bash starts and checks $BANK: here the transfer node, which has the bank node's CLI.
BANK=$DEPOT_BUILD/samples/transfer/transfer
sys_init
sys_create_db
SAGAS=depot.saga_transfer
balance() { q "SELECT balance FROM accounts WHERE id = '$1'"; }
status() { q "SELECT status FROM $SAGAS WHERE id = '$1'"; }
wait_status() {
  local i
  for ((i = 0; i < 200; i++)); do
    [[ $(status "$1") == "$2" ]] && return 0
    sleep 0.05
  done
  fail "saga $1 is '$(status "$1")', not $2"
}

"$BANK" db apply >/dev/null || fail "db apply failed"
"$BANK" seed --accounts 3 --balance 100 --threshold 0 >/dev/null || fail "seed failed"
sys_start_node node1 --node-id 1
node=$SYS_PID

"$BANK" send transfer.start '{"transfer_id": "t-done", "from": "acct-1", "to": "acct-2", "amount": 10}' >/dev/null
"$BANK" send transfer.start '{"transfer_id": "t-nowhere", "from": "acct-1", "to": "acct-9", "amount": 5}' >/dev/null
wait_status t-done completed
wait_status t-nowhere compensated
step "one transfer completed, one to a missing account compensated"

# t-held: its target's row is locked by another session, so its credit waits, the saga running.
psql -XtAq "$DEPOT_DB" -c "BEGIN; SELECT balance FROM accounts WHERE id = 'acct-3' FOR UPDATE; SELECT pg_sleep(4); COMMIT" >/dev/null &
locker=$!
sleep 0.3
"$BANK" send transfer.start '{"transfer_id": "t-held", "from": "acct-1", "to": "acct-3", "amount": 7}' >/dev/null
wait_status t-held running
[[ $(balance acct-1) == 83 ]] || fail "acct-1 should hold 100 - 10 sent - 7 reserved = 83, holds $(balance acct-1)"

run 0 "sagas list" "$BANK" sagas list
has "$OUT" "list" '^type +id +status +age' '^transfer +t-done +completed ' \
  '^transfer +t-nowhere +compensated .*step transfer.credit-target failed: bank::no_account: no account acct-9' \
  '^transfer +t-held +running '
run 0 "sagas list --status running --json" "$BANK" sagas list --status running --json
[[ $(wc -l <"$OUT") == 1 ]] || bad "one running saga expected: $(cat "$OUT")"
has "$OUT" "list --json" '"type":"transfer"' '"id":"t-held"' '"status":"running"' '"pending_compensations":1' '"age_s":'
run 0 "sagas list --type transfer --status completed" "$BANK" sagas list --type transfer --status completed
has "$OUT" "list completed" 't-done'
grep -q 't-held\|t-nowhere' "$OUT" && bad "list --status completed shows other sagas: $(cat "$OUT")"
run 0 "sagas show" "$BANK" sagas show transfer t-held
has "$OUT" "show" '^status +running' '^state +\{.*"amount": ?7' 'transfer.release-reservation .*\(recorded by transfer.start\)' \
  'transfer.credit-timed-out +due .*\(ended by transfer.credit-target\)' ' start +transfer.start '

run 0 "sagas cancel" "$BANK" sagas cancel transfer t-held --reason "customer asked"
has "$OUT" "cancel" 'cancel sent'
wait "$locker" || true
wait_status t-held compensated
[[ $(balance acct-1) == 90 ]] || bad "acct-1 should have its 7 back (90), holds $(balance acct-1)"
[[ $(balance acct-3) == 100 ]] || bad "acct-3's credit should be reversed (100), holds $(balance acct-3)"
run 0 "sagas show after cancel" "$BANK" sagas show transfer t-held
has "$OUT" "show after cancel" '^status +compensated' '^reason +cancelled: customer asked' \
  ' step +transfer.credit-target ' ' cancel +transfer.cancel ' \
  ' compensation +transfer.reverse-credit ' ' compensation +transfer.release-reservation '
[[ $(grep -n 'reverse-credit\|release-reservation' "$OUT" | head -1) == *reverse-credit* ]] ||
  bad "the credit should be reversed before the reservation is released: $(cat "$OUT")"
step "cancelled mid-credit: credit reversed, then the reservation released"

run 1 "cancel of a finished saga" "$BANK" sagas cancel transfer t-done
has "$ERR" "cancel refused" 'is completed: only a running saga can be cancelled'
run 1 "show of an unknown saga" "$BANK" sagas show transfer t-unknown
has "$ERR" "show unknown" 'no saga transfer t-unknown'
run 2 "an unknown saga type" "$BANK" sagas show payment t-done
has "$ERR" "unknown type" "no saga type 'payment' \(this node has: transfer\)"
run 2 "an unknown status" "$BANK" sagas list --status done
run 0 "describe shows the saga" "$BANK" describe
has "$OUT" "describe" '^sagas:' 'transfer +state transfer.state in table depot.saga_transfer, kept 168h'

sys_stop_node "$node"
sys_checked
step PASS

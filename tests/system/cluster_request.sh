#!/usr/bin/env bash
# Queries across the cluster, three nodes. Node 1 serves only the bank's queries (the buffered
# queue bank.queries), node 2 the debits and their other cascades, node 3 the AccountUpdated
# events. `bank request` joins the cluster as a short-lived client and asks node 1, which
# answers from the accounts table; the query is never stored.
# Bad input, an unknown account (no reply: --timeout) and a cluster where nobody serves the
# query each exit 1 with one line.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db

N=300 ACCOUNTS=10 BALANCE=100000 THRESHOLD=10
sys_bank_setup

sys_start_node queries --node-id 1 --queues bank.queries
one=$SYS_PID
sys_start_node commands --node-id 2 --queues "$(
  "$BANK" describe | sed -n '/^queues:/,/^routes:/s/^  \(bank\.[a-z-]*\) .*/\1/p' |
    grep -Ev '^bank\.(queries|account-updated)$' | paste -sd,
)"
two=$SYS_PID
sys_start_node events --node-id 3 --queues bank.account-updated
three=$SYS_PID
sys_send_debits "$SYS_WORK/debits.jsonl"
sys_wait_sender
sys_wait_drained 60
sys_verify "$N"

expected=$(q "SELECT balance FROM accounts WHERE id = 'acct-7'")
run 0 "request answered by node 1" "$BANK" request bank.get-balance '{"account_id": "acct-7"}' &&
  has "$OUT" "the reply is bank.balance of acct-7" "^\{\"account_id\":\"acct-7\",\"balance\":$expected\}$"
[[ $(q "SELECT count(*) FROM depot.incoming WHERE queue = 'bank.queries'") == 0 ]] ||
  bad "a query was stored in incoming"

run 1 "a body that is not a get-balance" "$BANK" request bank.get-balance '{"account_id": 7}' &&
  one_line "bad body" && has "$ERR" "bad body" "account_id"
run 1 "a type nobody handles" "$BANK" request bank.no-such-thing '{}' && one_line "unknown type"

t0=$SECONDS
run 1 "an unknown account gets no reply" "$BANK" request bank.get-balance \
  '{"account_id": "acct-999"}' --timeout 1 &&
  one_line "no reply" && has "$ERR" "no reply" "no reply to bank.get-balance within 1000 ms"
((SECONDS - t0 <= 10)) || bad "request --timeout 1 took $((SECONDS - t0)) s"

sys_stop_node "$one"
handled=$(sed -n 's/^node 1 stopped: handled \([0-9]*\),.*/\1/p' "$SYS_WORK/queries.out")
[[ $handled == 1 ]] || bad "node 1 handled ${handled:-?} queries, expected 1"
run 1 "nobody serves the query" "$BANK" request bank.get-balance '{"account_id": "acct-7"}' &&
  one_line "nobody serves" &&
  has "$ERR" "nobody serves" "no running node serves bank.get-balance \(queue bank.queries\)"
sys_stop_node "$two"
sys_stop_node "$three"

sys_checked
step "PASS"

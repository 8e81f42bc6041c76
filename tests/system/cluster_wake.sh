#!/usr/bin/env bash
# Cross-node wake-ups over CAF: node 2 serves only the debits, node 1 only the AccountUpdated
# events the debit handler sends, and neither polls (polling-interval 1h). Each event node 2
# commits for a queue it does not serve wakes node 1 through its node actor right after the
# commit; every debit and every event is handled.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db

N=500 ACCOUNTS=10 BALANCE=100000 THRESHOLD=10
sys_bank_setup

export DEPOT_LOG=debug # the node actor logs each wake-up it takes from a peer
sys_start_node node1 --node-id 1 --polling-interval 1h --queues bank.account-updated
one=$SYS_PID
sys_start_node node2 --node-id 2 --polling-interval 1h --queues bank.debit-account
two=$SYS_PID
unset DEPOT_LOG
for ((i = 0; i < 100; i++)); do # both connected: the wake-ups can go over CAF
  [[ $("$BANK" cluster status --json | grep -c '"peers":\[[0-9]\]') == 2 ]] && break
  sleep 0.1
done
sys_send_debits "$SYS_WORK/debits.jsonl"
sys_wait_sender
sys_wait_drained 60
sys_verify "$N"
grep -q 'cluster: node 1 woken over CAF for bank.account-updated' "$SYS_WORK/node1.err" ||
  fail "node 1 was never woken over CAF: $(grep -c . "$SYS_WORK/node1.err") log lines"
step "node 1 woken over CAF $(grep -c 'woken over CAF' "$SYS_WORK/node1.err") time(s)"
sys_stop_node "$one"
sys_stop_node "$two"
handled1=$(sed -n 's/^node 1 stopped: handled \([0-9]*\),.*/\1/p' "$SYS_WORK/node1.out")
[[ $handled1 == "$N" ]] || fail "node 1 handled ${handled1:-?} events, expected $N"
step "PASS"

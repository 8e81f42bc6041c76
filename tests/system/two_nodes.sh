#!/usr/bin/env bash
# Two bank nodes on one database share the queues without handling anything twice; each reports
# how many envelopes it handled when it stops, which shows that both took part.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db

N=3000 ACCOUNTS=30 BALANCE=1000 THRESHOLD=200
sys_bank_setup

sys_start_node node1 --node-id 1
one=$SYS_PID
sys_start_node node2 --node-id 2
two=$SYS_PID
sys_send_debits "$SYS_WORK/debits.jsonl"
sys_wait_sender
sys_wait_drained 120
sys_verify "$N"

sys_alive "$one" || fail "node 1 died"
sys_alive "$two" || fail "node 2 died"
sys_stop_node "$one"
sys_stop_node "$two"
# Each node reports what it handled when it stops: both took part.
handled1=$(sed -n 's/^node 1 stopped: handled \([0-9]*\),.*/\1/p' "$SYS_WORK/node1.out")
handled2=$(sed -n 's/^node 2 stopped: handled \([0-9]*\),.*/\1/p' "$SYS_WORK/node2.out")
step "envelopes handled per node: node 1 ${handled1:-?}, node 2 ${handled2:-?}"
((${handled1:-0} > 0 && ${handled2:-0} > 0)) || fail "both nodes should have handled envelopes"
step "PASS"

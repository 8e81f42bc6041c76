#!/usr/bin/env bash
# Two bank nodes on one database share the queues without handling anything twice. A handled
# envelope keeps the owner that handled it (message_store::begin_handling), which shows that
# both nodes took part.
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

shares=$(q "SELECT string_agg(owner || ':' || n, ' ' ORDER BY owner) FROM (SELECT owner, count(*) n FROM depot.incoming WHERE status = 'handled' AND queue = 'bank.debit-account' GROUP BY 1) s")
all=$(q "SELECT string_agg(owner || ':' || n, ' ' ORDER BY owner) FROM (SELECT owner, count(*) n FROM depot.incoming WHERE status = 'handled' GROUP BY 1) s")
step "debits handled per node (node:count): $shares; all envelopes: $all"
[[ $(q "SELECT string_agg(DISTINCT owner::text, ',' ORDER BY owner::text) FROM depot.incoming WHERE status = 'handled'") == 1,2 ]] ||
  fail "handled envelopes should be owned by nodes 1 and 2 only, and by both: $all"
[[ $(q "SELECT count(DISTINCT owner) FROM depot.incoming WHERE status = 'handled' AND queue = 'bank.debit-account'") == 2 ]] ||
  fail "both nodes should have handled debits: $shares"
sys_alive "$one" || fail "node 1 died"
sys_alive "$two" || fail "node 2 died"
sys_stop_node "$one"
sys_stop_node "$two"
step "PASS"

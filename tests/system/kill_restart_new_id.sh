#!/usr/bin/env bash
# A bank node killed with -9 mid-run is replaced by a node with a new, automatic number: what the
# dead node was handling rolled back with its transactions and is handled by the new node, the
# durability agent removes the dead node's registration, and every debit is applied exactly once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db

N=1000 ACCOUNTS=20 BALANCE=1000 THRESHOLD=200
sys_bank_setup

sys_kill_node1_mid_run
step "killed node 1 with -9 after $KILLED_AFTER debits handled: $LEFT debits unhandled"
[[ $(q "SELECT count(*) FROM depot.nodes WHERE number = 1") == 1 ]] ||
  fail "the dead node 1 is not in depot.nodes"

sys_start_node node-auto --stale-after=2s
second=$SYS_PID
number=$(sed -n 's/^node \([0-9]*\) running.*/\1/p' "$SYS_WORK/node-auto.out")
[[ $number =~ ^[0-9]+$ && $number != 1 ]] || fail "the new node took number '$number' (expected a new one, not 1)"
step "the new node is number $number"
sys_wait_drained 120
sys_verify "$N"
wait_gone=$((SECONDS + 10))
until [[ $(q "SELECT count(*) FROM depot.nodes WHERE number = 1") == 0 ]]; do
  ((SECONDS < wait_gone)) || fail "the dead node 1 is still registered in depot.nodes"
  sleep 0.2
done
step "the dead node 1 was removed from depot.nodes"
sys_alive "$second" || fail "the new node died"
sys_stop_node "$second"
step "PASS"

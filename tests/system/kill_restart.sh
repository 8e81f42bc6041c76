#!/usr/bin/env bash
# The bank node killed with -9 mid-run loses nothing and applies every debit exactly once: what
# it was handling rolled back with its transactions, and it is restarted under the same node id.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db

N=5000 ACCOUNTS=50 BALANCE=1000 THRESHOLD=200
sys_bank_setup

sys_kill_node1_mid_run
step "killed node 1 with -9 after $KILLED_AFTER debits handled: $LEFT debits unhandled"

sys_start_node node1-again --node-id 1
second=$SYS_PID
grep -q '^node 1 running' "$SYS_WORK/node1-again.out" || fail "restarted node is not node 1"
sys_wait_drained 120
sys_verify "$N"
sys_alive "$second" || fail "restarted node died"
sys_stop_node "$second"
step "PASS"

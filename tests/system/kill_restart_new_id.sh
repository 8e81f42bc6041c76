#!/usr/bin/env bash
# A bank node killed with -9 mid-run is replaced by a node with a new, automatic number: the
# dead node's claims are recovered by the durability agent (not at start, as a restart under the
# same id would do), and every debit is still applied exactly once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db

N=1000 ACCOUNTS=20 BALANCE=1000 THRESHOLD=200
sys_bank_setup

sys_kill_node1_mid_run
# What node 1 had claimed but not finished: the new node must get these back from the agent.
q "CREATE TABLE sys_claimed AS SELECT id FROM depot.incoming WHERE status = 'incoming' AND owner = 1"
claimed=$(q "SELECT count(*) FROM sys_claimed")
step "killed node 1 with -9 after $KILLED_AFTER debits handled: $LEFT debits unhandled, $claimed envelopes claimed by node 1"
((claimed > 0)) || fail "node 1 held no claims when killed: nothing for the agent to recover"
[[ $(q "SELECT count(*) FROM depot.nodes WHERE number = 1") == 1 ]] ||
  fail "the dead node 1 is not in depot.nodes"

sys_start_node node-auto --stale-after=2s
second=$SYS_PID
number=$(sed -n 's/^node \([0-9]*\) running.*/\1/p' "$SYS_WORK/node-auto.out")
[[ $number =~ ^[0-9]+$ && $number != 1 ]] || fail "the new node took number '$number' (expected a new one, not 1)"
step "the new node is number $number"
sys_wait_drained 120
sys_verify "$N"

recovered=$(q "SELECT count(*) FROM sys_claimed c JOIN depot.incoming i USING (id) WHERE i.status IN ('handled', 'expired') AND i.owner = $number")
[[ $recovered == "$claimed" ]] ||
  fail "of the $claimed envelopes node 1 had claimed, $recovered were handled by node $number"
[[ $(q "SELECT count(*) FROM depot.nodes WHERE number = 1") == 0 ]] ||
  fail "the dead node 1 is still registered in depot.nodes"
step "the $claimed envelopes claimed by the dead node were recovered and handled by node $number"
sys_alive "$second" || fail "the new node died"
sys_stop_node "$second"
step "PASS"

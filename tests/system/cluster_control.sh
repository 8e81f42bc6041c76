#!/usr/bin/env bash
# Cluster control from the CLI. `queues pause` stops every node serving a queue from claiming,
# including a node that starts after the pause; `queues resume` lets them claim again at once.
# `cluster drain N` asks node N over CAF to finish what it holds and stop: it exits 0 and the
# other nodes handle the rest.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db

N=2000 ACCOUNTS=20 BALANCE=1000 THRESHOLD=200
sys_bank_setup

declare -A PID_OF
sys_start_node node1 --node-id 1
PID_OF[1]=$SYS_PID
sys_start_node node2 --node-id 2
PID_OF[2]=$SYS_PID

# -- pause: nothing is claimed, on the nodes running and on one that starts later ----------------
run 0 "queues pause bank.debit-account" "$BANK" queues pause bank.debit-account --reason maintenance
has "$OUT" "queues pause" '^queue bank.debit-account paused on every node until resumed$'
sys_start_node node3 --node-id 3
PID_OF[3]=$SYS_PID
sys_send_debits "$SYS_WORK/debits.jsonl"
sys_wait_sender
sleep 2
[[ $(sys_handled_debits) == 0 ]] || bad "$(sys_handled_debits) debits handled while the queue was paused"
run 0 "storage counts" "$BANK" storage counts
has "$OUT" "storage counts while paused" "^bank.debit-account +incoming +$N\$" \
  '^  bank.debit-account +paused until 9999-12-31T23:59:59.000000Z \(maintenance\)$'
run 2 "queues pause of an unknown queue" "$BANK" queues pause bank.nope
one_line "queues pause bank.nope"

# -- resume: the nodes claim again, without waiting for a poll -----------------------------------
run 0 "queues resume bank.debit-account" "$BANK" queues resume bank.debit-account
has "$OUT" "queues resume" '^queue bank.debit-account resumed$'
sys_wait_handled 1 "${PID_OF[1]}"
step "first debits handled after the resume"

# -- drain: node 3 finishes, stops and exits 0; the others go on ---------------------------------
run 0 "cluster drain 3" "$BANK" cluster drain 3
has "$OUT" "cluster drain" '^node 3 drained and stopped$'
rc=0
wait "${PID_OF[3]}" || rc=$?
unset "SYS_LIVE[${PID_OF[3]}]"
((rc == 0)) || bad "node 3 exited with code $rc after the drain (expected 0)"
grep -q '^node 3 stopped: handled' "$SYS_WORK/node3.out" || bad "node 3 did not report its stop"
run 1 "cluster drain of a node that is gone" "$BANK" cluster drain 3
one_line "cluster drain 3 again"
sys_wait_drained 120
sys_verify "$N"

sys_stop_node "${PID_OF[1]}"
sys_stop_node "${PID_OF[2]}"
sys_checked
step "PASS"

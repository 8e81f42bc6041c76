#!/usr/bin/env bash
# A node that loses its database keeps its state, retries and resumes, losing nothing: a private
# PostgreSQL of this test's own is stopped (pg_ctl -m fast) while the node handles debits, kept
# down 3 s and started again on the same port; the node must survive and finish every debit
# exactly once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
# shellcheck source=../../scripts/lib/pg.sh
source "$DEPOT_ROOT/scripts/lib/pg.sh"
depot_pg_start sysoutage off
sys_init
sys_create_db

N=2000 ACCOUNTS=50 BALANCE=1000 THRESHOLD=200
sys_bank_setup

sys_start_node node1 --node-id 1 --polling-interval=200ms
node=$SYS_PID
sys_send_debits "$SYS_WORK/debits.jsonl"
sys_wait_sender
sys_wait_handled $((N / 5)) "$node"
depot_pg_ctl -m fast -w stop >/dev/null 2>&1 || fail "pg_ctl stop failed"
((HANDLED < N)) || fail "all $N debits were handled before the database went down"
step "PostgreSQL stopped after $HANDLED of $N debits handled"
sleep 3
sys_alive "$node" || fail "the node exited while the database was down"
step "node still running after 3 s without its database"
depot_pg_ctl -w restart >"$SYS_WORK/pg_restart.log" 2>&1 ||
  fail "PostgreSQL did not start again: $(cat "$SYS_WORK/pg_restart.log")"
q "SELECT 1" >/dev/null || fail "PostgreSQL is not reachable at $DEPOT_DB after its restart"
step "PostgreSQL started again on the same port"
sys_alive "$node" || fail "the node exited when the database came back"

sys_wait_drained 120
sys_verify "$N"
sys_alive "$node" || fail "the node died"
warnings=$(grep -c 'warning' "$SYS_WORK/node1.err" || true)
step "node log: $warnings warning(s); $(grep -c 'connection is back' "$SYS_WORK/node1.err" || true) 'connection is back'"
sys_stop_node "$node"
depot_pg_stop
step "PASS"

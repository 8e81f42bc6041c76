#!/usr/bin/env bash
# No worker dies unnoticed: a node whose queue worker fails (its handler actor's constructor
# throws) logs the failure, restarts the worker with backoff, reports itself unhealthy through
# `health` while failures repeat, and serves the queue once the worker starts; a worker that
# keeps failing past --max-restarts makes `run` exit 1 with the reason, leaving no node row.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
BANK=$DEPOT_BUILD/tests/system/flaky-node # sys_start_node runs it like the bank node
sys_init
sys_create_db
"$BANK" db apply >/dev/null || fail "db apply failed"

# Sent and handled: a handled envelope leaves the inbox.
handled() { (($(q "SELECT count(*) FROM depot.incoming WHERE queue = 'flaky.ping'") == 0)) && echo 1 || echo 0; }

# -- two failures, then the worker starts -------------------------------------------------------
FLAKY_CONSTRUCTOR_FAILURES=2 sys_start_node node1 --node-id 1 --heartbeat-interval=100ms
node=$SYS_PID
"$BANK" send flaky.ping '{"tag":"a"}' >/dev/null || fail "send failed"
for ((i = 0; i < 100; i++)); do
  [[ $(handled) == 1 ]] && break
  sleep 0.1
done
[[ $(handled) == 1 ]] || fail "the ping was not handled after the worker's restarts"
sys_alive "$node" || fail "the node exited"
restarts=$(grep -c 'queue worker flaky.ping#1 failed .*cannot open the ledger; restarting in' \
  "$SYS_WORK/node1.err" || true)
((restarts == 2)) || fail "expected 2 logged failures with restarts, found $restarts"
step "2 worker failures logged and restarted; the ping was handled"
# The node writes its health with each heartbeat (every 100 ms here).
for ((i = 0; i < 50; i++)); do
  rc=0
  "$BANK" health >"$SYS_WORK/health.out" 2>&1 || rc=$?
  ((rc == 1)) && break
  sleep 0.1
done
((rc == 1)) || fail "health exited $rc while a worker failed twice within the window, expected 1"
grep -qE '^node 1: unhealthy: queue worker flaky.ping#1 failed 2 times within 1min: .*cannot open the ledger' \
  "$SYS_WORK/health.out" || fail "health does not report the failures: $(cat "$SYS_WORK/health.out")"
step "health: $(grep '^node 1' "$SYS_WORK/health.out")"
sys_stop_node "$node"

# -- a worker that never starts: the node fails and exits 1 --------------------------------------
rc=0
t0=$SECONDS
FLAKY_CONSTRUCTOR_FAILURES=1000 timeout 60 "$BANK" run --node-id 2 --max-restarts 3 \
  >"$SYS_WORK/node2.out" 2>"$SYS_WORK/node2.err" || rc=$?
((rc == 1)) || fail "run exited $rc with a worker that always fails, expected 1"
last=$(tail -n 1 "$SYS_WORK/node2.err")
[[ $last == "flaky: node failed: queue worker flaky.ping#1 failed 4 time(s) within 1min, more than max-restarts 3: std::runtime_error: cannot open the ledger" ]] ||
  fail "last line of stderr: $last"
step "run exited 1 after $((SECONDS - t0)) s: $last"
[[ $(q "SELECT count(*) FROM depot.nodes") == 0 ]] || fail "the failed node left its row behind"
step "PASS"

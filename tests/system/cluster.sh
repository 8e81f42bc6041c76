#!/usr/bin/env bash
# Three bank nodes on one database form a cluster over CAF: each publishes its node actor,
# connects to the other two and says so in `cluster status`, and exactly one leads (it holds the
# leader's advisory lock). A node whose cluster port is taken, or that names an unknown queue in
# --queues, refuses to start with a one-line reason. The leader killed with -9 under load: another
# node leads within stale-after, removes the dead node's row, and every debit is handled exactly
# once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db

N=3000 ACCOUNTS=30 BALANCE=1000 THRESHOLD=200
sys_bank_setup
STALE=3
OPTS=(--heartbeat-interval 200ms --stale-after "${STALE}s")

declare -A PID_OF
sys_start_node node1 --node-id 1 "${OPTS[@]}"
PID_OF[1]=$SYS_PID
sys_start_node node2 --node-id 2 "${OPTS[@]}"
PID_OF[2]=$SYS_PID
sys_start_node node3 --node-id 3 "${OPTS[@]}" --queues bank.debit-account,bank.account-updated
PID_OF[3]=$SYS_PID

STATUS="$SYS_WORK/status.json"
status() { "$BANK" cluster status --json >"$STATUS" 2>"$SYS_WORK/status.err"; }
leaders() { grep -c '"leader":true' "$STATUS" || true; }
# Polls `cluster status --json` until CONDITION (a command) holds, for SECONDS at most.
wait_status() {
  local desc=$1 seconds=$2 deadline
  shift 2
  deadline=$((${EPOCHREALTIME/[.,]/} + seconds * 1000000))
  while :; do
    status || fail "cluster status failed: $(cat "$SYS_WORK/status.err")"
    "$@" && return 0
    ((${EPOCHREALTIME/[.,]/} < deadline)) ||
      fail "$desc: not within ${seconds} s; cluster status --json: $(head -c 900 "$STATUS")"
    sleep 0.1
  done
}
all_connected() { # every node listed is connected to the N-1 others, and one leads
  local n=$1
  [[ $(grep -c . "$STATUS") == "$n" ]] || return 1
  [[ $(grep -cE "\"peers\":\[[0-9]+(,[0-9]+){$((n - 2))}\]" "$STATUS") == "$n" ]] || return 1
  [[ $(leaders) == 1 ]]
}

wait_status "three nodes connected to each other" 15 all_connected 3
step "cluster formed: $(tr '\n' ' ' <"$STATUS" | head -c 600)"
has "$STATUS" "cluster status --json" '"number":1,"uri":"127\.0\.0\.1:[0-9]+"' '"heartbeat":"' \
  '"number":3,.*"queues":\["bank.debit-account","bank.account-updated"\]'
run 0 "cluster status" "$BANK" cluster status
has "$OUT" "cluster status" '^node +leader +uri' '^3 +(yes)? +127\.0\.0\.1:[0-9]+ '
run 0 "describe --queues bank.debit-account" "$BANK" describe --queues bank.debit-account
has "$OUT" "describe --queues" '^  bank.debit-account +durable +workers 1 ' \
  '^  bank.account-updated +durable +workers 0 .*\(not served by this node\)$'

# -- a node that cannot listen, or names no queue of the app, does not start ---------------------
port1=$(sed -n 's/.*"number":1,"uri":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$STATUS")
if run 1 "run --cluster-port $port1 (node 1's)" timeout 30 "$BANK" run --node-id 4 \
  --cluster-port "$port1"; then
  tail -n 1 "$ERR" | grep -q -- '--cluster-port' ||
    bad "port taken: last stderr line does not name --cluster-port: $(tail -n 1 "$ERR")"
fi
if run 1 "run --queues bank.nope" timeout 30 "$BANK" run --node-id 4 --queues bank.nope; then
  tail -n 1 "$ERR" | grep -q -- "--queues names queue 'bank.nope'" ||
    bad "unknown queue: last stderr line: $(tail -n 1 "$ERR")"
fi
[[ $(q "SELECT count(*) FROM depot.nodes") == 3 ]] || bad "a node that did not start left its row"

# -- the leader dies under load: another node leads within stale-after ---------------------------
leader=$(sed -n 's/.*"number":\([0-9]*\),.*"leader":true.*/\1/p' "$STATUS")
[[ -n $leader ]] || fail "no leader in: $(cat "$STATUS")"
sys_send_debits "$SYS_WORK/debits.jsonl"
sys_kill_mid_run "${PID_OF[$leader]}" "$N"
killed_at=${EPOCHREALTIME/[.,]/}
step "killed the leader, node $leader, with -9 after $KILLED_AFTER debits"
new_leader() { [[ $(grep -c '"leader":true' "$STATUS") == 1 ]] && ! grep -q "\"number\":$leader,.*\"leader\":true" "$STATUS"; }
wait_status "another node leads" "$STALE" new_leader
step "node $(sed -n 's/.*"number":\([0-9]*\),.*"leader":true.*/\1/p' "$STATUS") leads $(((${EPOCHREALTIME/[.,]/} - killed_at) / 1000)) ms after the kill"
wait_status "the dead leader's row removed, the other two connected" 15 all_connected 2
sys_wait_sender
sys_wait_drained 120
sys_verify "$N"

for n in 1 2 3; do
  [[ $n == "$leader" ]] || sys_stop_node "${PID_OF[$n]}"
done
sys_checked
step "PASS"

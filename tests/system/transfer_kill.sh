#!/usr/bin/env bash
# The transfer saga survives kill -9: the transfer node is killed three times mid-batch and
# restarted under the same node id. Every transfer still ends as planned (completed, or
# compensated when its target or source is missing or its source lacks the money), each
# balance is exactly what the completed transfers imply, and no money is created or lost.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
# lib.bash starts and checks $BANK: here the transfer node, which has the bank node's CLI.
BANK=$DEPOT_BUILD/samples/transfer/transfer
sys_init
sys_create_db

N=1500 ACCOUNTS=30 BALANCE=1000
SAGAS=depot.saga_transfer
"$BANK" db apply >/dev/null || fail "db apply failed"
"$BANK" seed --accounts "$ACCOUNTS" --balance "$BALANCE" --threshold 0 >/dev/null ||
  fail "seed failed"

# Transfer k goes from acct-(k mod A + 1) to another seeded account with a small amount, except
# every tenth k ending in 3 (its target does not exist), 6 (its source lacks the money: more
# than all there is) or 9 (its source does not exist). $SYS_WORK/transfers.jsonl holds them,
# $SYS_WORK/expected_status each id's status and $SYS_WORK/expected each account's balance.
awk -v n="$N" -v accts="$ACCOUNTS" -v balance="$BALANCE" -v work="$SYS_WORK" '
  BEGIN {
    for (a = 1; a <= accts; a++) b[a] = balance
    for (k = 0; k < n; k++) {
      s = k % accts; t = (s + 1 + int(k / accts) % (accts - 1)) % accts
      from = "acct-" (s + 1); to = "acct-" (t + 1); amount = 1 + (int(k / accts) * 7 + s) % 15; status = "compensated"
      if (k % 10 == 3) to = "acct-" (accts + 1 + k)
      else if (k % 10 == 6) amount = accts * balance + 1
      else if (k % 10 == 9) from = "acct-" (accts + 1 + k)
      else { b[s + 1] -= amount; b[t + 1] += amount; status = "completed" }
      # Whether a source finds its money must not depend on the order transfers run in.
      if (k % 10 != 6 && k % 10 != 9 && (reserved[s + 1] += amount) > balance) {
        print "acct-" (s + 1) " may have more reserved than its balance" > "/dev/stderr"; exit 1
      }
      printf "{\"transfer_id\":\"t-%d\",\"from\":\"%s\",\"to\":\"%s\",\"amount\":%d}\n", k + 1, from, to, amount > work "/transfers.jsonl"
      print "t-" (k + 1) " " status > work "/expected_status"
    }
    for (a = 1; a <= accts; a++) print "acct-" a " " b[a] > work "/expected"
  }' || fail "the planned transfers do not fit the balances"
sort -o "$SYS_WORK/expected" "$SYS_WORK/expected"
sort -o "$SYS_WORK/expected_status" "$SYS_WORK/expected_status"
completing=$(grep -c ' completed$' "$SYS_WORK/expected_status")
step "planned $N transfers over $ACCOUNTS accounts: $completing to complete, $((N - completing)) to compensate"

"$BANK" send transfer.start - <"$SYS_WORK/transfers.jsonl" >"$SYS_WORK/send.out" 2>"$SYS_WORK/send.err" ||
  fail "transfer send failed: $(cat "$SYS_WORK/send.err")"
step "$(tail -n 1 "$SYS_WORK/send.out")"

finished() { q "SELECT count(*) FROM $SAGAS WHERE status IN ('completed', 'compensated')"; }
# Progress from 0 to 2N: transfers started (their saga row exists) plus transfers finished.
progress() {
  q "SELECT count(*) + count(*) FILTER (WHERE status IN ('completed', 'compensated')) FROM $SAGAS"
}

# wait_progress MIN PID: wait (30 s at most) until progress reaches MIN while node PID runs.
wait_progress() {
  local min=$1 pid=$2 deadline=$((SECONDS + 30)) now
  while :; do
    now=$(progress)
    ((now < min)) || break
    ((SECONDS < deadline)) || fail "progress only $now of $((2 * N)) after 30 s (waiting for $min)"
    sys_alive "$pid" || fail "node ${SYS_LIVE[$pid]:-$pid} died by itself"
    sleep 0.02
  done
}

# Kills while starts reserve money, while credits run, and while they are confirmed.
sys_start_node node1 --node-id 1
for kill in 1 2 3; do
  wait_progress $((2 * N * (kill * 25 - 5) / 100)) "$SYS_PID"
  sys_kill9 "$SYS_PID"
  done_then=$(finished)
  ((done_then < N)) || fail "all $N transfers finished before kill $kill: it was not mid-batch"
  step "kill $kill: node 1 killed with -9; $(q "SELECT count(*) FROM $SAGAS") of $N transfers started, $done_then finished"
  sys_start_node "node1-again-$kill" --node-id 1
  grep -q '^node 1 running' "$SYS_WORK/node1-again-$kill.out" || fail "restarted node is not node 1"
done
last=$SYS_PID

# Done when every transfer finished and nothing is left to handle on the saga's queue (a
# credit's timeout, 30 s out, is cancelled when the credit is handled).
deadline=$((SECONDS + 60))
until (($(finished) == N)) &&
  (($(q "SELECT count(*) FROM depot.incoming WHERE queue = 'transfer'") == 0)); do
  ((SECONDS < deadline)) ||
    fail "after 60 s: $(finished) of $N transfers finished; $(q "SELECT count(*) FROM depot.incoming WHERE queue = 'transfer'") envelope(s) left on queue transfer"
  sys_alive "$last" || fail "the restarted node died"
  sleep 0.2
done
step "every transfer finished, nothing left on queue transfer"

errors=()
check() { # WHAT GOT WANT
  if [[ $2 != "$3" ]]; then errors+=("$1: $2, expected $3"); fi
}
q "SELECT id || ' ' || status FROM $SAGAS" | sort >"$SYS_WORK/actual_status"
diff -q "$SYS_WORK/expected_status" "$SYS_WORK/actual_status" >/dev/null ||
  errors+=("transfers not as planned (expected < > actual): $(diff "$SYS_WORK/expected_status" "$SYS_WORK/actual_status" | grep '^[<>]' | head -n 6 | tr '\n' ';')")
q "SELECT id || ' ' || balance FROM accounts" | sort >"$SYS_WORK/actual"
diff -q "$SYS_WORK/expected" "$SYS_WORK/actual" >/dev/null ||
  errors+=("balances differ (expected < > actual): $(diff "$SYS_WORK/expected" "$SYS_WORK/actual" | grep '^[<>]' | head -n 6 | tr '\n' ';')")
# The balances the completed transfers in the saga table imply, whatever was planned.
check "accounts off what the completed transfers imply" "$(q "
  WITH moved AS (
    SELECT state->>'from' AS id, -(state->>'amount')::bigint AS amount FROM $SAGAS WHERE status = 'completed'
    UNION ALL SELECT state->>'to', (state->>'amount')::bigint FROM $SAGAS WHERE status = 'completed')
  SELECT count(*) FROM accounts a LEFT JOIN (SELECT id, sum(amount) AS net FROM moved GROUP BY id) m USING (id)
  WHERE a.balance <> $BALANCE + coalesce(m.net, 0)")" 0
check "total balance" "$(q "SELECT sum(balance) FROM accounts")" "$((ACCOUNTS * BALANCE))"
check "accounts" "$(q "SELECT count(*) FROM accounts")" "$ACCOUNTS"
check "sagas running, compensating or stuck" "$(q "SELECT count(*) FROM $SAGAS WHERE status NOT IN ('completed', 'compensated')")" 0
check "compensations left to run" "$(q "SELECT count(*) FROM $SAGAS WHERE status = 'compensated' AND jsonb_array_length(compensations) > 0")" 0
check "failed credits compensated" "$(q "SELECT count(*) FROM $SAGAS WHERE reason LIKE 'step transfer.credit-target failed%'")" "$((N / 10))"
check "dead letters" "$(q "SELECT count(*) FROM depot.dead_letters")" 0
if ((${#errors[@]})); then
  for e in "${errors[@]}"; do step "MISMATCH $e"; done
  fail "${#errors[@]} check(s) failed (first: ${errors[0]})"
fi
step "verified: $N transfers as planned after 3 kills ($completing completed, $((N - completing)) compensated); $ACCOUNTS balances exact, total $((ACCOUNTS * BALANCE)) conserved; no dead letters"
sys_stop_node "$last"
step "PASS"

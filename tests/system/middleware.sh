#!/usr/bin/env bash
# The middleware pipeline as an operator meets it, through a node binary's CLI (the flaky node's
# flaky.order queue: tracing, a handling log, authorization of principal "clerk", 2 orders per
# second per customer):
# - describe shows the effective chain of each handler, the rate limit included;
# - an order sent with `send --headers principal=guest` is a dead letter (depot::not_authorized)
#   with the reason, never retried; the clerk's orders are handled;
# - a burst of 6 orders of one customer is rate limited: 2 at once, 4 deferred and handled later,
#   each exactly once; the stop line counts them;
# - a traceparent given at the send is continued: the span log line names its trace id and
#   parent; every log line of a handling is one line.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db
BANK=$DEPOT_BUILD/tests/system/flaky-node # sys_start_node runs $BANK
"$BANK" db apply >/dev/null || fail "flaky db apply failed"

run 0 "describe" "$BANK" describe &&
  has "$OUT" "describe" \
    '^  flaky.order / flaky.order: tracing \(100\) > logging \(200\) > authorization \(300\) > rate limit 2 per 1000ms per key \(500\) > handler$' \
    '^  flaky.job / flaky.job: tracing \(100\) > logging \(200\) > handler$' \
    '^  flaky.order / flaky.order +opens when 50% of at least 5 handlings within 10000ms fail; pauses 5000ms, then probes; defers its envelopes while open$'

sys_start_node flaky1 --node-id 1
node=$SYS_PID
trace=4bf92f3577b34da6a3ce929d0e0e4736
run 0 "send as clerk, with a traceparent" "$BANK" send flaky.order '{"id":"o-1","customer":"c-1"}' \
  --headers "principal=clerk,traceparent=00-$trace-00f067aa0ba902b7-01"
run 0 "send as guest" "$BANK" send flaky.order '{"id":"o-2","customer":"c-1"}' --headers principal=guest
run 2 "send with a malformed --headers" "$BANK" send flaky.order '{"id":"o-3","customer":"c-1"}' \
  --headers principal
for ((i = 0; i < 100; i++)); do
  [[ $(q "SELECT count(*) FROM flaky_orders") == 1 && $(q "SELECT count(*) FROM depot.dead_letters") == 1 ]] && break
  sleep 0.1
done
[[ $(q "SELECT string_agg(id, ',') FROM flaky_orders") == o-1 ]] ||
  fail "orders handled: $(q "SELECT string_agg(id, ',') FROM flaky_orders"), expected o-1"
[[ $(q "SELECT exception_type || ' ' || attempts FROM depot.dead_letters") == 'depot::not_authorized 1' ]] ||
  fail "dead letters: $(q "SELECT exception_type || ' ' || attempts FROM depot.dead_letters")"
run 0 "dead-letters list" "$BANK" dead-letters list &&
  has "$OUT" "dead-letters list" "depot::not_authorized: flaky.order .* refused: principal 'guest' may not order"
step "the guest's order is a dead letter after 1 attempt; the clerk's is handled"

has "$SYS_WORK/flaky1.err" "span log" \
  "span trace_id=$trace span_id=[0-9a-f]{16} parent_span_id=00f067aa0ba902b7 name=flaky.order queue=flaky.order envelope_id=[0-9a-f-]{36} duration_us=[0-9]+ status=ok" \
  'handling type=flaky.order id=[0-9a-f-]{36} queue=flaky.order attempt=1 duration_us=[0-9]+ outcome=handled' \
  'handling type=flaky.order id=[0-9a-f-]{36} queue=flaky.order attempt=1 duration_us=[0-9]+ outcome=failed error="depot::not_authorized: '

# -- a burst of one customer is spread by the rate limit -----------------------------------------
IN=$SYS_WORK/burst
for i in 1 2 3 4 5 6; do printf '{"id":"b-%s","customer":"c-2"}\n' "$i"; done >"$IN"
run 0 "send a burst of 6 orders of c-2" "$BANK" send flaky.order - --headers principal=clerk
IN=/dev/null
for ((i = 0; i < 100; i++)); do
  [[ $(q "SELECT count(*) FROM flaky_orders WHERE customer = 'c-2'") == 6 ]] && break
  sleep 0.1
done
[[ $(q "SELECT count(*) FROM flaky_orders WHERE customer = 'c-2'") == 6 ]] ||
  fail "$(q "SELECT count(*) FROM flaky_orders WHERE customer = 'c-2'") of 6 orders of c-2 handled in 10 s"
spread=$(q "SELECT (extract(epoch FROM max(done_at) - min(done_at)) * 1000)::bigint FROM flaky_orders WHERE customer = 'c-2'")
((spread >= 1800)) || bad "6 orders at 2 per second were handled within $spread ms (expected at least 1800)"
[[ $(q "SELECT count(*) FROM depot.incoming") == 0 ]] || bad "envelopes left in the inbox"
grep -q 'outcome=deferred until=' "$SYS_WORK/flaky1.err" || bad "no deferral in the handling log"
step "6 orders of c-2 handled once each over $spread ms"
sys_stop_node "$node"
has "$SYS_WORK/flaky1.out" "node stop line" \
  '^node 1 stopped: handled 7, expired 0, retried 0, dead-lettered 1, discarded 0, deferred 4$'
grep -v '^\[depot\] ' "$SYS_WORK/flaky1.err" | grep -q . && bad "a log line of the node is not one line: $(grep -v '^\[depot\] ' "$SYS_WORK/flaky1.err" | head -n 2)"
sys_checked
step "PASS"

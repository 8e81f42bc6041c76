#!/usr/bin/env bash
# The bank sample's self-verifying demo as a test: `bank demo` resets the sample, sends debits
# through a node and exits 0 only when every balance and cascade is exact.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db
step "bank demo: 2,000 debits over 50 accounts"
out=$("$BANK" demo --accounts 50 --messages 2000 2>&1) || { echo "$out" >&2; fail "bank demo failed"; }
echo "$out" | tail -n 3 >&2
grep -q '^verified: 2000 debits, 50 balances exact, cascades exact$' <<<"$out" ||
  fail "bank demo did not verify its effects"

step "bank demo with embedded Kafka: part of the debits in through bank.commands, events out"
out=$(DEPOT_KAFKA=embedded "$BANK" demo --accounts 50 --messages 2000 2>&1) ||
  { echo "$out" >&2; fail "bank demo with Kafka failed"; }
echo "$out" | tail -n 1 >&2
grep -q '^verified: 2000 debits, 50 balances exact, cascades exact$' <<<"$out" ||
  fail "bank demo with Kafka did not verify its effects"
grep -q '^verified: kafka round trip: 200 debits in through bank.commands' <<<"$out" ||
  fail "bank demo did not verify its Kafka round trip"

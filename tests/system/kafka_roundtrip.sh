#!/usr/bin/env bash
# The bank over Kafka, seen only through kcat against `bank kafka mock` (its own process): debits
# produced as CloudEvents in both modes reach the accounts once each (a repeated id, in either
# mode and whatever its body, is ignored; the same id from another source is not a repeat); every
# event on bank.events is a well-formed binary CloudEvent (each attribute checked) caused by the
# debit it names, in order per account, and the events are exactly what the balances imply; a
# record that is no valid DebitAccount event becomes one dead letter naming what is wrong, kept
# raw, never replayed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
source "$(dirname "${BASH_SOURCE[0]}")/kafka.bash"
sys_init
sys_create_db
command -v kcat >/dev/null || fail "kcat not found (scripts/install installs it)"

# -- helpers ------------------------------------------------------------------------------------

# cloudevents::name_based_id SPACE ID: the envelope id of an event whose id is not a UUID (and
# of a record that is no event: SPACE kafka, ID topic/partition/offset). FNV-1a 64 of
# "SPACE\nID" from two bases, as a version-8 UUID.
name_based_id() {
  local s="$1"$'\n'"$2" hi=-3750763034362895579 lo=0x6c62272e07bb0142 i c
  for ((i = 0; i < ${#s}; i++)); do
    printf -v c '%d' "'${s:i:1}"
    hi=$(((hi ^ c) * 1099511628211)) lo=$(((lo ^ c) * 1099511628211))
  done
  hi=$(((hi & ~0xf000) | 0x8000)) lo=$(((lo & 0x3fffffffffffffff) | (1 << 63)))
  printf '%08x-%04x-%04x-%04x-%012x\n' $(((hi >> 32) & 0xffffffff)) $(((hi >> 16) & 0xffff)) \
    $((hi & 0xffff)) $(((lo >> 48) & 0xffff)) $((lo & 0xffffffffffff))
}

# -- setup ----------------------------------------------------------------------------------------

BALANCE=100 THRESHOLD=40
"$BANK" db apply >/dev/null || fail "db apply failed"
"$BANK" seed --accounts 6 --balance "$BALANCE" --threshold "$THRESHOLD" >/dev/null ||
  fail "seed failed"
started_at=$(q "SELECT now()")
start_mock
export DEPOT_KAFKA=$KAFKA DEPOT_SERVICE=bank
sys_start_node node1 --node-id 1
node=$SYS_PID

# -- commands -------------------------------------------------------------------------------------

# MODE|ID|SOURCE|ACCOUNT|AMOUNT|EXTRA: b binary, s structured. Records of one account share a key,
# hence a partition and their order; a repeat comes before a later debit of its account, so that
# the later debit being applied proves the repeat was consumed.
TRACE=4bf92f3577b34da6a3ce929d0e0e4736 PARENT=00f067aa0ba902b7
commands=(
  "b|cmd-a1-1|urn:test|acct-1|30|"
  "b|cmd-a1-2|urn:test|acct-1|40|-H ce_correlationid=corr-42 -H ce_traceparent=00-$TRACE-$PARENT-01"
  "b|cmd-a1-2|urn:test|acct-1|40|"                                   # repeat, same mode
  "s|cmd-a1-3|urn:test|acct-1|50|\"correlationid\":\"corr-77\","
  "s|cmd-a2-1|urn:test|acct-2|10|"
  "s|cmd-a2-1|urn:test|acct-2|99|"                                   # repeat, other body
  "b|cmd-a2-2|urn:test|acct-2|90|"                                   # balance 0: no cascade
  "b|6F1C2E9A-0B3D-4C5E-8F70-112233445566|urn:test|acct-3|61|"
  "s|6f1c2e9a-0b3d-4c5e-8f70-112233445566|urn:test|acct-3|61|"       # repeat: UUIDs ignore case
  "s|cmd-a3-2|urn:test|acct-3|1|"
  "s|cmd-a1-1|urn:test:other|acct-4|101|"                            # other source: no repeat
  "b|cmd-x|urn:test|acct-6|5|"
  "s|cmd-x|urn:test|acct-6|5|"                                       # repeat, other mode
  "b|cmd-a6-2|urn:test|acct-6|5|"
)

# What they should do: the first command of each envelope id is applied, in order per account.
declare -A balance_of=() seen=() correlation_of=() trace_of=()
for ((a = 1; a <= 6; a++)); do balance_of[acct-$a]=$BALANCE; done
: >"$SYS_WORK/expected_events"
applied=0 repeats=0
for c in "${commands[@]}"; do
  IFS='|' read -r mode id source account amount extra <<<"$c"
  if [[ $id =~ ^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$ ]]; then
    eid=${id,,}
  else
    eid=$(name_based_id "$source" "$id")
  fi
  if [[ -n ${seen[$eid]:-} ]]; then
    repeats=$((repeats + 1))
    continue
  fi
  seen[$eid]=1 applied=$((applied + 1))
  b=$((balance_of[$account] - amount))
  balance_of[$account]=$b
  correlation_of[$eid]=$eid
  [[ $extra =~ correlationid[=\":]+([a-z0-9-]+) ]] && correlation_of[$eid]=${BASH_REMATCH[1]}
  [[ $extra =~ traceparent=00-([0-9a-f]{32}) ]] && trace_of[$eid]=${BASH_REMATCH[1]}
  if ((b > 0 && b < THRESHOLD)); then
    echo "$eid bank.low-balance-detected $account $b" >>"$SYS_WORK/expected_events"
  elif ((b < 0)); then
    echo "$eid bank.account-overdrawn $account $b" >>"$SYS_WORK/expected_events"
  fi
  echo "$eid bank.account-updated $account $b" >>"$SYS_WORK/expected_events"
done
LC_ALL=C sort -o "$SYS_WORK/expected_events" "$SYS_WORK/expected_events"
exp_low=$(grep -c ' bank.low-balance-detected ' "$SYS_WORK/expected_events" || true)
exp_over=$(grep -c ' bank.account-overdrawn ' "$SYS_WORK/expected_events" || true)
exp_upd=$(grep -c ' bank.account-updated ' "$SYS_WORK/expected_events" || true)
((exp_low > 0 && exp_over > 0)) || fail "the commands should cascade both ways (test bug)"
step "${#commands[@]} commands: $applied to apply, $repeats repeats; expected events: $exp_upd updated, $exp_low low-balance, $exp_over overdrawn"

produce() { # KEY KCAT-ARGS... < value
  local key=$1
  shift
  kcat -b "$KAFKA" -P -t bank.commands -k "$key" "$@" 2>"$SYS_WORK/kcat.err" ||
    fail "kcat -P failed: $(head -c 400 "$SYS_WORK/kcat.err")"
}
for c in "${commands[@]}"; do
  IFS='|' read -r mode id source account amount extra <<<"$c"
  data="{\"account_id\":\"$account\",\"amount\":$amount}"
  if [[ $mode == b ]]; then
    # shellcheck disable=SC2086 # EXTRA is more -H options
    produce "$account" -H ce_specversion=1.0 -H "ce_id=$id" -H "ce_source=$source" \
      -H ce_type=bank.debit-account -H content-type=application/json $extra <<<"$data"
  else
    produce "$account" -H content-type=application/cloudevents+json <<<"{\"specversion\":\"1.0\",\"id\":\"$id\",\"source\":\"$source\",\"type\":\"bank.debit-account\",\"time\":\"2024-05-01T12:00:00Z\",$extra\"datacontenttype\":\"application/json\",\"data\":$data}"
  fi
done
# Records that are no valid DebitAccount event, all keyed acct-5 (which no debit touches).
bad_value='{"account_id":"acct-5","amount":1}'
malformed='{"account_id":"acct-5","amount":'
produce acct-5 -H ce_specversion=1.0 -H ce_id=bad-1 -H ce_source=urn:test \
  -H content-type=application/json <<<"$bad_value"        # no ce_type
produce acct-5 -H ce_specversion=1.0 -H ce_id=bad-2 -H ce_source=urn:test \
  -H ce_type=bank.debit-account -H content-type=application/json <<<"$malformed"
produce acct-5 -H ce_specversion=1.0 -H ce_id=bad-3 -H ce_source=urn:test \
  -H ce_type=bank.credit-account -H content-type=application/json <<<"$bad_value"
step "produced ${#commands[@]} commands and 3 bad records to bank.commands with kcat"

# -- wait until all is handled and relayed --------------------------------------------------------

expected_balances=$(for a in "${!balance_of[@]}"; do echo "$a ${balance_of[$a]}"; done | LC_ALL=C sort)
# Done when the inbox remembers every distinct command (a repeat comes before a later debit of
# its account, so it was consumed too), the dead letters are kept, nothing waits to be handled
# and the outbox is empty (a handled debit's events are in it when the debit leaves the inbox).
done_sql="SELECT (SELECT count(*) FROM depot.received_ids) >= $applied AND (SELECT count(*) FROM \
depot.dead_letters) >= 3 AND NOT EXISTS (SELECT FROM depot.outgoing) AND NOT EXISTS (SELECT FROM \
depot.incoming WHERE message_type <> 'bank.enforce-account-overdrawn-deadline')"
deadline=$((SECONDS + 30))
until [[ $(q "$done_sql") == t ]]; do
  sys_alive "$node" || fail "node 1 died"
  ((SECONDS < deadline)) || fail "not all stored, handled and relayed after 30 s: $(q "SELECT count(*) FROM depot.received_ids") of $applied commands stored, $(q "SELECT count(*) FROM depot.dead_letters") dead letter(s), $(q "SELECT count(*) FROM depot.outgoing") outgoing, $(q "SELECT count(*) FROM depot.incoming") incoming"
  sleep 0.2
done
step "every command stored, every debit handled, outbox empty"

# -- the events on bank.events --------------------------------------------------------------------

load_topic bank.events ev
check "events on bank.events" "$(q "SELECT count(*) FROM ev")" "$((exp_upd + exp_low + exp_over))"
for t in account-updated low-balance-detected account-overdrawn; do
  want=$(grep -c " bank.$t " "$SYS_WORK/expected_events" || true)
  check "bank.$t events" "$(q "SELECT count(*) FROM ev WHERE headers->>'ce_type' = 'bank.$t'")" "$want"
done
# Every attribute of every event; each query lists the offenders.
offenders() { # DESC CONDITION: no event meets CONDITION
  local n
  n=$(q "SELECT count(*) FROM ev WHERE $2")
  if ((n == 0)); then
    step "ok: no event with $1"
  else
    bad "$n event(s) with $1, e.g. $(q "SELECT string_agg(part || '@' || off || ' key ' || coalesce(key, '-') || ' ' || headers::text || ' ' || payload, ' | ') FROM (SELECT * FROM ev WHERE $2 LIMIT 2) s")"
  fi
}
offenders "events whose headers are not exactly the ten expected (each once)" \
  "header_count <> 10 OR NOT headers ?& array['ce_specversion', 'ce_id', 'ce_source', 'ce_type',
   'ce_time', 'ce_partitionkey', 'ce_correlationid', 'ce_causationid', 'ce_traceparent',
   'content-type'] OR (SELECT count(*) FROM jsonb_object_keys(headers)) <> 10"
offenders "ce_specversion other than 1.0" "headers->>'ce_specversion' IS DISTINCT FROM '1.0'"
offenders "ce_id not a lower-case RFC 4122 UUID" \
  "coalesce(headers->>'ce_id', '') !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'"
check "distinct ce_id" "$(q "SELECT count(DISTINCT headers->>'ce_id') FROM ev")" "$(q "SELECT count(*) FROM ev")"
offenders "ce_source other than urn:depot:bank" "headers->>'ce_source' IS DISTINCT FROM 'urn:depot:bank'"
offenders "ce_type outside the three events" "headers->>'ce_type' NOT IN ('bank.account-updated', \
'bank.low-balance-detected', 'bank.account-overdrawn') OR headers->>'ce_type' IS NULL"
offenders "ce_time not RFC 3339, or not between the start of the test and now" \
  "CASE WHEN headers->>'ce_time' ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$'
   THEN (headers->>'ce_time')::timestamptz NOT BETWEEN '$started_at'::timestamptz AND now() ELSE true END"
offenders "key unlike ce_partitionkey or the account of the data" \
  "key IS DISTINCT FROM headers->>'ce_partitionkey' OR key IS DISTINCT FROM payload::jsonb->>'account_id'"
offenders "content-type other than application/json" \
  "headers->>'content-type' IS DISTINCT FROM 'application/json'"
offenders "data not {account_id, balance}" \
  "(SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(payload::jsonb) k) <> array['account_id', 'balance']
   OR jsonb_typeof(payload::jsonb->'balance') <> 'number'"
offenders "ce_traceparent not a W3C version-00 traceparent" \
  "coalesce(headers->>'ce_traceparent', '') !~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'"
offenders "events of one debit that do not share a traceparent" \
  "headers->>'ce_traceparent' <> ANY (SELECT e.headers->>'ce_traceparent' FROM ev e WHERE
   e.headers->>'ce_causationid' = ev.headers->>'ce_causationid')"
# Each event names its debit: the exact events the balances imply, debit by debit.
q "SELECT headers->>'ce_causationid' || ' ' || (headers->>'ce_type') || ' ' || key || ' ' ||
   (payload::jsonb->>'balance') FROM ev" | LC_ALL=C sort >"$SYS_WORK/actual_events"
if diff -q "$SYS_WORK/expected_events" "$SYS_WORK/actual_events" >/dev/null; then
  step "ok: the $(wc -l <"$SYS_WORK/actual_events") events are exactly the expected ones (causing debit, type, account, balance)"
else
  bad "events (causation type account balance) differ, expected < > actual: $(diff "$SYS_WORK/expected_events" "$SYS_WORK/actual_events" | grep '^[<>]' | head -n 8 | tr '\n' ';')"
fi
# Correlation: what the debit carried, else the debit's id; the trace: the debit's, if it had one.
for eid in "${!correlation_of[@]}"; do
  got=$(q "SELECT coalesce(string_agg(DISTINCT headers->>'ce_correlationid', ','), '(no event)') FROM ev WHERE headers->>'ce_causationid' = '$eid'")
  [[ $got == "${correlation_of[$eid]}" ]] ||
    bad "ce_correlationid of the events of debit $eid: $got, expected ${correlation_of[$eid]}"
done
step "checked ce_correlationid of the events of ${#correlation_of[@]} debits"
for eid in "${!trace_of[@]}"; do
  got=$(q "SELECT coalesce(string_agg(DISTINCT headers->>'ce_traceparent', ','), '(no event)') FROM ev WHERE headers->>'ce_causationid' = '$eid'")
  if [[ $got =~ ^00-${trace_of[$eid]}-[0-9a-f]{16}-[0-9a-f]{2}$ && $got != *-$PARENT-* ]]; then
    step "ok: the events of debit $eid continue its trace in a span of their own: $got"
  else
    bad "ce_traceparent of the events of debit $eid: $got, expected trace ${trace_of[$eid]} with a new parent id"
  fi
done
# Order per account: its account-updated events in partition order follow its balances.
check "accounts whose account-updated events are out of order" "$(q "SELECT count(*) FROM (SELECT key,
  array_agg((payload::jsonb->>'balance')::bigint ORDER BY off) AS b, count(DISTINCT part) AS parts FROM ev
  WHERE headers->>'ce_type' = 'bank.account-updated' GROUP BY key) s WHERE parts <> 1 OR b <> (SELECT
  array_agg(x ORDER BY x DESC) FROM unnest(b) x)")" 0

# -- balances, local cascades, inbox --------------------------------------------------------------

check "balances" "$(q "SELECT string_agg(id || '=' || balance, ' ' ORDER BY id) FROM accounts")" \
  "$(tr ' \n' '= ' <<<"$expected_balances" | sed 's/ $//')"
for t in account-updated low-balance-detected account-overdrawn; do
  want=$(grep -c " bank.$t " "$SYS_WORK/expected_events" || true)
  check "bank.$t handled by the node too (account_events)" \
    "$(q "SELECT count(*) FROM account_events WHERE message_type = 'bank.$t'")" "$want"
done
check "overdraft deadlines scheduled" "$(q "SELECT count(*) FROM depot.incoming WHERE message_type =
  'bank.enforce-account-overdrawn-deadline' AND status = 'scheduled'")" "$exp_over"

# -- dead letters ---------------------------------------------------------------------------------

load_topic bank.commands cmd
check "records on bank.commands" "$(q "SELECT count(*) FROM cmd")" "$((${#commands[@]} + 3))"
check "dead letters" "$(q "SELECT count(*) FROM depot.dead_letters")" 3
# dead_letter CE_ID REASON-REGEX EXCEPTION-TYPE MESSAGE-TYPE RAW-VALUE ID-OF-NON-KAFKA-SOURCE
dead_letter() {
  local ce_id=$1 reason=$2 type=$3 mtype=$4 raw=$5 row at want_id got_raw
  at=$(q "SELECT part || '/' || off FROM cmd WHERE headers->>'ce_id' = '$ce_id'")
  [[ $at =~ ^[0-9]+/[0-9]+$ ]] || { bad "record $ce_id not found on bank.commands: '$at'"; return; }
  if [[ $mtype == '' ]]; then want_id=$(name_based_id kafka "bank.commands/$at"); else
    want_id=$(name_based_id urn:test "$ce_id"); fi
  row=$(q "SELECT count(*) FROM depot.dead_letters WHERE id = '$want_id'")
  [[ $row == 1 ]] || {
    bad "no dead letter $want_id for $ce_id (record $at); there are: $(q "SELECT string_agg(id || ' ' || (headers->>'ce_id'), ', ') FROM depot.dead_letters")"
    return
  }
  local d="FROM depot.dead_letters WHERE id = '$want_id'"
  check "$ce_id: queue, message type, exception type, replayable, attempts" \
    "$(q "SELECT queue || ' [' || message_type || '] ' || exception_type || ' ' || replayable || ' ' || attempts $d")" \
    "kafka://bank.commands [$mtype] $type false 1"
  check "$ce_id: kafka-topic, kafka-partition, kafka-offset, kafka-key headers" \
    "$(q "SELECT (headers->>'kafka-topic') || ' ' || (headers->>'kafka-partition') || '/' || (headers->>'kafka-offset') || ' ' || (headers->>'kafka-key') $d")" \
    "bank.commands $at $(printf %s acct-5 | base64)"
  got_raw=$(q "SELECT body $d" | base64 -d 2>&1) || got_raw="(not base64: $(q "SELECT body $d"))"
  check "$ce_id: body is the raw value in base64" "$got_raw" "$raw"
  local msg
  msg=$(q "SELECT exception_message $d")
  if [[ $msg =~ $reason ]]; then step "ok: $ce_id: reason: $msg"; else
    bad "$ce_id: reason '$msg' does not match /$reason/"; fi
}
dead_letter bad-1 "attribute 'ce_type'" depot::decode_error '' "$bad_value"
dead_letter bad-2 'CloudEvent data is not a valid .bank\.debit-account.: malformed JSON' depot::decode_error bank.debit-account "$malformed"
dead_letter bad-3 "'bank\.credit-account'" depot::unknown_message_type bank.credit-account "$bad_value"
run 0 "dead-letters replay --all" "$BANK" dead-letters replay --all &&
  has "$OUT" "replay --all" '^replayed 0 dead letter'
check "dead letters after replay --all (none is replayable)" \
  "$(q "SELECT count(*) FROM depot.dead_letters WHERE NOT replayable")" 3
check "balance of acct-5 (only bad records)" "$(q "SELECT balance FROM accounts WHERE id = 'acct-5'")" "$BALANCE"

# -- the end --------------------------------------------------------------------------------------

sys_alive "$node" || fail "node 1 died"
sys_stop_node "$node"
kill -TERM "$MOCK_PID"
rc=0
wait "$MOCK_PID" || rc=$?
unset "SYS_LIVE[$MOCK_PID]"
check "bank kafka mock exit code after SIGTERM" "$rc" 0
sys_checked
step "PASS"

#!/usr/bin/env bash
# The bank binary's command line: help, usage errors (exit 2, one line on stderr), db apply /
# db status, describe, send (and what it refuses: dead letters, never envelopes), storage counts,
# and the three ways to name the database (DEPOT_DB, --db URI, --db=URI).
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db
DB=$DEPOT_DB
stored() { q "SELECT count(*) FROM depot.incoming"; }

# -- help ---------------------------------------------------------------------------------------
run 0 "bank --help" "$BANK" --help &&
  has "$OUT" "bank --help" '^ +run ' '^ +db apply ' '^ +db status ' '^ +describe ' \
    '^ +send <type> <json\|->' '^ +storage counts ' '^ +health ' '^ +seed ' '^ +demo ' \
    -- '--db' -- '--node-id' -- '--polling-interval' -- '--stale-after' -- '--concurrency'
run 0 "bank send --help" "$BANK" send --help &&
  has "$OUT" "bank send --help" 'usage: bank send <type> <json\|->' 'stdin' -- '--db'
run 0 "bank run --help" "$BANK" run --help && has "$OUT" "bank run --help" 'usage: bank run'

# -- usage errors ---------------------------------------------------------------------------------
run 2 "unknown command" "$BANK" frobnicate && one_line "unknown command" &&
  has "$ERR" "unknown command" 'unknown command'
run 2 "no command" "$BANK" && one_line "no command"
run 2 "unknown option (--bogus)" "$BANK" describe --bogus && one_line "unknown option" &&
  has "$ERR" "unknown option" 'bogus'
run 2 "unknown option (--bogus=1)" "$BANK" describe --bogus=1 && one_line "unknown option =" &&
  has "$ERR" "unknown option =" 'bogus'
run 2 "option without its value" "$BANK" storage counts --db && one_line "option without value"
run 2 "send without arguments" "$BANK" send && one_line "send without arguments"

# -- schema -------------------------------------------------------------------------------------
run nonzero "db status before db apply" "$BANK" db status &&
  has "$OUT" "db status before db apply" 'not provisioned|db apply'
run nonzero "health before db apply" "$BANK" health || :
run 0 "db apply" "$BANK" db apply && has "$OUT" "db apply" 'version'
run 0 "db apply again" "$BANK" db apply && has "$OUT" "db apply again" 'version'
run 0 "db status after db apply" "$BANK" db status && has "$OUT" "db status" 'up to date'
run 0 "health after db apply" "$BANK" health && has "$OUT" "health" 'healthy'
[[ $(q "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('accounts', 'account_events')") == 2 ]] ||
  bad "db apply did not create the bank's tables accounts and account_events"

# -- describe -----------------------------------------------------------------------------------
types=(bank.debit-account bank.low-balance-detected bank.account-overdrawn
  bank.enforce-account-overdrawn-deadline bank.account-updated)
run 0 "describe" "$BANK" describe --polling-interval=200ms --node-id 7 &&
  has "$OUT" "describe" "${types[@]/#/^ +}" '^configuration:' '^ +polling-interval +200ms' \
    '^ +node-id +7' "^ +db +$DB\$" '^ +schema +depot' '^ +stale-after ' '^ +batch-size ' \
    '^ +max-concurrent-batches +0 \([0-9]+ on this machine\)$'
run 0 "describe --max-concurrent-batches 3" "$BANK" describe --max-concurrent-batches 3 &&
  has "$OUT" "describe --max-concurrent-batches 3" '^ +max-concurrent-batches +3$'
run 0 "describe without a database" env -u DEPOT_DB "$BANK" describe &&
  has "$OUT" "describe without a database" '^ +bank.debit-account' \
    '^ +db +\(embedded PostgreSQL in \.depot/postgres\)$'

# -- send: refused bodies store no envelope, and are kept as dead letters -----------------------
run nonzero "send malformed JSON" "$BANK" send bank.debit-account '{"account_id": "acct-1",' &&
  one_line "send malformed JSON" && has "$ERR" "send malformed JSON" 'JSON'
run nonzero "send a body without amount" "$BANK" send bank.debit-account '{"account_id":"acct-1"}' &&
  one_line "send missing field" && has "$ERR" "send missing field" 'amount'
run nonzero "send a body with a string amount" "$BANK" send bank.debit-account \
  '{"account_id":"acct-1","amount":"ten"}' && one_line "send string amount" &&
  has "$ERR" "send string amount" 'amount'
run nonzero "send to an unknown type" "$BANK" send bank.no-such-type '{"account_id":"acct-1"}' &&
  one_line "send unknown type" && has "$ERR" "send unknown type" 'bank.no-such-type'
printf '%s\n' '{"account_id":"acct-1","amount":1}' '{"account_id":' \
  '{"account_id":"acct-2","amount":2}' >"$SYS_WORK/mixed.jsonl"
rc=0
"$BANK" send bank.debit-account - <"$SYS_WORK/mixed.jsonl" >"$OUT" 2>"$ERR" || rc=$?
if ((rc == 0)); then bad "send - with a malformed line among good ones exited 0"; else
  step "ok: send - with a malformed line among good ones (exit $rc)"; fi
[[ $(stored) == 0 ]] || bad "refused sends stored $(stored) envelope(s), expected none"
# Each invalid body is kept as a dead letter with its reason (the unknown type has no queue).
[[ $(q "SELECT count(*) FROM depot.dead_letters WHERE exception_type = 'depot::decode_error'") == 4 ]] ||
  bad "refused bodies kept as dead letters: $(q "SELECT string_agg(left(exception_message, 50), ' | ') FROM depot.dead_letters"), expected 4 decode errors"

# -- send and storage counts, with each way to name the database --------------------------------
run 0 "send (DEPOT_DB)" "$BANK" send bank.debit-account '{"account_id":"acct-1","amount":5}' &&
  has "$OUT" "send" 'bank.debit-account'
id=$(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' "$OUT" || true)
[[ -n $id ]] || bad "send did not print the envelope id: $(cat "$OUT")"
[[ -z $id || $(q "SELECT status || ' ' || queue FROM depot.incoming WHERE id = '$id'") == "incoming bank.debit-account" ]] ||
  bad "envelope $id is not stored as incoming on bank.debit-account"
run 0 "storage counts (DEPOT_DB)" "$BANK" storage counts &&
  has "$OUT" "storage counts" '^bank\.debit-account +incoming +1$'
run 0 "send (--db URI)" env -u DEPOT_DB "$BANK" send --db "$DB" bank.debit-account \
  '{"account_id":"acct-2","amount":6}' || :
run 0 "send (--db=URI)" env -u DEPOT_DB "$BANK" send bank.debit-account \
  '{"account_id":"acct-3","amount":7}' --db="$DB" || :
printf '%s\n' '{"account_id":"acct-4","amount":1}' '' '{"account_id":"acct-5","amount":2}' \
  >"$SYS_WORK/two.jsonl"
rc=0
env -u DEPOT_DB "$BANK" send bank.debit-account - --db "$DB" <"$SYS_WORK/two.jsonl" >"$OUT" 2>"$ERR" || rc=$?
((rc == 0)) || bad "send - of two lines exited $rc: $(cat "$ERR")"
has "$OUT" "send -" '^sent 2 bank.debit-account'
run 0 "storage counts (--db URI)" env -u DEPOT_DB "$BANK" storage counts --db "$DB" &&
  has "$OUT" "storage counts --db" '^bank\.debit-account +incoming +5$'
run 0 "storage counts (--db=URI)" env -u DEPOT_DB "$BANK" storage counts --db="$DB" &&
  has "$OUT" "storage counts --db=" '^bank\.debit-account +incoming +5$'
# Options may come before the command too, in either form.
run 0 "--db=URI before the command" env -u DEPOT_DB "$BANK" --db="$DB" storage counts &&
  has "$OUT" "--db=URI before the command" '^bank\.debit-account +incoming +5$'
run 0 "--db URI before the command" env -u DEPOT_DB "$BANK" --db "$DB" storage counts &&
  has "$OUT" "--db URI before the command" '^bank\.debit-account +incoming +5$'
run 0 "--db wins over DEPOT_DB" env DEPOT_DB=postgresql://postgres@127.0.0.1:1/nowhere \
  "$BANK" storage counts --db "$DB" && has "$OUT" "--db over DEPOT_DB" '^bank\.debit-account +incoming +5$'
[[ $(q "SELECT string_agg(body::jsonb ->> 'account_id', ',' ORDER BY body::jsonb ->> 'account_id') FROM depot.incoming") == acct-1,acct-2,acct-3,acct-4,acct-5 ]] ||
  bad "stored bodies: $(q "SELECT string_agg(body, ' ') FROM depot.incoming")"

sys_checked
step "PASS"

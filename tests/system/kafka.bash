# What the Kafka system tests share: an embedded Kafka cluster in a process of its own (`bank
# kafka mock`), topics read back with kcat into the test's database, and checks of values.
# Sourced after lib.bash.

# `bank kafka mock` in the background (killed when the test ends); sets KAFKA to its brokers.
start_mock() {
  local i
  "$BANK" kafka mock >"$SYS_WORK/mock.out" 2>"$SYS_WORK/mock.err" &
  MOCK_PID=$!
  SYS_LIVE[$MOCK_PID]=kafka-mock
  for ((i = 0; i < 100; i++)); do
    KAFKA=$(sed -n 's/^kafka mock cluster at //p' "$SYS_WORK/mock.out")
    [[ -n $KAFKA ]] && break
    sys_alive "$MOCK_PID" || fail "bank kafka mock exited: $(head -c 400 "$SYS_WORK/mock.err")"
    sleep 0.1
  done
  [[ $KAFKA =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "bank kafka mock printed no address: $(cat "$SYS_WORK/mock.out")"
  step "kafka mock cluster (pid $MOCK_PID) at $KAFKA"
}

# load_topic TOPIC TABLE: every record of TOPIC (kcat -J) into a new table TABLE(topic, part,
# off, key, payload, headers jsonb object, header_count), in the test's database.
load_topic() {
  local file=$SYS_WORK/$2.json
  kcat -b "$KAFKA" -C -t "$1" -o beginning -e -q -J >"$file" 2>"$SYS_WORK/kcat.err" ||
    fail "kcat -C -t $1 failed: $(head -c 400 "$SYS_WORK/kcat.err")"
  q "CREATE TABLE $2_raw (doc jsonb)" >/dev/null
  psql -XtAq -v ON_ERROR_STOP=1 "$DEPOT_DB" \
    -c "\\copy $2_raw FROM '$file' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')" ||
    fail "cannot load the records of $1"
  q "CREATE TABLE $2 AS SELECT doc->>'topic' AS topic, (doc->>'partition')::int AS part,
       (doc->>'offset')::bigint AS off, doc->>'key' AS key, doc->>'payload' AS payload,
       (SELECT coalesce(jsonb_object_agg(doc->'headers'->>(2 * i), doc->'headers'->>(2 * i + 1)),
          '{}') FROM generate_series(0, jsonb_array_length(doc->'headers') / 2 - 1) i) AS headers,
       jsonb_array_length(doc->'headers') / 2 AS header_count FROM $2_raw" >/dev/null
}

# check WHAT GOT WANT: record a failed check unless GOT is WANT.
check() {
  if [[ $2 == "$3" ]]; then step "ok: $1: $2"; else bad "$1: $2, expected $3"; fi
}

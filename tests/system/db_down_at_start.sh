#!/usr/bin/env bash
# `bank run` against a port where no database listens exits non-zero within a few seconds, with
# a one-line reason that mentions the database; so do the other commands that need it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init

# A TCP port on 127.0.0.1 that nobody listens on.
port=
for _ in {1..100}; do
  p=$((20000 + RANDOM % 20000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[[ -n $port ]] || fail "no free TCP port found"
DOWN=postgresql://postgres@127.0.0.1:$port/depot
step "nothing listens on $DOWN"

failures=()
# expect_down DESC ARGS...: bank ARGS... must fail (not 2: the command line is fine) within 10 s
# with exactly one line on stderr that mentions the database.
expect_down() {
  local desc=$1 rc=0 started=$SECONDS took lines
  shift
  timeout -k 2 30 "$BANK" "$@" >"$SYS_WORK/out" 2>"$SYS_WORK/err" </dev/null || rc=$?
  took=$((SECONDS - started))
  lines=$(wc -l <"$SYS_WORK/err")
  if ((rc == 124 || rc == 137)); then
    failures+=("$desc: still running after 30 s")
  elif ((rc == 0 || rc == 2)); then
    failures+=("$desc: exit $rc, expected a failure other than a usage error")
  elif ((took > 10)); then
    failures+=("$desc: took $took s to fail")
  elif ! head -n 1 "$SYS_WORK/err" | grep -qiE '^bank: .*database'; then
    failures+=("$desc: first line of stderr does not say 'bank: ...database...': $(head -c 300 "$SYS_WORK/err")")
  elif [[ $lines != 1 || $(grep -c . "$SYS_WORK/err") != 1 ]]; then
    failures+=("$desc: the reason is $lines lines on stderr, not one: $(head -c 400 "$SYS_WORK/err" | sed -n l | tr '\n' ' ')")
  else
    step "ok: $desc: exit $rc after ${took}s: $(cat "$SYS_WORK/err")"
    return 0
  fi
  step "NOT OK: ${failures[-1]}"
}

expect_down "bank run --db URI" run --db "$DOWN"
DEPOT_DB=$DOWN expect_down "bank run --node-id 1 (DEPOT_DB)" run --node-id 1
expect_down "bank db apply" db apply --db="$DOWN"
expect_down "bank send" send bank.debit-account '{"account_id":"acct-1","amount":1}' --db "$DOWN"

if ((${#failures[@]})); then
  fail "${#failures[@]} check(s) failed; first: ${failures[0]}"
fi
step "PASS"

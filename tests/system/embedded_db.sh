#!/usr/bin/env bash
# Without --db or DEPOT_DB a node binary starts a private PostgreSQL under .depot/ of its working
# directory, says where on stderr and stops it on exit; the data directory is kept, so a second
# run finds what the first stored. A process started meanwhile joins the running server.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
unset DEPOT_DB
cd "$SYS_WORK"
data=$SYS_WORK/.depot/postgres/data
server_alive() { [[ -r $data/postmaster.pid ]] && sys_alive "$(head -n 1 "$data/postmaster.pid")"; }
# A failed run may leave its server behind: stop it before the work directory goes.
depot_on_exit 'server_alive && kill -QUIT "$(head -n 1 "$data/postmaster.pid")" && sleep 1'

run 0 "db apply without a database" "$BANK" db apply &&
  has "$ERR" "says where its PostgreSQL is" "PostgreSQL in .*\.depot/postgres: postgresql://" &&
  has "$OUT" "applies the schema" "^schema depot at version"
server_alive && bad "the server still runs after db apply ended"
run 0 "seed without a database" "$BANK" seed --accounts 5 --balance 100 --threshold 10

sys_start_node embedded
node=$SYS_PID
server_alive || bad "no server runs under .depot/postgres while the node runs"
grep -q "PostgreSQL in .*\.depot/postgres: postgresql://.*(started" "$SYS_WORK/embedded.err" ||
  bad "the node did not say on stderr that it started its PostgreSQL"
run 0 "send joins the node's server" "$BANK" send bank.debit-account '{"account_id":"acct-1","amount":7}' &&
  has "$ERR" "joined" "joined a running server"
# Handled envelopes leave the inbox: wait until nothing of the bank is left in it.
for ((i = 0; i < 100; i++)); do
  "$BANK" storage counts >"$OUT" 2>/dev/null && ! grep -q '^bank\.' "$OUT" && break
  sleep 0.1
done
sys_stop_node "$node"
has "$SYS_WORK/embedded.out" "the debit and its cascade were handled" '^node 1 stopped: handled 2,'
server_alive && bad "the server still runs after the node stopped"

# The data directory is kept: a debit sent while no node runs is there in a later run.
run 0 "send with no node running" "$BANK" send bank.debit-account '{"account_id":"acct-1","amount":7}'
run 0 "storage counts on the kept data directory" "$BANK" storage counts &&
  has "$OUT" "the debit is still there" '^bank\.debit-account +incoming +1$'
server_alive && bad "the server still runs after storage counts ended"
sys_checked
step "PASS"

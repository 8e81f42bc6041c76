#!/usr/bin/env bash
# TLS between nodes. A CA made here signs one certificate the nodes and the CLI share. Two
# nodes started with --cluster-tls-* connect, and `request` over TLS is answered by the node
# serving the query. A client without TLS, and a node whose certificate another CA signed,
# cannot reach them: the listeners speak TLS and check the peer's certificate.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
sys_init
sys_create_db
command -v openssl >/dev/null || fail "openssl not found (scripts/install installs it)"

N=100 ACCOUNTS=10 BALANCE=100000 THRESHOLD=10
sys_bank_setup

# make_ca NAME, make_cert NAME CA: PEM files under $SYS_WORK/tls.
mkdir -p "$SYS_WORK/tls"
make_ca() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
    -keyout "$SYS_WORK/tls/$1.key" -out "$SYS_WORK/tls/$1.pem" 2>/dev/null || fail "openssl: CA $1"
}
make_cert() {
  local d=$SYS_WORK/tls
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$d/$1.key" -out "$d/$1.csr" \
    2>/dev/null || fail "openssl: request $1"
  openssl x509 -req -in "$d/$1.csr" -CA "$d/$2.pem" -CAkey "$d/$2.key" -CAcreateserial -days 2 \
    -out "$d/$1.pem" 2>/dev/null || fail "openssl: certificate $1"
}
make_ca cluster-ca
make_cert node cluster-ca
make_ca other-ca
make_cert stranger other-ca
tls_of() { # NAME CA: the options of a node or client holding certificate NAME, trusting CA
  echo "--cluster-tls-cert $SYS_WORK/tls/$1.pem --cluster-tls-key $SYS_WORK/tls/$1.key --cluster-tls-ca $SYS_WORK/tls/$2.pem"
}
# shellcheck disable=SC2207 # paths under mktemp -d have no spaces
TLS=($(tls_of node cluster-ca))

run 2 "only part of the TLS options" "$BANK" run --cluster-tls-cert "$SYS_WORK/tls/node.pem" &&
  one_line "partial TLS" && has "$ERR" "partial TLS" "cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca together"
run 2 "a certificate that cannot be read" "$BANK" run "${TLS[@]/node.pem/missing.pem}" &&
  one_line "unreadable" && has "$ERR" "unreadable" "cluster-tls-cert: cannot read"

sys_start_node queries --node-id 1 --queues bank.queries "${TLS[@]}"
one=$SYS_PID
sys_start_node commands --node-id 2 --queues bank.debit-account,bank.account-updated "${TLS[@]}"
two=$SYS_PID
for ((i = 0; i < 100; i++)); do
  [[ $("$BANK" cluster status --json | grep -c '"peers":\[[0-9]\]') == 2 ]] && break
  sleep 0.1
done
[[ $("$BANK" cluster status --json | grep -c '"peers":\[[0-9]\]') == 2 ]] ||
  fail "the two TLS nodes did not connect: $("$BANK" cluster status)"
step "the two nodes connected over TLS"

sys_send_debits "$SYS_WORK/debits.jsonl"
sys_wait_sender
sys_wait_drained 60
expected=$(q "SELECT balance FROM accounts WHERE id = 'acct-3'")
run 0 "request over TLS" "$BANK" request bank.get-balance '{"account_id": "acct-3"}' "${TLS[@]}" &&
  has "$OUT" "the reply" "^\{\"account_id\":\"acct-3\",\"balance\":$expected\}$"
run 1 "request without TLS" "$BANK" request bank.get-balance '{"account_id": "acct-3"}' &&
  one_line "plain client" && has "$ERR" "plain client" "cannot reach node 1"
# shellcheck disable=SC2046
run 1 "request with a certificate of another CA" "$BANK" request bank.get-balance \
  '{"account_id": "acct-3"}' $(tls_of stranger other-ca) &&
  one_line "stranger" && has "$ERR" "stranger" "cannot reach node 1"

# shellcheck disable=SC2046
sys_start_node stranger --node-id 3 --queues bank.low-balance-detected $(tls_of stranger other-ca)
three=$SYS_PID
sleep 3 # three heartbeats (1 s): each node tries to connect to the new one
peers=$(q "SELECT string_agg(number || ':' || coalesce(array_to_string(peers, ','), ''), ' ' ORDER BY number) FROM depot.nodes")
[[ $peers == "1:2 2:1 3:" ]] || bad "node 3 (another CA) should reach nobody: $peers"
sys_stop_node "$three"
sys_stop_node "$one"
sys_stop_node "$two"

sys_checked
step "PASS"

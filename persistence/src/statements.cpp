// The statement texts of a schema, built once per schema.
#include "statements.hpp"

#include <map>
#include <memory>
#include <mutex>

#include <fmt/format.h>

#include "depot/persistence/names.hpp"
#include "row_codec.hpp"

namespace depot::persistence {

namespace {

// Integer microseconds since the epoch of timestamptz `column`.
std::string micros_of(std::string_view column) {
  return fmt::format("(extract(epoch from {}) * 1000000)::bigint", column);
}

// The timestamptz of integer microseconds `column`, NULL for 0.
std::string timestamp_or_null(std::string_view column) {
  return fmt::format(
    "CASE WHEN {0} = 0 THEN NULL ELSE timestamptz 'epoch' + {0} * interval "
    "'1 microsecond' END",
    column);
}

} // namespace

statements::statements(std::string_view schema) {
  namespace t = names::table;
  namespace st = names::status;
  auto incoming = names::qualified(schema, t::incoming);
  auto outgoing = names::qualified(schema, t::outgoing);
  auto dead_letters = names::qualified(schema, t::dead_letters);
  auto nodes = names::qualified(schema, t::nodes);
  auto received_ids = names::qualified(schema, t::received_ids);
  auto queue_states = names::qualified(schema, t::queue_states);
  auto queue_breakers = names::qualified(schema, t::queue_breakers);
  auto versions = names::qualified(schema, t::schema_version);

  // -- schema ---------------------------------------------------------------------------------
  schema_exists = fmt::format(
    "SELECT count(*) FROM information_schema.tables WHERE "
    "table_schema = :s AND table_name = '{}'",
    t::schema_version);
  schema_version = fmt::format("SELECT coalesce(max(version), 0) FROM {}", versions);
  create_schema = fmt::format("CREATE SCHEMA IF NOT EXISTS {}", schema);
  create_version_table = fmt::format(
    "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY "
    "KEY, description text NOT NULL, applied_at timestamptz NOT "
    "NULL DEFAULT now())",
    versions);
  record_version = fmt::format("INSERT INTO {} (version, description) VALUES (:v, :d)", versions);
  search_path = fmt::format("SET LOCAL search_path TO {}", schema);

  // -- inbox ----------------------------------------------------------------------------------
  // A batch is one statement: its rows are one JSON array expanded by json_to_recordset. Counted
  // with RETURNING: a one-shot query is one round trip, where affected rows need a prepared one.
  // Rows marked `dedup` insert only when their id is new to received_ids (a redelivery within
  // the window is ignored even after the first was handled); the others skip that table. A row
  // with a seq (one given back in the transaction that claimed it) keeps its place.
  insert_incoming = fmt::format(
    "WITH r AS (SELECT * FROM json_to_recordset(:rows::json) AS r(id uuid, queue text, "
    "message_type text, body text, headers text, status text, execution_time bigint, deliver_by "
    "bigint, priority integer, attempts integer, tenant text, seq bigint, message_key text, "
    "dedup boolean)), remembered AS (INSERT INTO {0} (id, keep_until) SELECT r.id, now() + :w * "
    "interval '1 microsecond' FROM r WHERE r.dedup ON CONFLICT (id) DO NOTHING RETURNING id), "
    "inserted AS (INSERT INTO {1} (id, queue, message_type, body, headers, status, "
    "execution_time, deliver_by, priority, attempts, tenant, seq, message_key) SELECT r.id, "
    "r.queue, r.message_type, r.body, r.headers::jsonb, r.status, coalesce({2}, now()), {3}, "
    "r.priority, r.attempts, nullif(r.tenant, ''), coalesce(r.seq, nextval('{4}')), "
    "nullif(r.message_key, '') FROM r WHERE NOT r.dedup OR r.id IN (SELECT id FROM remembered) "
    "ON CONFLICT (id) DO NOTHING RETURNING 1) SELECT count(*) FROM inserted",
    received_ids, incoming, timestamp_or_null("r.execution_time"),
    timestamp_or_null("r.deliver_by"), names::qualified(schema, t::incoming_seq));
  copy_incoming = fmt::format("COPY {} {} FROM STDIN", incoming, copy_columns);
  notify = "SELECT pg_notify(:c, :p)";
  // The claims are the schema's functions (version 9, where their design is described): they
  // run with the plans they need whatever the statistics say, planned once per connection.
  const auto claimed_columns = fmt::format(
    "id::text, queue, message_type, body, headers::text, {}, coalesce({}, 0), attempts, "
    "priority, {}, seq, coalesce(tenant, ''), coalesce(message_key, '')",
    micros_of("execution_time"), micros_of("deliver_by"), micros_of("received_at"));
  claim = fmt::format("SELECT {} FROM {}(:q, :n, :p, :s)", claimed_columns,
                      names::qualified(schema, names::function::claim_ready));
  const auto claim_keyed_function = names::qualified(schema, names::function::claim_keyed);
  claim_keyed = fmt::format("SELECT {} FROM {}(:q, :n, :w, :p, :s, NULL)", claimed_columns,
                            claim_keyed_function);
  claim_again = fmt::format("SELECT {} FROM {}(:q, NULL, :w, NULL, NULL, :ids::uuid[])",
                            claimed_columns, claim_keyed_function);
  pause_queue = fmt::format(
    "INSERT INTO {} (queue, paused_until, reason) VALUES (:q, timestamptz 'epoch' + :u * interval "
    "'1 microsecond', :r) ON "
    "CONFLICT (queue) DO UPDATE SET paused_until = greatest(excluded.paused_until, "
    "{}.paused_until), reason = "
    "excluded.reason, changed_at = now()",
    queue_states, t::queue_states);
  resume_queue = fmt::format(
    "WITH r AS (DELETE FROM {} WHERE queue = :q AND paused_until > now() RETURNING 1) SELECT "
    "count(*) FROM r",
    queue_states);
  paused_queues =
    fmt::format("SELECT queue, {}, reason FROM {} WHERE paused_until > now() ORDER BY queue",
                micros_of("paused_until"), queue_states);
  set_breaker = fmt::format(
    "INSERT INTO {} (queue, node, message_type, state, open_until, reason) VALUES (:q, :n, :t, "
    ":s, CASE WHEN :u::bigint = 0 THEN NULL ELSE timestamptz 'epoch' + :u::bigint * interval "
    "'1 microsecond' END, :r) ON CONFLICT (queue, node, message_type) DO UPDATE SET state = "
    "excluded.state, open_until = excluded.open_until, reason = excluded.reason, changed_at = "
    "now()",
    queue_breakers);
  close_breaker = fmt::format("DELETE FROM {} WHERE queue = :q AND node = :n AND message_type = :t",
                              queue_breakers);
  // Only the breakers of nodes that are still registered.
  open_breakers = fmt::format(
    "SELECT b.queue, b.node, b.state, coalesce({}, 0), b.reason, b.message_type FROM {} b JOIN "
    "{} n ON n.number = b.node ORDER BY b.queue, b.message_type, b.node",
    micros_of("b.open_until"), queue_breakers, nodes);
  promote_due = fmt::format(
    "WITH due AS (UPDATE {0} SET status = '{1}' WHERE id IN (SELECT id FROM {0} WHERE status = "
    "'{2}' AND execution_time <= now() ORDER BY execution_time LIMIT :n FOR UPDATE SKIP LOCKED) "
    "RETURNING queue) SELECT DISTINCT queue FROM due",
    incoming, st::incoming, st::scheduled);
  forget_received_ids = fmt::format(
    "DELETE FROM {0} WHERE id IN (SELECT id FROM {0} WHERE keep_until < now() LIMIT :n FOR "
    "UPDATE SKIP LOCKED)",
    received_ids);

  // -- outbox ---------------------------------------------------------------------------------
  insert_outgoing = fmt::format(
    "INSERT INTO {} (id, destination, message_type, body, headers, deliver_by, attempts, "
    "message_key, not_before) SELECT r.id, r.queue, r.message_type, r.body, r.headers::jsonb, {}, "
    "r.attempts, nullif(r.message_key, ''), {} FROM json_to_recordset(:rows::json) AS r(id uuid, "
    "queue text, message_type text, body text, headers text, deliver_by bigint, attempts integer, "
    "message_key text, execution_time bigint) ON CONFLICT (id) DO NOTHING",
    outgoing, timestamp_or_null("r.deliver_by"), timestamp_or_null("r.execution_time"));
  // The relay's lock: the node's own lock key space (class of the schema), key -1, which no
  // node number takes.
  lock_relay = "SELECT pg_try_advisory_lock(:c, -1)::int";
  pending_outgoing = fmt::format(
    "SELECT id::text, destination, message_type, body, headers::text, attempts, "
    "coalesce(message_key, ''), {}, seq FROM {} WHERE destination = :d AND (not_before IS NULL "
    "OR not_before <= now()) ORDER BY seq LIMIT :n",
    micros_of("created_at"), outgoing);
  delete_outgoing = fmt::format(
    "WITH sent AS (DELETE FROM {} WHERE id = ANY(:ids::uuid[]) RETURNING 1) SELECT count(*) FROM "
    "sent",
    outgoing);
  count_outgoing_attempt =
    fmt::format("UPDATE {} SET attempts = attempts + 1 WHERE id = ANY(:ids::uuid[])", outgoing);
  outgoing_backlog = fmt::format(
    "SELECT destination, count(*), {} FROM {} GROUP BY destination ORDER BY destination",
    micros_of("min(created_at)"), outgoing);

  // -- Kafka listener offsets -----------------------------------------------------------------
  save_kafka_offsets = fmt::format(
    "INSERT INTO {} (consumer_group, topic, partition, next_offset) SELECT :g, r.topic, "
    "r.partition, r.next FROM json_to_recordset(:rows::json) AS r(topic text, partition integer, "
    "next bigint) ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = "
    "excluded.next_offset, updated_at = now()",
    names::qualified(schema, t::kafka_offsets));
  load_kafka_offsets =
    fmt::format("SELECT topic, partition, next_offset FROM {} WHERE consumer_group = :g",
                names::qualified(schema, t::kafka_offsets));

  // -- dead letters ---------------------------------------------------------------------------
  insert_dead_letter = fmt::format(
    "INSERT INTO {} (id, queue, message_type, body, headers, exception_type, exception_message, "
    "attempts, source, message_key, tenant, priority, replayable) VALUES (:id::uuid, :q, :t, :b, "
    ":h::jsonb, :et, :em, :a, nullif(:s, ''), nullif(:k, ''), nullif(:tn, ''), :p, :r <> 0) ON "
    "CONFLICT (id) DO "
    "UPDATE SET exception_type = excluded.exception_type, exception_message = "
    "excluded.exception_message, attempts = excluded.attempts, failed_at = now()",
    dead_letters);
  // The dead letters a dead_letter_filter takes: every condition with a value holds. `since` is
  // either a timestamp (:ts) or an interval before now (:ago).
  const std::string dead_letter_filter =
    "(cardinality(:ids::uuid[]) = 0 OR id = ANY(:ids::uuid[])) AND (:q = '' OR queue = :q) AND "
    "(:t = '' OR message_type = :t) AND (:x = '' OR exception_type = :x) AND failed_at >= "
    "coalesce(nullif(:ts, '')::timestamptz, now() - nullif(:ago, '')::interval, '-infinity')";
  list_dead_letters = fmt::format(
    "SELECT id::text, queue, message_type, body, headers::text, exception_type, "
    "exception_message, attempts, coalesce(source, ''), {}, coalesce(message_key, ''), "
    "coalesce(tenant, ''), priority FROM {} WHERE {} ORDER BY failed_at DESC, id LIMIT "
    "nullif(:n, 0)",
    micros_of("failed_at"), dead_letters, dead_letter_filter);
  // Back to the inbox in the order they failed, after what waits (a new seq), as first attempts;
  // their dedup records go, so that the inbox takes them again.
  replay_dead_letters = fmt::format(
    "WITH moved AS (DELETE FROM {0} WHERE replayable AND {1} RETURNING *), forgotten AS (DELETE "
    "FROM {2} WHERE "
    "id IN (SELECT id FROM moved)), back AS (INSERT INTO {3} (id, queue, message_type, body, "
    "headers, priority, tenant, message_key) SELECT id, queue, message_type, body, headers, "
    "priority, tenant, message_key FROM moved ORDER BY failed_at, id ON CONFLICT (id) DO NOTHING "
    "RETURNING id, queue) SELECT id::text, queue FROM back",
    dead_letters, dead_letter_filter, received_ids, incoming);
  purge_dead_letters =
    fmt::format("WITH gone AS (DELETE FROM {} WHERE {} RETURNING 1) SELECT count(*) FROM gone",
                dead_letters, dead_letter_filter);

  // -- nodes ----------------------------------------------------------------------------------
  lock_node = "SELECT pg_try_advisory_lock(:c, :n)::int";
  lock_nodes_table = fmt::format("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", nodes);
  next_node_number = fmt::format("SELECT coalesce(max(number), 0) + 1 FROM {}", nodes);
  delete_node_number = fmt::format("DELETE FROM {} WHERE number = :n", nodes);
  insert_node = fmt::format(
    "INSERT INTO {} (id, number, uri, version) VALUES (:id::uuid, :n, "
    ":u, :v)",
    nodes);
  // A node's queues and peers travel as one JSON object (node_lists).
  const auto queues_of = "ARRAY(SELECT json_array_elements_text(:l::json->'queues'))";
  const auto peers_of = "ARRAY(SELECT json_array_elements_text(:l::json->'peers')::integer)";
  heartbeat = fmt::format(
    "UPDATE {} SET heartbeat = now(), health = :h, health_reason = :r, uri = :u, queues = {}, "
    "peers = {} WHERE id = :id::uuid",
    nodes, queues_of, peers_of);
  reinsert_node = fmt::format(
    "INSERT INTO {} (id, number, version, health, health_reason, uri, queues, peers) VALUES "
    "(:id::uuid, :n, :v, :h, :r, :u, {}, {}) ON CONFLICT DO NOTHING",
    nodes, queues_of, peers_of);
  // The leader holds this lock on the connection that holds its node's lock: the one shared
  // pid tells which node leads.
  lock_leader = fmt::format("SELECT pg_try_advisory_lock(:c, {})::int", names::leader_lock_key);
  const auto held = [](std::string_view alias, std::string_view key) {
    return fmt::format(
      "{0}.locktype = 'advisory' AND {0}.objsubid = 2 AND {0}.classid = :c::oid AND {0}.objid = "
      "({1})::oid AND {0}.granted AND {0}.database = (SELECT oid FROM pg_database WHERE datname "
      "= current_database())",
      alias, key);
  };
  cluster_members = fmt::format(
    "SELECT n.number, n.uri, {}, {}, json_build_object('queues', n.queues, 'peers', "
    "n.peers)::text, n.health, n.version, EXISTS (SELECT 1 FROM pg_locks a JOIN pg_locks b ON "
    "a.pid = b.pid WHERE "
    "{} AND {})::int FROM {} n ORDER BY n.number",
    micros_of("n.started"), micros_of("n.heartbeat"), held("a", "n.number"),
    held("b", std::to_string(names::leader_lock_key)), nodes);
  node_statuses = fmt::format("SELECT number, health, health_reason, {} FROM {} ORDER BY number",
                              micros_of("(now() - heartbeat)"), nodes);
  delete_node = fmt::format("DELETE FROM {} WHERE id = :id::uuid", nodes);
  // Dead: silent for too long, or its advisory lock is gone with its connection. A dead node's
  // row held by a claim in flight (KEY SHARE) is skipped until a later tick, never waited for: a
  // claim hung in a frozen process must not stall the agent. Once this transaction holds a row,
  // no claim of that node can commit, and the release that follows sees all it claimed.
  delete_dead_nodes = fmt::format(
    "DELETE FROM {0} WHERE number IN (SELECT number FROM {0} n WHERE n.heartbeat < now() - :s * "
    "interval '1 microsecond' OR NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = "
    "'advisory' AND l.objsubid = 2 AND l.classid = :c::oid AND l.objid = n.number::oid AND "
    "l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = "
    "current_database())) FOR UPDATE SKIP LOCKED) RETURNING number",
    nodes);

  // -- admin ----------------------------------------------------------------------------------
  pending = fmt::format(
    "SELECT count(*) FROM {} WHERE status = '{}' OR (status = '{}' AND "
    "execution_time <= now())",
    incoming, st::incoming, st::scheduled);
  ready_capped = fmt::format(
    "SELECT count(*) FROM (SELECT 1 FROM {} WHERE queue = ANY(:q::text[]) AND status = '{}' "
    "LIMIT :n) AS r",
    incoming, st::incoming);
  counts = fmt::format(
    "SELECT queue, status, count(*) FROM {} GROUP BY 1, 2 UNION ALL SELECT "
    "queue, '{}', count(*) FROM {} GROUP BY 1 ORDER BY 1, 2",
    incoming, st::dead, dead_letters);
  purge = fmt::format(
    "WITH a AS (DELETE FROM {} WHERE queue = ANY(:q::text[]) RETURNING 1), b AS "
    "(DELETE FROM {} WHERE queue = ANY(:q::text[]) RETURNING 1), c AS (DELETE FROM {} WHERE "
    "destination = ANY(:q::text[]) RETURNING 1) SELECT (SELECT count(*) FROM a) + (SELECT "
    "count(*) FROM b) + (SELECT count(*) FROM c)",
    incoming, dead_letters, outgoing);
  free_connections =
    "SELECT current_setting('max_connections')::bigint, (SELECT count(*) FROM "
    "pg_stat_activity WHERE backend_type = 'client backend'), CASE WHEN (SELECT "
    "rolsuper FROM pg_roles WHERE rolname = current_user) THEN 0 ELSE "
    "current_setting('superuser_reserved_connections')::bigint END";
}

const statements& statements_of(std::string_view schema) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<statements>, std::less<>> by_schema;
  std::lock_guard guard{mutex};
  auto i = by_schema.find(schema);
  if (i == by_schema.end())
    i = by_schema.emplace(std::string{schema}, std::make_unique<statements>(schema)).first;
  return *i->second;
}

} // namespace depot::persistence

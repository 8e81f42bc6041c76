// The Postgres message store. Every statement depot runs lives here, schema-qualified, in
// batches: one statement per batch of envelopes, never one per envelope.
// Blocks on Postgres: callers run it on detached actors or their own threads.
#include "depot/persistence/message_store.hpp"

#include <algorithm>
#include <chrono>
#include <set>

#include <fmt/format.h>
#include <libpq-fe.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include "depot/runtime/settings.hpp"
#include "migrations.hpp"
#include "pg_native.hpp"

namespace depot::persistence {

PGconn* native_connection(soci::session& sql) {
  return static_cast<soci::postgresql_session_backend*>(sql.get_backend())->conn_;
}

bool connection_ok(soci::session& sql) {
  auto* conn = sql.get_backend() ? native_connection(sql) : nullptr;
  return conn != nullptr && PQstatus(conn) == CONNECTION_OK;
}

namespace {

// Runs `f`, turning SOCI's exceptions into classified db_errors.
template <class F>
auto guarded(soci::session& sql, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const soci::soci_error& e) {
    throw classify(e, sql);
  }
}

// A Postgres array literal of uuids; ids come from depot and never need quoting.
std::string uuid_array(const std::vector<std::string>& ids) {
  return fmt::format("{{{}}}", fmt::join(ids, ","));
}

std::string headers_json(const std::map<std::string, std::string>& headers) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w{out};
  w.StartObject();
  for (const auto& [k, v] : headers) {
    w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  }
  w.EndObject();
  return out.GetString();
}

// Text a Postgres text column takes: invalid UTF-8 (a handler's exception message may hold any
// bytes) becomes U+FFFD, and a NUL, which libpq would cut the text at, is dropped.
std::string postgres_text(std::string_view text) {
  std::string result, terminated{text}; // the validator may read one byte past a cut sequence
  result.reserve(text.size());
  rapidjson::StringStream in{terminated.c_str()};
  const auto* end = terminated.c_str() + terminated.size();
  while (in.src_ < end) {
    const auto* start = in.src_;
    rapidjson::StringBuffer one;
    if (*start != '\0' && rapidjson::UTF8<>::Validate(in, one) && in.src_ <= end) {
      result.append(one.GetString(), one.GetSize());
    } else {
      if (*start != '\0')
        result += "\xEF\xBF\xBD";
      in.src_ = start + 1;
    }
  }
  return result;
}

std::map<std::string, std::string> parse_headers(const std::string& text) {
  std::map<std::string, std::string> result;
  rapidjson::Document doc;
  // Iterative: whatever a producer stored as headers, nesting costs heap, never stack.
  if (doc.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size()).HasParseError() ||
      !doc.IsObject())
    return result;
  for (const auto& m : doc.GetObject())
    if (m.value.IsString())
      result.emplace(m.name.GetString(), m.value.GetString());
  return result;
}

// The rows of an insert as one JSON array, expanded server-side by json_to_recordset: a batch
// is one statement and one round trip.
std::string rows_json(const std::vector<envelope>& envelopes) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w{out};
  auto str = [&w](const char* key, const std::string& value) {
    w.Key(key);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartArray();
  for (const auto& e : envelopes) {
    w.StartObject();
    str("id", e.id);
    str("queue", e.queue);
    str("message_type", e.message_type);
    str("body", e.body);
    str("headers", headers_json(e.headers));
    str("status", to_string(e.status));
    w.Key("execution_time");
    w.Int64(e.execution_time);
    w.Key("deliver_by");
    w.Int64(e.deliver_by);
    w.Key("priority");
    w.Int(e.priority);
    w.Key("attempts");
    w.Int(e.attempts);
    str("tenant", e.tenant);
    w.EndObject();
  }
  w.EndArray();
  return out.GetString();
}

constexpr const char* micros_of = "(extract(epoch from {}) * 1000000)::bigint";

// The timestamptz of integer microseconds `column`, NULL for 0.
std::string timestamp_or_null(const char* column) {
  return fmt::format("CASE WHEN {0} = 0 THEN NULL ELSE timestamptz 'epoch' + {0} * interval "
                     "'1 microsecond' END",
                     column);
}

std::string micros_expr(const char* column) {
  return fmt::format(fmt::runtime(micros_of), column);
}

} // namespace

message_store::message_store(store_settings settings) : settings_(std::move(settings)) {
  try {
    check_schema_name(settings_.schema);
  } catch (const invalid_setting& e) {
    throw db_error{failure_kind::permanent, "", e.what()};
  }
  if (settings_.db.empty())
    throw db_error{failure_kind::permanent, "",
                   "no database configured: set DEPOT_DB or --db to a libpq connection URI"};
  session_ = open_session(settings_.db);
}

std::string redact_password(std::string db) {
  constexpr std::string_view hidden = "***";
  // postgresql://user:password@host/...
  if (auto scheme = db.find("://"); scheme != std::string::npos) {
    auto start = scheme + 3;
    auto end = std::min(db.find_first_of("/?", start), db.size());
    auto at = db.rfind('@', end);
    auto colon = db.find(':', start);
    if (at != std::string::npos && at >= start && colon < at)
      db.replace(colon + 1, at - colon - 1, hidden);
  }
  // password=... as a keyword (possibly quoted) or a URI query parameter
  constexpr std::string_view key = "password=";
  for (auto pos = db.find(key); pos != std::string::npos; pos = db.find(key, pos + key.size())) {
    if (pos > 0 && std::string_view{" ?&"}.find(db[pos - 1]) == std::string_view::npos)
      continue;
    auto value = pos + key.size();
    auto stop = db.find_first_of(" &", value);
    if (value < db.size() && db[value] == '\'') {
      stop = db.find('\'', value + 1);
      stop = stop == std::string::npos ? stop : stop + 1;
    }
    db.replace(value, (stop == std::string::npos ? db.size() : stop) - value, hidden);
  }
  return db;
}

std::unique_ptr<soci::session> open_session(const std::string& db) {
  // SOCI mangles URIs: hand it libpq's own parse as keyword=value pairs.
  char* error = nullptr;
  auto* options = PQconninfoParse(db.c_str(), &error);
  if (options == nullptr) {
    auto reason = std::string{error ? error : "out of memory"};
    PQfreemem(error);
    throw db_error{failure_kind::permanent, "",
                   fmt::format("invalid database connection string (check DEPOT_DB or --db): {}",
                               reason)};
  }
  std::string keywords;
  for (auto* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr)
      continue;
    std::string value;
    for (const char* c = o->val; *c != '\0'; ++c) {
      if (*c == '\\' || *c == '\'')
        value += '\\';
      value += *c;
    }
    keywords += fmt::format("{}='{}' ", o->keyword, value);
  }
  PQconninfoFree(options);
  try {
    auto session = std::make_unique<soci::session>(soci::postgresql, keywords);
    *session << "SET client_min_messages = warning"; // no NOTICEs on stderr
    return session;
  } catch (const soci::soci_error& e) {
    throw db_error{failure_kind::connection_lost, "",
                   fmt::format("cannot connect to the database (check DEPOT_DB or --db): {}",
                               e.get_error_message())};
  }
}

message_store::~message_store() = default;

soci::session& message_store::session() {
  return *session_;
}

std::string message_store::table(std::string_view name) const {
  return fmt::format("{}.{}", settings_.schema, name);
}

std::string message_store::notify_channel() const {
  return "depot_" + settings_.schema;
}

bool message_store::connected() {
  return connection_ok(*session_);
}

void message_store::reconnect() {
  try {
    session_->reconnect();
  } catch (const soci::soci_error& e) {
    throw db_error{failure_kind::connection_lost, "",
                   fmt::format("reconnect failed: {}", e.get_error_message())};
  }
}

// -- schema -----------------------------------------------------------------------------------

int message_store::latest_schema_version() {
  return migrations().back().version;
}

int message_store::schema_version() {
  auto& sql = *session_;
  return guarded(sql, [&] {
    int exists = 0;
    sql << "SELECT count(*) FROM information_schema.tables WHERE table_schema = :s AND "
           "table_name = 'schema_version'",
      soci::use(settings_.schema), soci::into(exists);
    if (exists == 0)
      return 0;
    int version = 0;
    sql << fmt::format("SELECT coalesce(max(version), 0) FROM {}", table("schema_version")),
      soci::into(version);
    return version;
  });
}

std::vector<int> message_store::apply_schema() {
  auto& sql = *session_;
  return guarded(sql, [&] {
    std::vector<int> applied;
    soci::transaction tr{sql};
    // Serialises concurrent appliers (two nodes starting at once) on this schema.
    auto lock_key = "depot.schema." + settings_.schema;
    sql << "SELECT pg_advisory_xact_lock(hashtext(:k))", soci::use(lock_key);
    sql << fmt::format("CREATE SCHEMA IF NOT EXISTS {}", settings_.schema);
    sql << fmt::format("CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, "
                       "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                       table("schema_version"));
    int current = 0;
    sql << fmt::format("SELECT coalesce(max(version), 0) FROM {}", table("schema_version")),
      soci::into(current);
    for (const auto& m : migrations()) {
      if (m.version <= current)
        continue;
      sql << fmt::format("SET LOCAL search_path TO {}", settings_.schema);
      // A migration file holds several statements: only libpq's simple protocol runs those.
      auto script = std::string{m.sql};
      auto* res = PQexec(native_connection(sql), script.c_str());
      auto ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
      auto message = std::string{PQresultErrorMessage(res)};
      PQclear(res);
      if (!ok)
        throw db_error{failure_kind::permanent, "",
                       fmt::format("migration {} failed: {}", m.version, message)};
      auto description = std::string{m.description};
      sql << fmt::format("INSERT INTO {} (version, description) VALUES (:v, :d)",
                         table("schema_version")),
        soci::use(m.version), soci::use(description);
      sql << "RESET search_path";
      applied.push_back(m.version);
    }
    tr.commit();
    return applied;
  });
}

// -- inbox ------------------------------------------------------------------------------------

std::size_t message_store::insert_incoming(const std::vector<envelope>& envelopes,
                                           int sender_node) {
  if (envelopes.empty())
    return 0;
  auto& sql = *session_;
  return guarded(sql, [&] {
    auto rows = rows_json(envelopes);
    // A one-shot query is one round trip (PQexecParams); a prepared soci::statement, needed for
    // get_affected_rows(), would be three (prepare, execute, deallocate). Count with RETURNING.
    long long inserted = 0;
    sql << fmt::format("WITH inserted AS (INSERT INTO {0} (id, queue, message_type, body, headers, "
                       "status, execution_time, deliver_by, priority, attempts, tenant) "
                       "SELECT r.id, r.queue, r.message_type, r.body, r.headers::jsonb, "
                       "r.status, coalesce({1}, now()), {2}, r.priority, r.attempts, "
                       "nullif(r.tenant, '') "
                       "FROM json_to_recordset(:rows::json) AS r(id uuid, queue text, "
                       "message_type text, body text, headers text, status text, "
                       "execution_time bigint, deliver_by bigint, priority integer, "
                       "attempts integer, tenant text) ON CONFLICT (id) DO NOTHING RETURNING 1) "
                       "SELECT count(*) FROM inserted",
                       table("incoming"), timestamp_or_null("r.execution_time"),
                       timestamp_or_null("r.deliver_by")),
      soci::use(rows), soci::into(inserted);
    std::set<std::string> ready;
    for (const auto& e : envelopes)
      if (e.status == envelope_status::incoming)
        ready.insert(e.queue);
    if (inserted > 0 && !ready.empty()) {
      // One notification per transaction and queue set; Postgres folds duplicates.
      auto channel = notify_channel();
      auto payload = fmt::format("{}|{}", sender_node, fmt::join(ready, ","));
      sql << "SELECT pg_notify(:c, :p)", soci::use(channel), soci::use(payload);
    }
    return static_cast<std::size_t>(inserted);
  });
}

std::vector<envelope> message_store::claim(std::string_view queue, int owner, int limit) {
  auto& sql = *session_;
  return guarded(sql, [&] {
    // Rows come in chunks: memory follows what was claimed, never the limit.
    constexpr int chunk = 256;
    auto n = static_cast<std::size_t>(std::clamp(limit, 1, chunk));
    std::vector<std::string> ids(n), queues(n), types(n), bodies(n), headers(n), tenants(n);
    std::vector<long long> exec(n), deliver(n), received(n);
    std::vector<int> attempts(n), priorities(n);
    auto q = std::string{queue};
    std::vector<envelope> result;
    soci::transaction tr{sql};
    // A claim lost in a crash only leaves the row unowned, as recovery would: no fsync needed.
    sql << "SET LOCAL synchronous_commit = off";
    soci::statement st =
      (sql.prepare << fmt::format(
         "UPDATE {0} SET owner = :owner WHERE id IN (SELECT id FROM {0} WHERE queue = :q AND "
         "status = 'incoming' AND owner = 0 AND execution_time <= now() ORDER BY priority DESC, "
         "received_at LIMIT :n FOR UPDATE SKIP LOCKED) AND {4} RETURNING id::text, queue, "
         "message_type, body, headers::text, {1}, coalesce({2}, 0), attempts, priority, {3}, "
         "coalesce(tenant, '')",
         table("incoming"), micros_expr("execution_time"), micros_expr("deliver_by"),
         micros_expr("received_at"), owner_registered()),
       soci::use(owner, "owner"), soci::use(q, "q"), soci::use(limit, "n"), soci::into(ids),
       soci::into(queues), soci::into(types), soci::into(bodies), soci::into(headers),
       soci::into(exec), soci::into(deliver), soci::into(attempts), soci::into(priorities),
       soci::into(received), soci::into(tenants));
    for (bool more = st.execute(true); more; more = st.fetch()) {
      for (std::size_t i = 0; i < ids.size(); ++i) {
        auto& e = result.emplace_back();
        e.id = std::move(ids[i]);
        e.queue = std::move(queues[i]);
        e.message_type = std::move(types[i]);
        e.body = std::move(bodies[i]);
        e.headers = parse_headers(headers[i]);
        e.execution_time = exec[i];
        e.deliver_by = deliver[i];
        e.attempts = attempts[i];
        e.priority = priorities[i];
        e.received_at = received[i];
        e.tenant = std::move(tenants[i]);
      }
    }
    tr.commit();
    // RETURNING does not keep the subquery's order.
    std::stable_sort(result.begin(), result.end(), [](const envelope& a, const envelope& b) {
      return a.priority != b.priority ? a.priority > b.priority : a.received_at < b.received_at;
    });
    return result;
  });
}

std::vector<std::string> message_store::begin_handling(const std::vector<std::string>& ids,
                                                       int owner) {
  if (ids.empty())
    return {};
  auto& sql = *session_;
  return guarded(sql, [&] {
    std::vector<std::string> locked(ids.size());
    auto id_array = uuid_array(ids);
    auto window = static_cast<long long>(settings_.dedup_window);
    sql << fmt::format("UPDATE {} SET status = 'handled', keep_until = now() + :w * interval "
                       "'1 microsecond' WHERE id = ANY(:ids::uuid[]) AND owner = :o AND status = "
                       "'incoming' RETURNING id::text",
                       table("incoming")),
      soci::use(window, "w"), soci::use(id_array, "ids"), soci::use(owner, "o"),
      soci::into(locked);
    if (!sql.got_data()) // SOCI leaves vectors of size 1 untouched when no row comes back
      locked.clear();
    return locked;
  });
}

void message_store::mark_expired(const std::vector<std::string>& ids) {
  if (ids.empty())
    return;
  auto& sql = *session_;
  guarded(sql, [&] {
    auto id_array = uuid_array(ids);
    sql << fmt::format("UPDATE {} SET status = 'expired' WHERE id = ANY(:ids::uuid[])",
                       table("incoming")),
      soci::use(id_array);
  });
}

void message_store::retry_at(const std::string& id, micros at) {
  auto& sql = *session_;
  guarded(sql, [&] {
    auto when = static_cast<long long>(at);
    sql << fmt::format("UPDATE {} SET status = 'scheduled', owner = 0, attempts = attempts + 1, "
                       "keep_until = NULL, execution_time = timestamptz 'epoch' + :at * interval "
                       "'1 microsecond' WHERE id = :id::uuid",
                       table("incoming")),
      soci::use(when, "at"), soci::use(id, "id");
  });
}

void message_store::dead_letter(const envelope& e, std::string_view exception_type,
                                std::string_view exception_message) {
  auto& sql = *session_;
  guarded(sql, [&] {
    auto headers = headers_json(e.headers);
    auto type = postgres_text(exception_type);
    auto message = postgres_text(exception_message);
    auto attempts = e.attempts + 1;
    auto source = e.header_value(header::source);
    sql << fmt::format("INSERT INTO {} (id, queue, message_type, body, headers, exception_type, "
                       "exception_message, attempts, source) VALUES (:id::uuid, :q, :t, :b, "
                       ":h::jsonb, :et, :em, :a, nullif(:s, '')) ON CONFLICT (id) DO UPDATE SET "
                       "exception_type = excluded.exception_type, exception_message = "
                       "excluded.exception_message, attempts = excluded.attempts, failed_at = "
                       "now()",
                       table("dead_letters")),
      soci::use(e.id, "id"), soci::use(e.queue, "q"), soci::use(e.message_type, "t"),
      soci::use(e.body, "b"), soci::use(headers, "h"), soci::use(type, "et"),
      soci::use(message, "em"), soci::use(attempts, "a"), soci::use(source, "s");
  });
}

void message_store::requeue(const std::vector<std::string>& ids, int owner) {
  give_back(ids, owner, "handled");
}

void message_store::release(const std::vector<std::string>& ids, int owner) {
  give_back(ids, owner, "incoming");
}

void message_store::give_back(const std::vector<std::string>& ids, int owner,
                              std::string_view from_status) {
  if (ids.empty())
    return;
  auto& sql = *session_;
  guarded(sql, [&] {
    auto id_array = uuid_array(ids);
    auto from = std::string{from_status};
    sql << fmt::format("UPDATE {} SET status = 'incoming', owner = 0, keep_until = NULL WHERE id "
                       "= ANY(:ids::uuid[]) AND owner = :o AND status = :s",
                       table("incoming")),
      soci::use(id_array, "ids"), soci::use(owner, "o"), soci::use(from, "s");
  });
}

// -- outbox -----------------------------------------------------------------------------------

void message_store::insert_outgoing(const std::vector<envelope>& envelopes) {
  if (envelopes.empty())
    return;
  auto& sql = *session_;
  guarded(sql, [&] {
    auto rows = rows_json(envelopes);
    sql << fmt::format("INSERT INTO {} (id, destination, message_type, body, headers, deliver_by, "
                       "attempts) SELECT r.id, r.queue, r.message_type, r.body, r.headers::jsonb, "
                       "{}, r.attempts FROM json_to_recordset(:rows::json) AS r(id uuid, queue "
                       "text, message_type text, body text, headers text, deliver_by bigint, "
                       "attempts integer) ON CONFLICT (id) DO NOTHING",
                       table("outgoing"), timestamp_or_null("r.deliver_by")),
      soci::use(rows);
  });
}

std::vector<envelope> message_store::claim_outgoing(std::string_view destination, int owner,
                                                    int limit) {
  auto& sql = *session_;
  return guarded(sql, [&] {
    auto d = std::string{destination};
    soci::transaction tr{sql};
    sql << "SET LOCAL synchronous_commit = off"; // as claim(): a lost claim is harmless
    soci::rowset<soci::row> rows =
      (sql.prepare << fmt::format(
         "UPDATE {0} SET owner = :owner WHERE id IN (SELECT id FROM {0} WHERE destination = :d "
         "AND owner = 0 ORDER BY created_at LIMIT :n FOR UPDATE SKIP LOCKED) AND {1} RETURNING "
         "id::text, destination, message_type, body, headers::text, coalesce({2}, 0), attempts, "
         "{3}",
         table("outgoing"), owner_registered(), micros_expr("deliver_by"),
         micros_expr("created_at")),
       soci::use(owner, "owner"), soci::use(d, "d"), soci::use(limit, "n"));
    std::vector<envelope> result;
    for (const auto& r : rows) {
      auto& e = result.emplace_back();
      e.id = r.get<std::string>(0);
      e.queue = r.get<std::string>(1);
      e.message_type = r.get<std::string>(2);
      e.body = r.get<std::string>(3);
      e.headers = parse_headers(r.get<std::string>(4));
      e.deliver_by = r.get<long long>(5);
      e.attempts = r.get<int>(6);
      e.received_at = r.get<long long>(7);
    }
    tr.commit();
    std::stable_sort(result.begin(), result.end(), [](const envelope& a, const envelope& b) {
      return a.received_at < b.received_at;
    });
    return result;
  });
}

std::size_t message_store::complete_outgoing(const std::vector<std::string>& ids, int owner) {
  if (ids.empty())
    return 0;
  auto& sql = *session_;
  return guarded(sql, [&] {
    auto id_array = uuid_array(ids);
    long long deleted = 0;
    sql << fmt::format("WITH sent AS (DELETE FROM {} WHERE id = ANY(:ids::uuid[]) AND owner = :o "
                       "RETURNING 1) SELECT count(*) FROM sent",
                       table("outgoing")),
      soci::use(id_array, "ids"), soci::use(owner, "o"), soci::into(deleted);
    return static_cast<std::size_t>(deleted);
  });
}

void message_store::release_outgoing(const std::vector<std::string>& ids, int owner) {
  if (ids.empty())
    return;
  auto& sql = *session_;
  guarded(sql, [&] {
    auto id_array = uuid_array(ids);
    sql << fmt::format("UPDATE {} SET owner = 0, attempts = attempts + 1 WHERE id = "
                       "ANY(:ids::uuid[]) AND owner = :o",
                       table("outgoing")),
      soci::use(id_array, "ids"), soci::use(owner, "o");
  });
}

// -- nodes ------------------------------------------------------------------------------------

std::string message_store::owner_registered() const {
  // Only a registered node claims, and its row stays while the claim commits (KEY SHARE keeps
  // recover_stale from deleting it): a node declared dead cannot leave claims nobody recovers.
  return fmt::format("EXISTS (SELECT 1 FROM {} WHERE number = :owner FOR KEY SHARE)",
                     table("nodes"));
}

int message_store::node_lock_class() const {
  // FNV-1a of the schema name: the first key of every node lock of this store.
  std::uint32_t h = 2166136261u;
  for (char c : settings_.schema)
    h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return static_cast<int>(h & 0x7fffffff);
}

bool message_store::lock_node_number(int number) {
  auto& sql = *session_;
  return guarded(sql, [&] {
    int locked = 0;
    auto cls = node_lock_class();
    sql << "SELECT pg_try_advisory_lock(:c, :n)::int", soci::use(cls, "c"),
      soci::use(number, "n"), soci::into(locked);
    return locked != 0;
  });
}

node_registration message_store::register_node(int number, std::string_view uri,
                                               std::string_view version) {
  auto& sql = *session_;
  return guarded(sql, [&] {
    node_registration self{new_envelope_id(), number};
    soci::transaction tr{sql};
    sql << fmt::format("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", table("nodes"));
    if (number == 0)
      sql << fmt::format("SELECT coalesce(max(number), 0) + 1 FROM {}", table("nodes")),
        soci::into(self.number);
    // A live node holds its number's advisory lock on its session; a dead process's lock went
    // with its connection, so a restart takes its number over at once.
    if (!lock_node_number(self.number))
      throw db_error{failure_kind::permanent, "",
                     fmt::format("node id {} is held by a live node; give this node another "
                                 "--node-id (DEPOT_NODE_ID)",
                                 self.number)};
    soci::statement previous = (sql.prepare << fmt::format("DELETE FROM {} WHERE number = :n",
                                                           table("nodes")),
                                soci::use(self.number));
    previous.execute(true);
    bool crashed = previous.get_affected_rows() > 0; // it did not deregister
    auto u = std::string{uri};
    auto v = std::string{version};
    sql << fmt::format("INSERT INTO {} (id, number, uri, version) VALUES (:id::uuid, :n, :u, :v)",
                       table("nodes")),
      soci::use(self.id, "id"), soci::use(self.number, "n"), soci::use(u, "u"),
      soci::use(v, "v");
    // Whatever an earlier incarnation with this number claimed is unfinished: release it.
    if (crashed)
      release_owned_by({self.number});
    tr.commit();
    return self;
  });
}

void message_store::heartbeat(const node_registration& self, std::string_view version,
                              const node_health_row& health) {
  auto& sql = *session_;
  guarded(sql, [&] {
    auto reason = postgres_text(health.reason);
    soci::statement st = (sql.prepare << fmt::format("UPDATE {} SET heartbeat = now(), health = "
                                                     ":h, health_reason = :r WHERE id = :id::uuid",
                                                     table("nodes")),
                          soci::use(health.health, "h"), soci::use(reason, "r"),
                          soci::use(self.id, "id"));
    st.execute(true);
    if (st.get_affected_rows() > 0)
      return;
    // Declared dead by another node (its work was recovered): come back under the same number.
    auto v = std::string{version};
    soci::statement back = (sql.prepare << fmt::format(
                              "INSERT INTO {} (id, number, version, health, health_reason) VALUES "
                              "(:id::uuid, :n, :v, :h, :r) ON CONFLICT DO NOTHING",
                              table("nodes")),
                            soci::use(self.id, "id"), soci::use(self.number, "n"),
                            soci::use(v, "v"), soci::use(health.health, "h"),
                            soci::use(reason, "r"));
    back.execute(true);
    if (back.get_affected_rows() == 0)
      throw db_error{failure_kind::permanent, "",
                     fmt::format("node id {} was taken by another node while this one was "
                                 "unreachable; restart this node",
                                 self.number)};
  });
}

std::vector<node_status> message_store::node_statuses() {
  auto& sql = *session_;
  return guarded(sql, [&] {
    std::vector<node_status> result;
    soci::rowset<soci::row> rows = sql.prepare << fmt::format(
                                     "SELECT number, health, health_reason, {} FROM {} ORDER BY "
                                     "number",
                                     micros_expr("(now() - heartbeat)"), table("nodes"));
    for (const auto& r : rows)
      result.push_back({r.get<int>(0), {r.get<std::string>(1), r.get<std::string>(2)},
                        r.get<long long>(3)});
    return result;
  });
}

connection_budget message_store::free_connections() {
  auto& sql = *session_;
  return guarded(sql, [&] {
    connection_budget b;
    long long max = 0, used = 0, reserved = 0;
    sql << "SELECT current_setting('max_connections')::bigint, (SELECT count(*) FROM "
           "pg_stat_activity WHERE backend_type = 'client backend'), CASE WHEN (SELECT rolsuper "
           "FROM pg_roles WHERE rolname = current_user) THEN 0 ELSE "
           "current_setting('superuser_reserved_connections')::bigint END",
      soci::into(max), soci::into(used), soci::into(reserved);
    b.max = max;
    b.used = used;
    b.free = max - reserved - used;
    return b;
  });
}

void message_store::deregister(const node_registration& self) {
  auto& sql = *session_;
  guarded(sql, [&] {
    soci::transaction tr{sql};
    sql << fmt::format("DELETE FROM {} WHERE id = :id::uuid", table("nodes")), soci::use(self.id);
    release_owned_by({self.number}); // claims a failed worker could not give back
    tr.commit();
  });
}

std::vector<std::string> message_store::release_owned_by(const std::vector<int>& numbers) {
  // No index covers owner (claims stay cheap): this scans incoming, and runs only when a node
  // died or stops.
  auto& sql = *session_;
  auto owners = fmt::format("{{{}}}", fmt::join(numbers, ","));
  sql << fmt::format("UPDATE {} SET owner = 0 WHERE owner = ANY(:o::int[])", table("outgoing")),
    soci::use(owners);
  soci::rowset<std::string> rows =
    (sql.prepare << fmt::format("WITH moved AS (UPDATE {} SET owner = 0 WHERE status = 'incoming' "
                                "AND owner = ANY(:o::int[]) RETURNING queue) SELECT DISTINCT "
                                "queue FROM moved",
                                table("incoming")),
     soci::use(owners));
  return std::vector<std::string>(rows.begin(), rows.end());
}

std::vector<std::string> message_store::recover_stale(micros stale_after) {
  auto& sql = *session_;
  return guarded(sql, [&] {
    auto stale = static_cast<long long>(stale_after);
    auto cls = node_lock_class();
    soci::transaction tr{sql};
    // Dead: silent for too long, or its advisory lock is gone with its connection. A dead node's
    // row held by a claim in flight (KEY SHARE) is skipped until a later tick, never waited for:
    // a claim hung in a frozen process must not stall this agent. Once this transaction holds a
    // row, no claim of that node can commit, and the release that follows sees all it claimed.
    soci::rowset<int> rows =
      (sql.prepare << fmt::format(
         "DELETE FROM {0} WHERE number IN (SELECT number FROM {0} n WHERE n.heartbeat < now() - "
         ":s * interval '1 microsecond' OR NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype "
         "= 'advisory' AND l.objsubid = 2 AND l.classid = :c::oid AND l.objid = n.number::oid "
         "AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = "
         "current_database())) FOR UPDATE SKIP LOCKED) RETURNING number",
         table("nodes")),
       soci::use(stale, "s"), soci::use(cls, "c"));
    std::vector<int> dead(rows.begin(), rows.end());
    std::vector<std::string> queues;
    if (!dead.empty())
      queues = release_owned_by(dead);
    tr.commit();
    return queues;
  });
}

// -- maintenance ------------------------------------------------------------------------------

std::vector<std::string> message_store::promote_due(int limit) {
  auto& sql = *session_;
  return guarded(sql, [&] {
    soci::rowset<std::string> rows =
      (sql.prepare << fmt::format(
         "WITH due AS (UPDATE {0} SET status = 'incoming', owner = 0 WHERE id IN (SELECT id FROM "
         "{0} WHERE status = 'scheduled' AND execution_time <= now() ORDER BY execution_time "
         "LIMIT :n FOR UPDATE SKIP LOCKED) RETURNING queue) SELECT DISTINCT queue FROM due",
         table("incoming")),
       soci::use(limit));
    return std::vector<std::string>(rows.begin(), rows.end());
  });
}

std::int64_t message_store::pending() {
  auto& sql = *session_;
  return guarded(sql, [&] {
    long long n = 0;
    sql << fmt::format("SELECT count(*) FROM {} WHERE status = 'incoming' OR (status = "
                       "'scheduled' AND execution_time <= now())",
                       table("incoming")),
      soci::into(n);
    return static_cast<std::int64_t>(n);
  });
}

std::size_t message_store::remove_expired_ids(int limit) {
  auto& sql = *session_;
  return guarded(sql, [&] {
    soci::statement st = (sql.prepare << fmt::format(
                            "DELETE FROM {0} WHERE id IN (SELECT id FROM {0} WHERE status IN "
                            "('handled', 'expired') AND keep_until < now() LIMIT :n)",
                            table("incoming")),
                          soci::use(limit));
    st.execute(true);
    return static_cast<std::size_t>(st.get_affected_rows());
  });
}

std::vector<queue_count> message_store::counts() {
  auto& sql = *session_;
  return guarded(sql, [&] {
    std::vector<queue_count> result;
    soci::rowset<soci::row> rows =
      (sql.prepare << fmt::format("SELECT queue, status, count(*) FROM {} GROUP BY 1, 2 UNION "
                                  "ALL SELECT queue, 'dead', count(*) FROM {} GROUP BY 1 "
                                  "ORDER BY 1, 2",
                                  table("incoming"), table("dead_letters")));
    for (const auto& r : rows)
      result.push_back({r.get<std::string>(0), r.get<std::string>(1), r.get<long long>(2)});
    return result;
  });
}

} // namespace depot::persistence

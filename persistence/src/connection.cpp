// The store's connection: opening a session, the statement texts of its schema, the statements
// prepared on it, reconnecting.
#include "depot/persistence/connection.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <libpq-fe.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include "depot/persistence/names.hpp"
#include "depot/runtime/settings.hpp"
#include "pg_native.hpp"
#include "prepared_statements.hpp"
#include "statements.hpp"

namespace depot::persistence {

PGconn* native_connection(soci::session& sql) {
  return static_cast<soci::postgresql_session_backend*>(sql.get_backend())->conn_;
}

bool connection_ok(soci::session& sql) {
  auto* conn = sql.get_backend() ? native_connection(sql) : nullptr;
  return conn != nullptr && PQstatus(conn) == CONNECTION_OK;
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
    throw db_error{
      failure_kind::permanent, "",
      fmt::format("invalid database connection string (check DEPOT_DB or --db): {}", reason)};
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
    // Asks the backend to keep its heap: freeing one 1 MiB block (lpad allocates four bytes per
    // character and writes one) raises glibc's trim threshold to 2 MiB, so a backend no longer
    // hands the memory of every COPY back to the kernel and faults it in again on the next one
    // (3,500 brk calls a second and a fifth of PostgreSQL's CPU on `noop`: docs/decisions.md).
    *session << "SELECT length(lpad('', 262144))";
    return session;
  } catch (const soci::soci_error& e) {
    throw db_error{failure_kind::connection_lost, "",
                   fmt::format("cannot connect to the database (check DEPOT_DB or --db): {}",
                               e.get_error_message())};
  }
}

store_settings store_settings_of(const node_settings& s) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  return {s.db, s.schema, duration_cast<microseconds>(s.dedup_window).count(),
          duration_cast<microseconds>(s.saga_retention).count()};
}

namespace {

const store_settings& checked(const store_settings& settings) {
  try {
    check_schema_name(settings.schema);
  } catch (const invalid_setting& e) {
    throw db_error{failure_kind::permanent, "", e.what()};
  }
  if (settings.db.empty())
    throw db_error{failure_kind::permanent, "",
                   "no database configured: set DEPOT_DB or --db to a libpq connection URI"};
  return settings;
}

} // namespace

connection::connection(store_settings settings)
  : settings_(checked(settings))
  , sql_(&statements_of(settings_.schema))
  , session_(open_session(settings_.db)) {}

connection::~connection() = default;

soci::session& connection::session() {
  return *session_;
}

std::string connection::notify_channel() const {
  return names::notify_channel(settings_.schema);
}

bool connection::connected() {
  return connection_ok(*session_);
}

void connection::reconnect() {
  // They belong to the session backend the reconnect replaces.
  prepared_.reset();
  handler_statements_.clear();
  try {
    session_->reconnect();
  } catch (const soci::soci_error& e) {
    throw db_error{failure_kind::connection_lost, "",
                   fmt::format("reconnect failed: {}", e.get_error_message())};
  }
}

prepared_statements& connection::prepared() {
  if (!prepared_)
    prepared_ = std::make_unique<prepared_statements>(*session_, *sql_);
  return *prepared_;
}

} // namespace depot::persistence

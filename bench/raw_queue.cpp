// The baselines' queue through libpq (see raw_queue.hpp). No depot code.
#include "raw_queue.hpp"

#include <chrono>
#include <stdexcept>

#include <fmt/format.h>

namespace bench::raw {

connection::connection(const std::string& db) : conn_(PQconnectdb(db.c_str())) {
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string error = PQerrorMessage(conn_);
    PQfinish(conn_);
    throw std::runtime_error{fmt::format("baseline: cannot connect: {}", error)};
  }
  exec("SET client_min_messages = warning");
}

void connection::exec(const std::string& sql) {
  PQclear(query(sql));
}

PGresult* connection::query(const std::string& sql) {
  auto* r = PQexec(conn_, sql.c_str());
  auto st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
    return r;
  std::string error = PQresultErrorMessage(r);
  PQclear(r);
  throw std::runtime_error{fmt::format("baseline: {}: {}", sql, error)};
}

void connection::prepare(const char* name, const std::string& sql, int params) {
  auto* r = PQprepare(conn_, name, sql.c_str(), params, nullptr);
  auto ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string error = PQresultErrorMessage(r);
  PQclear(r);
  if (!ok)
    throw std::runtime_error{fmt::format("baseline: prepare {}: {}", name, error)};
}

PGresult* connection::run(const char* name, int params, const char* const* values) {
  auto* r = PQexecPrepared(conn_, name, params, values, nullptr, nullptr, 0);
  auto st = PQresultStatus(r);
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
    return r;
  std::string error = PQresultErrorMessage(r);
  PQclear(r);
  throw std::runtime_error{fmt::format("baseline: {}: {}", name, error)};
}

std::string uuid_source::next() {
  auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());
  auto hi = (ms << 16) | 0x7000 | (rng_() & 0x0fff);
  auto lo = (rng_() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                     hi & 0xffff, lo >> 48, lo & 0xffffffffffffULL);
}

void create_queue(connection& admin) {
  admin.exec(fmt::format("DROP SCHEMA IF EXISTS {} CASCADE", schema));
  admin.exec(fmt::format("CREATE SCHEMA {}", schema));
  admin.exec(fmt::format(
    "CREATE TABLE {}.incoming (id uuid PRIMARY KEY, queue text NOT NULL, message_type text "
    "NOT NULL, body text NOT NULL, headers jsonb NOT NULL DEFAULT '{{}}', status text NOT NULL "
    "DEFAULT 'incoming', owner integer NOT NULL DEFAULT 0, execution_time timestamptz NOT "
    "NULL DEFAULT now(), deliver_by timestamptz, attempts integer NOT NULL DEFAULT 0, "
    "priority integer NOT NULL DEFAULT 0, received_at timestamptz NOT NULL DEFAULT now(), "
    "tenant text)",
    schema));
  admin.exec(
    fmt::format("CREATE INDEX incoming_ready ON {}.incoming (queue, priority DESC, "
                "received_at) WHERE status = 'incoming' AND owner = 0",
                schema));
}

void drop_queue(const std::string& db) {
  connection admin{db};
  admin.exec(fmt::format("DROP SCHEMA IF EXISTS {} CASCADE", schema));
}

std::string claim_sql() {
  return fmt::format(
    "DELETE FROM {0}.incoming WHERE id IN (SELECT id FROM {0}.incoming WHERE queue = $1 AND "
    "status = 'incoming' AND owner = 0 AND execution_time <= now() ORDER BY priority DESC, "
    "received_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, message_type, body, headers, "
    "attempts, priority, received_at",
    schema);
}

} // namespace bench::raw

// The baselines' queue: what a durable queue is without depot, through libpq alone. A table shaped
// like depot's `incoming` in the baseline's own schema, time-ordered ids, and the claim
//   DELETE ... WHERE id IN (SELECT id ... ORDER BY priority DESC, received_at LIMIT n
//                           FOR UPDATE SKIP LOCKED) RETURNING ...
// No depot code here and in the baselines that use it: they are what depot is measured against.
#pragma once

#include <random>
#include <string>
#include <string_view>

#include <libpq-fe.h>

namespace bench::raw {

/// The schema of every baseline; dropped when a baseline ends.
inline constexpr std::string_view schema = "bench_baseline";

/// One libpq connection; throws std::runtime_error naming the statement that failed.
class connection {
public:
  explicit connection(const std::string& db);
  ~connection() { PQfinish(conn_); }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void exec(const std::string& sql);
  /// Runs `sql`, which returns rows; the caller PQclear()s the result.
  PGresult* query(const std::string& sql);
  /// Prepares `sql` (with `params` parameters) as statement `name` on this connection.
  void prepare(const char* name, const std::string& sql, int params);
  /// Runs prepared statement `name`; the result has rows (PGRES_TUPLES_OK) or none
  /// (PGRES_COMMAND_OK), anything else throws. The caller PQclear()s it.
  PGresult* run(const char* name, int params, const char* const* values);

  [[nodiscard]] PGconn* native() const { return conn_; }

private:
  PGconn* conn_;
};

/// Time-ordered uuid text (48-bit milliseconds, then random), like depot's v7 ids.
class uuid_source {
public:
  std::string next();

private:
  std::mt19937_64 rng_{std::random_device{}()};
};

/// Drops and creates the baselines' schema with an `incoming` table and ready index shaped like
/// depot's.
void create_queue(connection& admin);
/// Drops the baselines' schema and what the baseline left in it.
void drop_queue(const std::string& db);
/// The claim of up to $2 ready rows of queue $1, returning id, message_type, body, ... .
[[nodiscard]] std::string claim_sql();

} // namespace bench::raw

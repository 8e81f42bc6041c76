// One connection to the message store: the SOCI session, the statement texts of its schema
// (built once per schema) and the statements prepared on it (once per connection). The store's
// concerns (inbox, outbox, dead_letters, node_registry, store_admin, schema) are views over a
// connection. Blocks on Postgres: never use it from a CAF scheduler thread, only from detached
// actors or plain threads. Not thread-safe: one per thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "depot/persistence/db_error.hpp"
#include "depot/runtime/envelope.hpp"
#include "depot/runtime/settings.hpp"
#include "depot/runtime/statement_cache.hpp"

namespace soci {
class session;
}

namespace depot::persistence {

/// Opens a SOCI session on `db`, a libpq connection URI or keyword/value string. Throws
/// db_error naming the option to fix when it cannot connect.
[[nodiscard]] std::unique_ptr<soci::session> open_session(const std::string& db);

/// `db` with its password, if any, replaced by "***" (in a URI's user info, as a `password=`
/// query parameter or keyword): for showing a connection string.
[[nodiscard]] std::string redact_password(std::string db);

/// Where the store lives.
struct store_settings {
  std::string db;                                    ///< libpq connection string or URI
  std::string schema = "depot";                      ///< one schema per service
  micros dedup_window = 24LL * 3600 * 1000000;       ///< how long handled ids are kept for dedup
  micros saga_retention = 7 * 24LL * 3600 * 1000000; ///< how long a finished saga is kept
};

/// Where the store of a node with settings `s` lives.
[[nodiscard]] store_settings store_settings_of(const node_settings& s);

/// The statement texts of one schema (private to persistence/).
struct statements;
/// The statements prepared on one connection (private to persistence/).
struct prepared_statements;

class connection {
public:
  /// Connects; throws db_error naming the option to fix when it cannot.
  explicit connection(store_settings settings);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  [[nodiscard]] soci::session& session();
  [[nodiscard]] const store_settings& settings() const { return settings_; }
  /// The channel LISTEN/NOTIFY wake-ups use for this schema.
  [[nodiscard]] std::string notify_channel() const;

  /// True while the connection is usable.
  [[nodiscard]] bool connected();
  /// Drops the connection and opens a new one; throws db_error (connection_lost) on failure.
  /// Statements prepared on the old connection are gone; they are prepared again on first use.
  void reconnect();

  // -- for the store's concerns ---------------------------------------------------------------

  /// The statement texts of this connection's schema.
  [[nodiscard]] const statements& sql() const { return *sql_; }
  /// The statements prepared on this connection, made on first use.
  [[nodiscard]] prepared_statements& prepared();
  /// The statements handlers prepared on this connection (context::prepared).
  [[nodiscard]] statement_cache& handler_statements() { return handler_statements_; }

private:
  store_settings settings_;
  const statements* sql_;
  std::unique_ptr<soci::session> session_; // outlives the statements prepared on it
  std::unique_ptr<prepared_statements> prepared_;
  statement_cache handler_statements_;
};

} // namespace depot::persistence

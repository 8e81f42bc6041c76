// Private: reaching libpq under a SOCI session, for what SOCI cannot do (multi-statement
// scripts, LISTEN/NOTIFY, connection status), and classifying SOCI's errors.
#pragma once

#include <libpq-fe.h>
#include <soci/soci.h>

#include "depot/persistence/db_error.hpp"

namespace depot::persistence {

/// The libpq connection under a SOCI PostgreSQL session.
[[nodiscard]] PGconn* native_connection(soci::session& sql);
/// True while the session's connection is usable.
[[nodiscard]] bool connection_ok(soci::session& sql);
/// Maps a SOCI error on `sql` to a db_error by SQLSTATE and connection state.
[[nodiscard]] db_error classify(const soci::soci_error& e, soci::session& sql);
/// The same for an error libpq reported directly.
[[nodiscard]] db_error classify(const std::string& sqlstate, const std::string& message,
                                soci::session& sql);

/// Runs `f`, turning SOCI's exceptions into classified db_errors.
template <class F>
auto guarded(soci::session& sql, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const soci::soci_error& e) {
    throw classify(e, sql);
  }
}

} // namespace depot::persistence

// Private: reaching libpq under a SOCI session, for what SOCI cannot do (multi-statement
// scripts, LISTEN/NOTIFY, connection status) and for classifying SOCI's errors.
#pragma once

#include <libpq-fe.h>

#include "depot/persistence/db_error.hpp"

namespace soci {
class session;
class soci_error;
} // namespace soci

namespace depot::persistence {

/// The libpq connection under a SOCI PostgreSQL session.
[[nodiscard]] PGconn* native_connection(soci::session& sql);
/// True while the session's connection is usable.
[[nodiscard]] bool connection_ok(soci::session& sql);
/// Maps a SOCI error on `sql` to a db_error by SQLSTATE and connection state.
[[nodiscard]] db_error classify(const soci::soci_error& e, soci::session& sql);

} // namespace depot::persistence

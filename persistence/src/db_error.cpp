// db_error and the SQLSTATE classification used at the Postgres boundary.
#include "depot/persistence/db_error.hpp"

#include <libpq-fe.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include "pg_native.hpp"

namespace depot::persistence {

namespace {

errc code_of(failure_kind kind) {
  switch (kind) {
    case failure_kind::transient: return errc::db_transient;
    case failure_kind::connection_lost: return errc::db_connection_lost;
    case failure_kind::outcome_unknown: return errc::db_outcome_unknown;
    case failure_kind::permanent: return errc::db_permanent;
  }
  return errc::db_permanent;
}

// Serialization failure, deadlock, lock not available, too many connections.
bool transient_state(const std::string& state) {
  return state == "40001" || state == "40P01" || state == "55P03" || state == "53300";
}

} // namespace

const char* to_string(failure_kind kind) {
  switch (kind) {
    case failure_kind::transient: return "transient";
    case failure_kind::connection_lost: return "connection lost";
    case failure_kind::outcome_unknown: return "outcome unknown";
    case failure_kind::permanent: return "permanent";
  }
  return "permanent";
}

db_error::db_error(failure_kind kind, std::string sqlstate, const std::string& what)
  : depot::error(code_of(kind), what), kind_(kind), sqlstate_(std::move(sqlstate)) {}

bool is_transient(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const db_error& e) {
    return e.kind() == failure_kind::transient;
  } catch (const soci::postgresql_soci_error& e) {
    return transient_state(e.sqlstate());
  } catch (...) {
    return false;
  }
}

db_error classify(const soci::soci_error& e, soci::session& sql) {
  std::string state;
  if (auto* pg = dynamic_cast<const soci::postgresql_soci_error*>(&e))
    state = pg->sqlstate();
  return classify(state, e.get_error_message(), sql);
}

db_error classify(const std::string& sqlstate, const std::string& message, soci::session& sql) {
  auto kind = failure_kind::permanent;
  if (transient_state(sqlstate))
    kind = failure_kind::transient;
  else if (sqlstate.starts_with("08") || sqlstate.starts_with("57P") || !connection_ok(sql))
    kind = failure_kind::connection_lost;
  return db_error{kind, sqlstate, message};
}

} // namespace depot::persistence

// The transaction every envelope completion goes through.
#include "depot/persistence/unit_of_work.hpp"

#include <soci/soci.h>

#include "pg_native.hpp"

namespace depot::persistence {

unit_of_work::unit_of_work(connection& conn) : conn_(conn) {
  guarded(conn_.session(), [this] { conn_.session().begin(); });
  open_ = true;
}

unit_of_work::~unit_of_work() {
  if (open_) {
    try {
      rollback();
    } catch (...) {
      // The connection is gone: Postgres rolls the transaction back itself.
    }
  }
}

void unit_of_work::commit() {
  auto& sql = conn_.session();
  open_ = false;
  try {
    sql.commit();
  } catch (const soci::soci_error& e) {
    auto error = classify(e, sql);
    if (error.kind() == failure_kind::connection_lost)
      throw db_error{failure_kind::outcome_unknown, error.sqlstate(), error.what()};
    throw error;
  }
}

void unit_of_work::rollback() {
  open_ = false;
  guarded(conn_.session(), [this] { conn_.session().rollback(); });
}

void unit_of_work::savepoint(const std::string& name) {
  guarded(conn_.session(), [&] { conn_.session() << "SAVEPOINT " + name; });
}

void unit_of_work::rollback_to(const std::string& name) {
  guarded(conn_.session(), [&] { conn_.session() << "ROLLBACK TO SAVEPOINT " + name; });
}

void unit_of_work::release(const std::string& name) {
  guarded(conn_.session(), [&] { conn_.session() << "RELEASE SAVEPOINT " + name; });
}

} // namespace depot::persistence

// The transaction every envelope completion goes through.
#include "depot/persistence/unit_of_work.hpp"

#include <algorithm>
#include <thread>

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

bool unit_of_work::commit_or_find_out(std::chrono::milliseconds patience) {
  auto& sql = conn_.session();
  std::string xid;
  guarded(sql, [&] { sql << "SELECT pg_current_xact_id()::text", soci::into(xid); });
  try {
    commit();
    return true;
  } catch (const db_error& e) {
    if (e.kind() != failure_kind::outcome_unknown)
      throw;
  }
  auto deadline = std::chrono::steady_clock::now() + patience;
  std::chrono::milliseconds backoff{50};
  for (;;) {
    try {
      conn_.reconnect();
      std::string status;
      soci::indicator known = soci::i_null;
      guarded(sql, [&] {
        sql << "SELECT pg_xact_status(:x::xid8)", soci::use(xid), soci::into(status, known);
      });
      if (known == soci::i_null)
        throw db_error{failure_kind::permanent, "",
                       "the outcome of a commit is unknown: its transaction is too old to look up"};
      if (status != "in progress")
        return status == "committed";
    } catch (const db_error& e) {
      if (e.kind() == failure_kind::permanent || std::chrono::steady_clock::now() > deadline)
        throw;
    }
    if (std::chrono::steady_clock::now() > deadline)
      throw db_error{failure_kind::outcome_unknown, "",
                     "the outcome of a commit is still unknown: its transaction is in progress"};
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds{1000});
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

// Migrations: every version of persistence/sql/ not yet applied, in order, in one transaction.
#include "depot/persistence/schema.hpp"

#include <fmt/format.h>

#include "depot/persistence/names.hpp"
#include "depot/persistence/saga_store.hpp"
#include "migrations.hpp"
#include "pg_native.hpp"
#include "statements.hpp"

namespace depot::persistence {

int latest_schema_version() {
  return migrations().back().version;
}

int schema_version(connection& conn) {
  auto& sql = conn.session();
  return guarded(sql, [&] {
    int exists = 0;
    sql << conn.sql().schema_exists, soci::use(conn.settings().schema), soci::into(exists);
    if (exists == 0)
      return 0;
    int version = 0;
    sql << conn.sql().schema_version, soci::into(version);
    return version;
  });
}

std::vector<int> apply_schema(connection& conn, int up_to,
                              const std::deque<saga_definition>& sagas) {
  auto& sql = conn.session();
  const auto& text = conn.sql();
  return guarded(sql, [&] {
    std::vector<int> applied;
    soci::transaction tr{sql};
    // Serialises concurrent appliers (two nodes starting at once) on this schema.
    auto lock_key = names::migration_lock(conn.settings().schema);
    sql << "SELECT pg_advisory_xact_lock(hashtext(:k))", soci::use(lock_key);
    sql << text.create_schema;
    sql << text.create_version_table;
    int current = 0;
    sql << text.schema_version, soci::into(current);
    for (const auto& m : migrations()) {
      if (m.version <= current)
        continue;
      if (up_to != 0 && m.version > up_to)
        break;
      sql << text.search_path;
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
      sql << text.record_version, soci::use(m.version), soci::use(description);
      sql << "RESET search_path";
      applied.push_back(m.version);
    }
    saga_store{conn}.create_tables(sagas);
    tr.commit();
    return applied;
  });
}

} // namespace depot::persistence

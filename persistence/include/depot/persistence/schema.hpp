// The store's schema: versioned migrations (persistence/sql/) applied in order, idempotent and
// safe to race. Blocks on Postgres.
#pragma once

#include <deque>
#include <vector>

#include "depot/persistence/connection.hpp"
#include "depot/runtime/saga_definition.hpp"

namespace depot::persistence {

/// Creates the schema or migrates it to version `up_to` (0: the newest) on `conn`'s schema, and
/// creates the tables of `sagas` that do not exist; idempotent and safe to race (appliers are
/// serialised by a transaction lock). Returns the versions applied now.
std::vector<int> apply_schema(connection& conn, int up_to = 0,
                              const std::deque<saga_definition>& sagas = {});
/// The schema's version, 0 when it does not exist.
[[nodiscard]] int schema_version(connection& conn);
/// The newest version this library knows.
[[nodiscard]] int latest_schema_version();

} // namespace depot::persistence

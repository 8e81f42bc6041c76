// Saga rows: one table per saga type (saga_<name>), created by `db apply`. In a handling
// transaction the store loads a saga with its row locked and saves it with a version check; for
// operators it lists and shows sagas; the durability agent removes finished ones past their
// retention. A view over one connection. Blocks on Postgres.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "depot/persistence/connection.hpp"
#include "depot/runtime/saga.hpp"

namespace depot::persistence {

/// One saga in a listing.
struct saga_summary {
  std::string type; ///< the saga type's name
  std::string id;
  saga_status status = saga_status::running;
  std::string reason;
  micros created = 0;
  micros updated = 0;
  std::size_t pending_compensations = 0;
};

class saga_store final : public store_access {
public:
  explicit saga_store(connection& conn) : conn_(conn) {}

  // -- in the handling transaction (store_access) ---------------------------------------------
  bool cancel_scheduled(const std::string& id) override;
  std::optional<saga_row> load_saga(const saga_definition& saga, const std::string& id) override;
  /// Inserts a new row (version 0) or updates the row of the version loaded (throws a
  /// db_error when another transaction changed it); a finished saga gets its keep_until.
  void save_saga(const saga_definition& saga, saga_row& row) override;

  // -- operations -----------------------------------------------------------------------------
  /// Creates the tables of `sagas` that do not exist, in the caller's transaction.
  void create_tables(const std::deque<saga_definition>& sagas);
  /// The names of the sagas of `sagas` whose table does not exist.
  [[nodiscard]] std::vector<std::string> missing_tables(const std::deque<saga_definition>& sagas);
  /// The sagas of the given type (all of `sagas` when null) and status (any when null), the
  /// latest updated first, at most `limit`.
  [[nodiscard]] std::vector<saga_summary> list(const std::deque<saga_definition>& sagas,
                                               const saga_definition* type,
                                               std::optional<saga_status> status, int limit);
  /// The saga `id` of type `saga`, unlocked.
  [[nodiscard]] std::optional<saga_row> find(const saga_definition& saga, const std::string& id);
  /// Removes up to `limit` finished sagas of type `saga` past their keep_until; returns how many.
  std::size_t forget_finished(const saga_definition& saga, int limit);

private:
  std::optional<saga_row> read(const saga_definition& saga, const std::string& id, bool lock);

  connection& conn_;
};

} // namespace depot::persistence

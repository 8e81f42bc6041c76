// Saga rows: one table per saga type (saga_<name>), created by `db apply`. In a handling
// transaction the store loads a saga and saves it with a version check; for
// operators it lists and shows sagas; the durability agent removes finished ones past their
// retention. A view over one connection. Blocks on Postgres.
#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
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

/// The saga rows of one connection's transactions. A transaction's rows are read once (a batch
/// preloads the sagas of its envelopes in one statement) and kept in memory;
/// what a handling saves is staged until the handling succeeded (accept) or failed (discard),
/// and the transaction's changed rows are written in one statement per saga type (flush) before
/// it commits.
class saga_store final : public store_access {
public:
  explicit saga_store(connection& conn) : conn_(conn) {}

  // -- in a handling transaction (store_access) -----------------------------------------------
  bool cancel_scheduled(const std::string& id) override;
  /// The saga as this transaction sees it, with what it saved so far.
  std::optional<saga_row> load_saga(const saga_definition& saga, const std::string& id) override;
  /// Stages `row` (its version + 1) until accept or discard.
  void save_saga(const saga_definition& saga, saga_row& row) override;

  /// Reads the sagas `ids` of type `saga` not read yet, in one statement.
  void preload(const saga_definition& saga, const std::vector<std::string>& ids);
  /// The handling that staged rows succeeded: they are the transaction's now.
  void accept();
  /// The handling failed (its savepoint rolled back): its staged rows are dropped.
  void discard();
  /// Writes the transaction's changed rows, each checked against the version it had when read
  /// (a db_error of kind transient when another transaction changed it).
  void flush();
  /// Forgets every row: the transaction ended.
  void clear();

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
  using key = std::pair<const saga_definition*, std::string>;
  struct entry {
    std::optional<saga_row> row; ///< nullopt: no such saga (yet)
    std::int64_t loaded = 0;     ///< the version in the table; 0: not there
    bool dirty = false;
  };

  std::vector<saga_row> select(const saga_definition& saga, const std::vector<std::string>& ids);

  connection& conn_;
  std::map<key, entry> cache_;
  std::map<key, saga_row> pending_;
};

} // namespace depot::persistence

// The one transaction type: every path that completes an envelope goes through it. Rolls back
// unless committed; reports a connection lost during COMMIT as failure_kind::outcome_unknown.
#pragma once

#include <chrono>
#include <string>

#include "depot/persistence/connection.hpp"

namespace depot::persistence {

/// An open transaction on a store connection. Move-only in spirit: not copyable.
class unit_of_work {
public:
  explicit unit_of_work(connection& conn);
  ~unit_of_work();
  unit_of_work(const unit_of_work&) = delete;
  unit_of_work& operator=(const unit_of_work&) = delete;

  [[nodiscard]] connection& conn() { return conn_; }

  /// Commits. Throws db_error; after a connection loss during COMMIT the kind is
  /// outcome_unknown: the caller must find out from the data whether it committed.
  void commit();
  /// Commits, and when the connection is lost during COMMIT finds out what happened: reconnects
  /// and asks the server for the fate of the transaction (its id was read before the COMMIT),
  /// waiting while it is still in progress. Returns true when it committed, false when it did
  /// not (the work must be done again). Throws db_error when it cannot find out in `patience`.
  /// Costs one round trip more than commit(): for work that must not be done twice and leaves no
  /// mark to check (a send's envelopes may be handled and gone by the time it could look).
  bool commit_or_find_out(std::chrono::milliseconds patience);
  /// Rolls back now (the destructor does it too).
  void rollback();

  /// Savepoints scope one envelope's effects inside a batch transaction.
  void savepoint(const std::string& name);
  void rollback_to(const std::string& name);
  void release(const std::string& name);

private:
  connection& conn_;
  bool open_ = false;
};

} // namespace depot::persistence

// How depot classifies Postgres failures: what a failure poisons and whether retrying helps.
// Every database call in persistence/ reports failures through db_error, a depot::error whose
// code (db_transient, db_connection_lost, db_outcome_unknown, db_permanent) follows its kind.
#pragma once

#include <exception>
#include <string>

#include "depot/runtime/error.hpp"

namespace depot::persistence {

/// What a database failure means for the work that hit it.
enum class failure_kind {
  transient,       ///< retry the transaction: serialization failure, deadlock, lock timeout
  connection_lost, ///< the connection is unusable: reconnect with backoff, then retry
  outcome_unknown, ///< the connection died during commit: it may or may not have committed
  permanent,       ///< the statement cannot succeed on this data: retrying will not help
};

[[nodiscard]] const char* to_string(failure_kind);

/// A database failure with its classification and SQLSTATE (empty when there is none). A
/// depot::error whose code follows its kind: db_transient, db_connection_lost,
/// db_outcome_unknown or db_permanent.
class db_error : public depot::error {
public:
  db_error(failure_kind kind, std::string sqlstate, const std::string& what);

  [[nodiscard]] failure_kind kind() const noexcept { return kind_; }
  [[nodiscard]] const std::string& sqlstate() const noexcept { return sqlstate_; }
  /// True when the work may succeed if done again (after a reconnect when the connection died):
  /// every kind but permanent, as depot::retryable(code()).
  [[nodiscard]] bool retryable() const noexcept { return kind_ != failure_kind::permanent; }

private:
  failure_kind kind_;
  std::string sqlstate_;
};

/// True when `error` (a db_error or SOCI's Postgres error, e.g. thrown by a handler's own SQL) is a
/// transient conflict with another transaction: a deadlock, serialization failure or lock timeout.
[[nodiscard]] bool is_transient(const std::exception_ptr& error);

} // namespace depot::persistence

// A saga type as the runtime and the store see it (the typed side is in saga.hpp).
#pragma once

#include <chrono>
#include <functional>
#include <set>
#include <string>

#include "depot/runtime/envelope.hpp"

namespace depot {

class context;
class saga_context;

/// Runs a saga handler on the saga's state (its JSON, read and written back).
using saga_call = std::function<void(std::string& state, saga_context& ctx)>;

/// A saga type: its name, its table and what it handles.
struct saga_definition {
  std::string name;                      ///< e.g. "transfer": its queue, and its type in the CLI
  std::string table;                     ///< "saga_<name>", in the node's schema
  std::string state_type;                ///< the state struct's message type name
  std::set<std::string> starts;          ///< message types that start it
  std::set<std::string> handled;         ///< every message type it handles, the starts too
  std::chrono::microseconds deadline{0}; ///< for the whole saga from its start; 0 = none
  /// Runs for a message whose saga does not exist; null: logged and dropped.
  std::function<void(const envelope&, context&)> not_found;
  /// Runs when the deadline passes; null: the saga compensates.
  saga_call on_deadline;

  /// The saga's internal message types: its deadline, a request to cancel it, and the report
  /// that a compensation handled outside the saga is done.
  [[nodiscard]] std::string deadline_type() const { return name + ".deadline"; }
  [[nodiscard]] std::string cancel_type() const { return name + ".cancel"; }
  [[nodiscard]] std::string compensated_type() const { return name + ".compensated"; }
};

/// Headers of the envelopes a saga sends for itself.
namespace saga_header {
/// On a compensation: "<saga type>/<saga id>". Whoever handles it, the saga learns when it is
/// done (or dead-lettered).
inline constexpr const char* compensation = "depot-saga-compensation";
/// On a timeout: the saga type.
inline constexpr const char* timeout = "depot-saga-timeout";
} // namespace saga_header

} // namespace depot

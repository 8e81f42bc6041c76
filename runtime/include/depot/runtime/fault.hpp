// depot.fault: what the node publishes when an error policy ends an envelope (dead letter or
// discard), committed in the same transaction, for the applications that ask for it
// (routing::publish_faults). Subscribe like to any message: app.handle<depot::fault>(...).
#pragma once

#include <cstdint>
#include <string>

#include "depot/runtime/message.hpp"

namespace depot {

struct fault {
  std::string envelope_id;    ///< the failed envelope's id (its dead letter's id)
  std::string message_type;   ///< its type
  std::string queue;          ///< the queue it failed on
  std::string exception_type; ///< what its handler threw
  std::string exception_message;
  std::int64_t attempts = 0;  ///< handlings that failed, the last one included
  std::string failed_at;      ///< RFC 3339, UTC
  std::string correlation_id; ///< the failed envelope's ("" when it had none)
  std::string action;         ///< "dead-letter" or "discard"
};
DEPOT_MESSAGE(fault, "depot.fault", envelope_id, message_type, queue, exception_type,
              exception_message, attempts, failed_at, correlation_id, action)

} // namespace depot

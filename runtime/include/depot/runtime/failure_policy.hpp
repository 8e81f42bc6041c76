// What happens to an envelope whose handling failed: the decision of its error policy. Pure
// decisions; the handling loop carries them out in the same transaction.
#pragma once

#include <chrono>
#include <exception>
#include <string>

#include "depot/runtime/envelope.hpp"
#include "depot/runtime/error_policy.hpp"

namespace depot {

/// The default error policy of every queue.
struct failure_policy {
  /// Attempts before an envelope goes to dead letters (the first handling counts).
  int max_attempts = 3;
  /// Delay before the first retry; each further retry waits four times longer, with jitter.
  std::chrono::milliseconds retry_delay{500};
  /// Upper bound of a retry delay.
  std::chrono::milliseconds max_retry_delay{60'000};
};

/// The chain of every failure no declared rule matches: retry later with backoff (retry_delay,
/// four times longer each time, at most max_retry_delay, with jitter) until max_attempts
/// attempts, then dead-letter.
[[nodiscard]] error_policy default_error_policy(const failure_policy& policy);

/// The decision for one failure.
struct failure_decision {
  failure_action what = failure_action::dead_letter;
  micros retry_at = 0;                ///< when to retry (retry_later)
  std::chrono::milliseconds pause{0}; ///< how long the queue pauses (pause_queue)
  std::string exception_type;         ///< demangled type of what was thrown
  std::string reason;                 ///< what() of what was thrown
  /// The message itself is wrong (decode_error, unknown_message_type, validation_error): no
  /// retry can help, and it says nothing about what the handler depends on.
  bool bad_input = false;
};

/// Decides for `e`, whose handling threw `error`, by `chain`: this is failure e.attempts + 1.
/// A depot::error whose code is permanent_for_message (an undecodable body, an unknown type, a
/// validation error) is dead-lettered at once whatever the chain: retrying cannot fix it. Past
/// the end of the chain, the envelope is dead-lettered.
[[nodiscard]] failure_decision decide(const error_policy& chain, const envelope& e,
                                      const std::exception_ptr& error);

/// "type: what()" of what was thrown, for logs.
[[nodiscard]] std::string describe(const std::exception_ptr& error);

} // namespace depot

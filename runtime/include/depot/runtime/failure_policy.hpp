// What happens to an envelope whose handling failed: retry later with backoff, or dead-letter.
// Pure decisions; the handling loop carries them out in the same transaction.
#pragma once

#include <chrono>
#include <exception>
#include <string>

#include "depot/runtime/envelope.hpp"

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

/// The decision for one failure.
struct failure_decision {
  enum class action { retry, dead_letter } what = action::dead_letter;
  micros retry_at = 0;        ///< when to retry (action::retry)
  std::string exception_type; ///< demangled type of what was thrown
  std::string reason;         ///< what() of what was thrown
};

/// Decides for `e`, whose handling threw `error`. A depot::error whose code is
/// permanent_for_message (an undecodable body, an unknown type, a validation error) is
/// dead-lettered at once: retrying cannot fix it. Anything else is retried with backoff until
/// max_attempts.
[[nodiscard]] failure_decision decide(const failure_policy& policy, const envelope& e,
                                      std::exception_ptr error);

/// "type: what()" of what was thrown, for logs.
[[nodiscard]] std::string describe(const std::exception_ptr& error);

} // namespace depot

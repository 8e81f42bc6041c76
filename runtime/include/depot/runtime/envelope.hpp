// The envelope: a message body plus the metadata depot needs to route, schedule, expire and
// trace it. Plain data; it knows nothing of Postgres or CAF.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace depot {

/// Microseconds since the Unix epoch: how depot moves times between C++ and Postgres.
using micros = std::int64_t;

/// The current wall-clock time in microseconds since the epoch.
[[nodiscard]] micros now_micros();

/// `at` in RFC 3339 / ISO 8601 form, UTC, to the microsecond: "2026-12-02T20:31:05.000123Z".
[[nodiscard]] std::string iso8601(micros at);

/// A new time-ordered (version 7) UUID in its canonical text form.
[[nodiscard]] std::string new_envelope_id();

/// True for a UUID in canonical text form (hex digits of either case, dashes at 8-13-18-23).
[[nodiscard]] bool is_uuid(std::string_view text);

/// Well-known header names carried in `envelope::headers`.
namespace header {
inline constexpr const char* source = "source";
inline constexpr const char* correlation_id = "correlation-id";
inline constexpr const char* causation_id = "causation-id";
inline constexpr const char* reply_to = "reply-to";
inline constexpr const char* traceparent = "traceparent";
/// Who sent the message, for authorization checks.
inline constexpr const char* principal = "principal";
} // namespace header

/// Where an envelope waits before it is handled (once handled, it is gone from the inbox).
enum class envelope_status { incoming, scheduled };

[[nodiscard]] const char* to_string(envelope_status);

/// A message body (JSON text) with its metadata.
struct envelope {
  std::string id;                             ///< uuid; the dedup key and the CloudEvents id
  std::string queue;                          ///< the local queue that handles it
  std::string message_type;                   ///< registered type name, e.g. bank.debit-account
  std::string body;                           ///< JSON text
  std::map<std::string, std::string> headers; ///< correlation, causation, reply-to, ...
  envelope_status status = envelope_status::incoming;
  micros execution_time = 0; ///< not handled before this time; 0 = now
  micros deliver_by = 0;     ///< discarded when not handled by then; 0 = never
  std::int32_t attempts = 0; ///< failed handling attempts so far
  std::int32_t priority = 0; ///< higher is claimed first
  micros received_at = 0;    ///< when the store accepted it
  std::int64_t seq = 0;      ///< claim order after priority, given by the store; 0 = not stored
  std::string tenant;
  /// The message key (DEPOT_MESSAGE_KEY): envelopes of one queue with the same key are handled
  /// one at a time, in order, on every node; "" = none.
  std::string key;
  /// Its id may arrive again (a transport's redelivery, a caller-given id): the store remembers
  /// it for the dedup window and ignores it until then, even once it was handled.
  bool deduplicated = false;

  /// The value of header `name`, or "" when absent.
  [[nodiscard]] const std::string& header_value(const std::string& name) const;
};

} // namespace depot

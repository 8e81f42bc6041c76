// depot's error vocabulary: one enum naming every failure the library reports, with what it
// means and what to do, and depot::error, the base of every exception depot throws. Callers and
// the failure policy decide by the code, never by exception class. Plain C++: CAF must never
// appear in this header (runtime knows no CAF); docs/errors.md is the table users read.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace depot {

/// Every kind of failure depot reports; depot::error::code() says which one an exception is.
/// The numbers are stable: append new values, never renumber or reuse one. 0 is no value:
/// CAF reads error code 0 as "no error", and these codes are meant to travel in a caf::error.
enum class errc : std::uint8_t {
  /// A message body is not valid JSON of its type: malformed, not an object, nested deeper than
  /// max_json_depth, holding a NUL, a field missing, of the wrong type or out of range. Retrying
  /// cannot change the body: a stored envelope goes to dead letters at once, a send throws to
  /// its caller. Fix the producer.
  decode_error = 1,
  /// A message breaks a rule of its type (its validate()), or a handler finds it cannot carry it
  /// out as asked. Dead-lettered at once like decode_error; fix the message or the sender.
  validation_error,
  /// No queue or endpoint handles the message type given to send, publish or schedule. Thrown
  /// to the caller; register a handler for the type (routing::handle) on the sending node.
  no_route,
  /// A queue received a message type it has no handler for (a producer's mistake, or a handler
  /// removed while its envelopes waited). Dead-lettered at once; replay after adding it.
  unknown_message_type,
  /// An option outside what a node accepts; the message names the option, the value and what
  /// it may be. Change it on the command line, in DEPOT_<NAME> or in the config file.
  invalid_setting,
  /// A node binary's command line is wrong: no or an unknown command, an unknown option, an
  /// option without its value, a command's arguments. The CLI exits 2; see --help.
  invalid_command_line,
  /// node::start could not start the node; the message names the cause and the fix (schema
  /// version, connection budget, an invalid setting, the database). A failed start leaves no
  /// node row and no connection behind: fix the cause and start again.
  startup_failed,
  /// node::request got no reply in time. The request stays stored and may still be handled;
  /// its late reply is dropped. Raise the timeout, or check that the queue has workers.
  request_timeout,
  /// The transaction lost a conflict with another one: serialization failure, deadlock, lock
  /// timeout, or the server had no connection slot free. Retry the transaction.
  db_transient,
  /// The connection is unusable (the server went away, or refused it). Reconnect with backoff,
  /// then retry the transaction.
  db_connection_lost,
  /// The connection died during COMMIT: the transaction may or may not have committed. Find
  /// out from the data before doing it again; depot's own inserts are idempotent by envelope id,
  /// so depot retries them.
  db_outcome_unknown,
  /// The statement cannot succeed on this data or this schema (a constraint, a syntax error, a
  /// missing table, a bad connection string): retrying will not help. Fix the cause.
  db_permanent,
  /// An authorization check of the handler's middleware refused the message (its principal may
  /// not do this). Dead-lettered at once, never retried; replay it once access is granted.
  unauthorized,
};

/// The stable snake_case name of `code`, as spelled in the enum ("db_transient"); "unknown" for
/// a number that names no code.
[[nodiscard]] const char* to_string(errc code);

/// True when doing the same work again may succeed: db_transient, db_connection_lost (after a
/// reconnect) and db_outcome_unknown (for work that is safe to do twice).
[[nodiscard]] bool retryable(errc code);

/// True when handling the same message again can never succeed, whatever the attempt:
/// decode_error, validation_error, unknown_message_type and unauthorized. The failure policy
/// dead-letters an envelope whose handling threw such an error at the first attempt.
[[nodiscard]] bool permanent_for_message(errc code);

/// The base of every exception depot throws: what() is the reason, naming the fix where there
/// is one; code() is the kind of failure. Catch `const depot::error&` and decide by code().
class error : public std::runtime_error {
public:
  error(errc code, const std::string& what);

  [[nodiscard]] errc code() const noexcept { return code_; }

private:
  errc code_;
};

} // namespace depot

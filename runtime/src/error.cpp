// The names of depot's error codes and the predicates the failure policy and retry loops use.
// The names are stable: logs, dead letters and docs/errors.md spell codes this way.
#include "depot/runtime/error.hpp"

namespace depot {

const char* to_string(errc code) {
  switch (code) {
    case errc::decode_error: return "decode_error";
    case errc::validation_error: return "validation_error";
    case errc::no_route: return "no_route";
    case errc::unknown_message_type: return "unknown_message_type";
    case errc::invalid_setting: return "invalid_setting";
    case errc::invalid_command_line: return "invalid_command_line";
    case errc::startup_failed: return "startup_failed";
    case errc::request_timeout: return "request_timeout";
    case errc::db_transient: return "db_transient";
    case errc::db_connection_lost: return "db_connection_lost";
    case errc::db_outcome_unknown: return "db_outcome_unknown";
    case errc::db_permanent: return "db_permanent";
    case errc::unauthorized: return "unauthorized";
  }
  return "unknown";
}

bool retryable(errc code) {
  return code == errc::db_transient || code == errc::db_connection_lost ||
         code == errc::db_outcome_unknown;
}

bool permanent_for_message(errc code) {
  return code == errc::decode_error || code == errc::validation_error ||
         code == errc::unknown_message_type || code == errc::unauthorized;
}

error::error(errc code, const std::string& what) : std::runtime_error(what), code_(code) {}

} // namespace depot

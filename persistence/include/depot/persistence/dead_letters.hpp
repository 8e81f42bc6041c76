// Dead letters: envelopes whose handling failed for good, with the reason. Operators list,
// show, replay and purge them; a replay moves a dead letter back to the inbox as a new attempt.
// A view over one connection. Blocks on Postgres.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "depot/persistence/connection.hpp"

namespace depot::persistence {

/// One dead letter as stored.
struct dead_letter {
  std::string id, queue, message_type, body;
  std::string headers; ///< a JSON object
  std::string exception_type, exception_message;
  int attempts = 0;   ///< handlings that failed, the last one included
  std::string source; ///< the service that sent it ("" when unknown)
  micros failed_at = 0;
  std::string message_key, tenant;
  int priority = 0;
};

/// Which dead letters an operation takes: every given condition holds (none given: all).
struct dead_letter_filter {
  std::vector<std::string> ids; ///< these ids only
  std::string queue;
  std::string message_type;
  std::string exception_type;
  /// Failed at or after this time: a timestamp, or an interval before now ("1 hour", "30min").
  std::string since;

  [[nodiscard]] bool empty() const {
    return ids.empty() && queue.empty() && message_type.empty() && exception_type.empty() &&
           since.empty();
  }
};

class dead_letters {
public:
  explicit dead_letters(connection& conn) : conn_(conn) {}

  /// Inside the caller's transaction: records `e` with the exception's type and message (made
  /// valid text whatever bytes they hold); a second failure of the same id replaces the reason.
  /// One that is not `replayable` (a Kafka record that never became an envelope: it has no
  /// queue to go back to) is kept for operators to read, never replayed.
  void add(const envelope& e, std::string_view exception_type, std::string_view exception_message,
           bool replayable = true);

  /// The dead letters `filter` takes, the latest first; at most `limit` (0: all).
  [[nodiscard]] std::vector<dead_letter> list(const dead_letter_filter& filter, int limit = 0);
  /// The dead letter `id`, if there is one.
  [[nodiscard]] std::optional<dead_letter> find(const std::string& id);
  /// Moves the replayable dead letters `filter` takes back to the inbox as new attempts (attempts
  /// 0, ready now, after what waits in their queue), forgets their ids' dedup records so that they
  /// are handled again, and wakes their queues, all in the caller's transaction. Returns the ids
  /// moved: a dead letter is replayed once, a second replay finds nothing.
  std::vector<std::string> replay(const dead_letter_filter& filter);
  /// Deletes the dead letters `filter` takes; returns how many went.
  std::size_t purge(const dead_letter_filter& filter);

private:
  connection& conn_;
};

} // namespace depot::persistence

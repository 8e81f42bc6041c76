// What operators and start-up checks read from the store: envelope counts, pending work, the
// server's connection budget. A view over one connection. Blocks on Postgres.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "depot/persistence/connection.hpp"

namespace depot::persistence {

/// Envelope count of one queue in one status (or a dead-letter count with status "dead").
struct queue_count {
  std::string queue;
  std::string status;
  std::int64_t count = 0;
};

/// A queue that an error policy paused.
struct queue_pause {
  std::string queue;
  micros until = 0;
  std::string reason;
};

/// A circuit breaker that is not closed, on one registered node.
struct breaker_row {
  std::string queue;
  int node = 0;
  std::string state; ///< "open" or "half-open"
  micros open_until = 0;
  std::string reason;
  std::string message_type; ///< of the handler it guards; "" for the queue's breaker
};

/// How many connections the server has left for this user.
struct connection_budget {
  std::int64_t max = 0;  ///< max_connections
  std::int64_t used = 0; ///< client connections open now
  std::int64_t free = 0; ///< what this user may still open (superuser_reserved_connections
                         ///< are not for other users)
};

class store_admin {
public:
  explicit store_admin(connection& conn) : conn_(conn) {}

  /// Envelope counts per queue and status, plus dead letters per queue (status "dead").
  std::vector<queue_count> counts();
  /// The queues paused now, by name.
  std::vector<queue_pause> paused_queues();
  /// The circuit breakers open or half-open on registered nodes.
  std::vector<breaker_row> open_breakers();
  /// Envelopes ready now or overdue: incoming, plus scheduled ones whose time has come.
  [[nodiscard]] std::int64_t pending();
  /// Ready envelopes of `queues`, counted up to `cap` (a bound is all a back-pressure check
  /// needs: counting stops there).
  [[nodiscard]] std::int64_t ready(const std::vector<std::string>& queues, std::int64_t cap);
  /// Deletes every envelope and dead letter of `queues` (ready, scheduled, handled ids kept for
  /// dedup), and the outbox rows of those that are destinations ("kafka://topic"): a reset for
  /// tests and samples. Claimed envelopes are deleted too, so never purge a queue that a
  /// running node is handling. Returns how many rows went.
  std::size_t purge(const std::vector<std::string>& queues);
  /// The connections the server has left.
  [[nodiscard]] connection_budget free_connections();

private:
  connection& conn_;
};

} // namespace depot::persistence

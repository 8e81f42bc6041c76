// LISTEN/NOTIFY wake-ups between processes sharing a store: senders notify once per transaction
// (see inbox::insert), a listener per node wakes its local queues.
// Blocks in poll(): run it on a detached actor or its own thread.
#pragma once

#include <chrono>
#include <string>
#include <vector>

struct pg_conn;

namespace depot::persistence {

/// One wake-up: the node that sent it (0 = a process without a node) and the ready queues.
struct wake_notice {
  int sender = 0;
  std::vector<std::string> queues;
};

class notification_listener {
public:
  /// Connects with libpq and listens on `channel`; throws db_error when it cannot.
  notification_listener(std::string db, std::string channel);
  ~notification_listener();
  notification_listener(const notification_listener&) = delete;
  notification_listener& operator=(const notification_listener&) = delete;

  /// Waits up to `timeout` for notifications and returns those that arrived. On a lost
  /// connection it tries to reconnect once and throws db_error when that fails.
  std::vector<wake_notice> wait(std::chrono::milliseconds timeout);

private:
  void connect();

  std::string db_;
  std::string channel_;
  ::pg_conn* conn_ = nullptr;
};

/// Parses a payload "sender|queue,queue".
[[nodiscard]] wake_notice parse_wake_notice(const std::string& payload);

} // namespace depot::persistence

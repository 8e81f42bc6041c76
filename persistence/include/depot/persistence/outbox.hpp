// The outbox: envelopes in `outgoing` for a transport to deliver (a Kafka topic, a remote node);
// `envelope::queue` names the destination ("kafka://bank.events"). One relay per store sends
// them: it holds the relay lock on its connection, reads what is due in the order it was
// stored, delivers, then removes what was delivered. A view over one connection. Blocks on
// Postgres.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "depot/persistence/connection.hpp"

namespace depot::persistence {

/// Envelopes waiting for one destination.
struct outbox_backlog {
  std::string destination;
  std::int64_t count = 0;
  micros oldest = 0; ///< when the oldest was stored
};

class outbox {
public:
  explicit outbox(connection& conn) : conn_(conn) {}

  /// Inside the caller's transaction: stores envelopes for delivery; ids already there are
  /// skipped. A scheduled envelope (status scheduled) is due at its execution_time.
  void insert(const std::vector<envelope>& envelopes);
  /// Tries to take the relay lock of this store on this connection's session: true while this
  /// connection holds it (it is released when the connection closes). Only the holder relays,
  /// so each destination is sent in order by one process.
  bool lock_relay();
  /// Up to `limit` due envelopes bound for `destinations`, destination after destination, each
  /// in the order they were stored (seq). `received_at` is when each was stored, `key` its message
  /// key. Reads only: call it while holding the relay lock.
  std::vector<envelope> pending(const std::vector<std::string>& destinations, int limit);
  /// Deletes delivered envelopes; returns how many it deleted.
  std::size_t remove(const std::vector<std::string>& ids);
  /// Counts a failed delivery attempt of each of `ids`.
  void count_attempt(const std::vector<std::string>& ids);
  /// What waits, per destination.
  [[nodiscard]] std::vector<outbox_backlog> backlog();

private:
  connection& conn_;
};

} // namespace depot::persistence

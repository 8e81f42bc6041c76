// The node registry: the rows of live nodes, their advisory locks, heartbeats and health, and
// the removal of dead nodes (what they held needs no recovery: a node's claims die with its
// transactions, and the outbox relay's lock with its connection). A view over one connection; the
// connection that registers a node holds its advisory lock and must stay open while the node lives.
// Blocks on Postgres.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "depot/persistence/connection.hpp"

namespace depot::persistence {

/// The node row a process holds while it runs.
struct node_registration {
  std::string id; ///< uuid of this incarnation
  int number = 0; ///< its number among the live nodes
};

/// What a node's row says of its health.
struct node_health_row {
  std::string health = "healthy"; ///< healthy, unhealthy or failed
  std::string reason;
};

/// What a node tells its peers in its row, with every heartbeat.
struct node_presence {
  std::string uri;                 ///< host:port of its node actor; "" = not listening
  std::vector<std::string> queues; ///< the queues it serves
  std::vector<int> peers;          ///< the nodes it is connected to
};

/// A registered node as `cluster status` shows it.
struct cluster_member {
  int number = 0;
  node_presence presence;
  micros started = 0;
  micros heartbeat = 0; ///< its last
  std::string health;
  std::string version;
  bool leader = false; ///< holds the leader's lock
};

/// A registered node as `health` shows it.
struct node_status {
  int number = 0;
  node_health_row health;
  micros silent_for = 0; ///< since its last heartbeat
};

class node_registry {
public:
  explicit node_registry(connection& conn) : conn_(conn) {}

  /// Registers a node and takes its number's advisory lock on this connection. `number` 0 picks
  /// a free number. Refuses a number another live node holds.
  node_registration register_node(int number, std::string_view uri, std::string_view version);
  /// Takes the advisory lock that marks node `number` alive (again, after a reconnect).
  bool lock_number(int number);
  /// Refreshes the heartbeat, the health and the presence; re-inserts the row when another
  /// node declared this one dead.
  void heartbeat(const node_registration& self, std::string_view version,
                 const node_health_row& health = {}, const node_presence& presence = {});
  /// Takes the leader's lock on this connection (the one that registered the node) unless
  /// another connection holds it. True while this connection holds it; a lost connection loses
  /// it, and another node takes it.
  bool try_lead();
  /// Every registered node with its presence, by number; the one whose connection holds the
  /// leader's lock is marked.
  [[nodiscard]] std::vector<cluster_member> members();
  /// Every registered node, by number.
  [[nodiscard]] std::vector<node_status> statuses();
  /// Removes the node row (clean shutdown).
  void deregister(const node_registration& self);
  /// Removes the rows of dead nodes. A node is dead when its heartbeat is older than `stale_after`
  /// or its advisory lock is not held. Returns the numbers of the nodes it removed.
  std::vector<int> recover_stale(micros stale_after);

private:
  connection& conn_;
};

} // namespace depot::persistence

// Cluster membership. Every node publishes its node actor through CAF's middleman at
// cluster-host:cluster-port and records that address in its row; its node actor connects to
// the node actors of the other registered nodes, monitors them and reconnects with backoff
// after a loss. The heartbeat tells it, every beat, which nodes are registered, and writes
// whom it is connected to. The leader is whichever node holds the leader's advisory lock:
// Postgres decides, never CAF membership. Nothing here blocks: the node actor connects
// through the middleman actor's asynchronous connect.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "depot/persistence/node_registry.hpp"

namespace depot {

/// What the node's parts share of the cluster. Thread-safe.
class cluster_view {
public:
  /// This node's presence, as its heartbeat writes it into its row.
  [[nodiscard]] persistence::node_presence presence() const;
  void set_uri(std::string uri);
  void set_queues(std::vector<std::string> queues);
  void set_peers(std::vector<int> peers);

  /// The node actor (null before the node starts and after it stops).
  [[nodiscard]] caf::actor node_actor() const;
  void set_node_actor(caf::actor a);

  /// Whether this node holds the leader's lock (set by the heartbeat).
  std::atomic<bool> leader{false};
  /// Whether an operator asked this node to drain (`cluster drain`): finish, stop, exit 0.
  std::atomic<bool> drain_requested{false};

private:
  mutable std::mutex mutex_;
  persistence::node_presence presence_;
  caf::actor node_actor_;
};

/// The registered nodes, as the heartbeat tells the node actor: (members, numbers, uris).
using members_atom = caf::atom_constant<caf::atom("members")>;
/// A node actor's greeting to a peer it connected to: (hello, number).
using hello_atom = caf::atom_constant<caf::atom("hello")>;
/// An operator's request that the node drain: (drain) -> ok.
using drain_atom = caf::atom_constant<caf::atom("drain")>;

/// Spawns the node actor of node `number`, which keeps `view`'s peers up to date.
[[nodiscard]] caf::actor spawn_node_actor(caf::actor_system& system, int number,
                                          std::shared_ptr<cluster_view> view);

/// "host:port" of a node actor, split; false when `uri` is not of that form.
[[nodiscard]] bool split_uri(const std::string& uri, std::string& host, std::uint16_t& port);

} // namespace depot

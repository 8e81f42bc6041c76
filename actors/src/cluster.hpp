// Cluster membership. Every node publishes its node actor through CAF's middleman at
// cluster-host:cluster-port and records that address in its row; its node actor connects to
// the node actors of the other registered nodes, monitors them and reconnects with backoff
// after a loss. The heartbeat tells it, every beat, which nodes are registered, and writes
// whom it is connected to. The leader is whichever node holds the leader's advisory lock:
// Postgres decides, never CAF membership. Nothing here blocks: the node actor connects
// through the middleman actor's asynchronous connect.
#pragma once

#include <atomic>
#include <functional>
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

/// The registered nodes, as the heartbeat tells the node actor: (members, numbers, uris, and
/// the queues each serves).
using members_atom = caf::atom_constant<caf::atom("members")>;
/// A node actor's greeting to a peer it connected to: (hello, number).
using hello_atom = caf::atom_constant<caf::atom("hello")>;
/// Ready envelopes for queues this node does not serve, committed by it: (peerwake, queues); its
/// node actor tells the peers that serve them.
using peer_wake_atom = caf::atom_constant<caf::atom("peerwake")>;
/// A peer's news of ready envelopes in queues this node serves: (wake, queues).
using wake_atom = caf::atom_constant<caf::atom("wake")>;
/// An operator's request that the node drain: (drain) -> ok.
using drain_atom = caf::atom_constant<caf::atom("drain")>;

/// Wakes this node's workers of `queues`.
using local_wake = std::function<void(const std::vector<std::string>& queues)>;

/// Spawns the node actor of node `number`, which keeps `view`'s peers up to date and wakes
/// this node's workers through `wake` when a peer tells it of ready envelopes.
[[nodiscard]] caf::actor spawn_node_actor(caf::actor_system& system, int number,
                                          std::shared_ptr<cluster_view> view, local_wake wake);

/// "host:port" of a node actor, split; false when `uri` is not of that form.
[[nodiscard]] bool split_uri(const std::string& uri, std::string& host, std::uint16_t& port);

} // namespace depot

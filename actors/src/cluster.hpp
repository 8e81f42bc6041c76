// Cluster membership. Every node publishes its node actor through CAF's middleman at
// cluster-host:cluster-port and records that address in its row; its node actor connects to
// the node actors of the other registered nodes, monitors them and reconnects with backoff
// after a loss. The heartbeat tells it, every beat, which nodes are registered, and writes
// whom it is connected to. The leader is whichever node holds the leader's advisory lock:
// Postgres decides, never CAF membership. Nothing here blocks: the node actor connects
// through the middleman actor's asynchronous connect.
//
// Work travels between node actors too: wake-ups for queues a node does not serve, buffered
// envelopes for such queues (memory only: they never touch Postgres), replies to requests made
// on another node, and requests from short-lived clients (the `request` command).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include "depot/persistence/node_registry.hpp"
#include "depot/runtime/endpoint.hpp"
#include "depot/runtime/settings.hpp"

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

/// Buffered envelopes for queues this node does not serve: (peerbuf, envelopes); its node
/// actor hands each queue's to a connected peer that serves it.
using peer_buffered_atom = caf::atom_constant<caf::atom("peerbuf")>;
/// A peer's buffered envelopes for queues this node serves: (buffered, envelopes).
using buffered_atom = caf::atom_constant<caf::atom("buffered")>;
/// A reply to a request another node made: (peerreply, reply); its node actor sends it there.
using peer_reply_atom = caf::atom_constant<caf::atom("peerreply")>;
/// A peer's reply to a request this node made: (reply, reply).
using reply_atom = caf::atom_constant<caf::atom("reply")>;
/// A client's request: (ask, type, body, timeout in ms) -> (reply type, reply body, failure).
/// The node sends it as its own request and answers with the reply, or with a one-line failure
/// (and empty type and body).
using ask_atom = caf::atom_constant<caf::atom("ask")>;

/// What the node actor does on its own node.
struct node_hooks {
  /// Wakes this node's workers of `queues`.
  std::function<void(const std::vector<std::string>& queues)> wake;
  /// Hands buffered envelopes of queues this node serves to its workers.
  std::function<void(std::vector<envelope>)> deliver;
  /// Hands a reply to the request of this node it answers.
  std::function<void(reply_message)> reply;
  /// Sends a request and waits for its reply; throws depot::error. Blocks: the node actor
  /// calls it on a detached actor of its own.
  std::function<reply_message(const std::string& type, std::string body,
                              std::chrono::milliseconds timeout)>
    ask;
};

/// Spawns the node actor of node `number`, which keeps `view`'s peers up to date and carries
/// work to and from them, doing its own node's part through `hooks`. With `tls` it connects to
/// them through CAF's OpenSSL module.
[[nodiscard]] caf::actor spawn_node_actor(caf::actor_system& system, int number,
                                          std::shared_ptr<cluster_view> view, node_hooks hooks,
                                          bool tls);

/// Loads what node actors and their clients need into `config`: CAF's middleman, the types
/// they exchange and, when `settings` ask for TLS between nodes, CAF's OpenSSL module with the
/// node's certificate, key and CA. Call once per config, before its actor system exists.
void load_cluster_modules(caf::actor_system_config& config, const node_settings& settings);

/// Publishes `node_actor` at `host:port` (port 0: a free one), over TLS when `tls`; the port.
[[nodiscard]] caf::expected<std::uint16_t> publish_node_actor(const caf::actor& node_actor,
                                                              const std::string& host,
                                                              std::uint16_t port, bool tls);

/// The node actor published at `host:port`, over TLS when `tls`. Blocks: for clients.
[[nodiscard]] caf::expected<caf::actor> remote_node_actor(caf::actor_system& system,
                                                          const std::string& host,
                                                          std::uint16_t port, bool tls);

/// The node number of a reply address ("node:<number>"), or 0.
[[nodiscard]] int node_of_address(const std::string& address);

/// How CAF serializes an envelope between nodes.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelope& x) {
  return f(caf::meta::type_name("depot.envelope"), x.id, x.queue, x.message_type, x.body, x.headers,
           x.status, x.execution_time, x.deliver_by, x.attempts, x.priority, x.received_at, x.seq,
           x.tenant, x.key, x.deduplicated);
}

/// How CAF serializes a reply between nodes.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reply_message& x) {
  return f(caf::meta::type_name("depot.reply"), x.reply_to, x.request_id, x.message_type, x.body);
}

/// "host:port" of a node actor, split; false when `uri` is not of that form.
[[nodiscard]] bool split_uri(const std::string& uri, std::string& host, std::uint16_t& port);

} // namespace depot

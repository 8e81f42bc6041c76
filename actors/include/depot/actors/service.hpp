// The room in a node for more actors: a service is a part of a node (the queue workers, the
// heartbeat, the durability agent and the wake listener are services; a transport relay, a saga
// host or cluster membership is one more) that the node starts under its supervisor once it is
// registered, and stops with it. A service sees the node only through node_context: its number,
// settings, routes, new store connections, wake-ups and health, never the node's internals.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include "depot/actors/node.hpp"
#include "depot/persistence/connection.hpp"
#include "depot/runtime/error.hpp"

namespace depot {

/// One actor the node's supervisor keeps running: spawned at start, restarted with backoff when
/// it fails, stopped with the node.
struct supervised {
  std::string label; ///< names the actor in logs and health reasons, e.g. "queue worker q#1"
  /// Spawns an incarnation; it should call fail_on_exception() first thing. Actors that block
  /// (on Postgres, a broker, a socket) must be spawned detached.
  std::function<caf::actor(caf::actor_system&)> spawn;
  /// Publishes the current incarnation (e.g. for wake-ups); may be empty.
  std::function<void(const caf::actor&)> publish;
};

/// `code` as a CAF error of category "depot" (the code's number, see errc), with `reason` as its
/// context: how depot's actors report a failure across CAF (exit reasons, request errors).
[[nodiscard]] caf::error make_error(errc code, std::string reason);

/// Makes an exception that escapes a handler of `self` end it with an error carrying
/// "type: what()", after `give_back` ran (may be empty): what the actor held goes back first. A
/// depot::error ends it with its code (category "depot"), anything else with
/// caf::sec::runtime_error.
void fail_on_exception(caf::scheduled_actor* self, std::function<void()> give_back = {});

/// What a service may use of the node it runs in. Thread-safe: actors call it from their own
/// threads.
class node_context {
public:
  virtual ~node_context() = default;
  /// The node's number among the live nodes (valid once the node is registered).
  [[nodiscard]] virtual int number() const = 0;
  [[nodiscard]] virtual const node_settings& settings() const = 0;
  [[nodiscard]] virtual const routing& app() const = 0;
  /// A new connection to the node's store (blocks; throws db_error).
  [[nodiscard]] virtual std::unique_ptr<persistence::connection> connect() const = 0;
  /// Tells this node's workers of `queues` that envelopes are ready (after a commit); a name
  /// "transport://address" wakes that transport's relay (see on_outbox).
  virtual void wake(const std::vector<std::string>& queues) = 0;
  /// Calls `wake` whenever envelopes for endpoints of `transport` were committed to the outbox
  /// (by this node, or by another process that notified): how a relay learns of work without
  /// polling. Register from service::actors(); `wake` must be cheap and thread-safe.
  virtual void on_outbox(std::string transport, std::function<void()> wake) = 0;
  /// Healthy, unhealthy or failed, with the reason.
  [[nodiscard]] virtual node_health health() const = 0;
  /// Whether this node leads the cluster: the one node that recovers dead nodes' work, promotes
  /// due scheduled envelopes and cleans up.
  [[nodiscard]] virtual bool leader() const = 0;
};

/// A part of a node. Add it with node::add_service before node::start.
class service {
public:
  virtual ~service() = default;
  /// Names the service in logs.
  [[nodiscard]] virtual std::string name() const = 0;
  /// Database connections its actors hold at once, for the start-up check of the server's
  /// connection budget.
  [[nodiscard]] virtual std::size_t connections() const = 0;
  /// Called once, when the node is registered: the actors to run under the node's supervisor.
  /// `node` outlives them.
  [[nodiscard]] virtual std::vector<supervised> actors(node_context& node) = 0;
  /// Called when the node stops, after its actors ended and before the actor system goes:
  /// drop every actor handle kept (the system waits for every actor still referenced).
  virtual void stopped() {}
};

} // namespace depot

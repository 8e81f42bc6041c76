// A depot node: a CAF actor system hosting services on a shared Postgres store. Built in: the
// queue workers of every queue of the application, the heartbeat, the durability agent and the
// wake-up listener; more (a transport relay, a saga host, cluster membership) plug in through
// add_service (see service.hpp). CAF stays behind this header; the send functions block on
// Postgres on the caller's thread, so never call them from inside an actor.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "depot/persistence/dead_letters.hpp"
#include "depot/persistence/store_admin.hpp"
#include "depot/runtime/context.hpp"
#include "depot/runtime/routing.hpp"
#include "depot/runtime/settings.hpp"

namespace caf {
class actor_system_config;
}

namespace depot {

class service;

/// Thrown by node::start with the reason and the fix.
class startup_error : public error {
public:
  explicit startup_error(const std::string& what) : error(errc::startup_failed, what) {}
};

/// Thrown by node::request when no reply arrived in time.
class request_timeout : public error {
public:
  explicit request_timeout(const std::string& what) : error(errc::request_timeout, what) {}
};

/// What this node did since it started.
struct node_stats {
  std::uint64_t handled = 0;
  std::uint64_t expired = 0;
  std::uint64_t retried = 0;
  std::uint64_t dead_lettered = 0;
  std::uint64_t discarded = 0;    ///< dropped by an error policy
  std::uint64_t deferred = 0;     ///< put back for later by middleware (a rate limit)
  std::uint64_t claims = 0;       ///< claims of durable queues' workers, empty ones included
  std::uint64_t empty_claims = 0; ///< claims that found nothing to take
};

/// Whether a node's actors keep running. A failed actor is restarted; one that fails again
/// within restart-window makes the node unhealthy, more than max-restarts failures there make
/// it failed: it must stop (the CLI's `run` then exits 1 with the reason).
struct node_health {
  enum class state { healthy, unhealthy, failed } status = state::healthy;
  std::string reason; ///< empty when healthy
};

/// "healthy", "unhealthy" or "failed".
[[nodiscard]] const char* to_string(node_health::state);

class node {
public:
  /// `app` must outlive the node. The actor system runs with CAF's default configuration.
  node(const routing& app, node_settings settings);
  /// As above, with the actor system configured by `config` (e.g. the CLI's, which parsed the
  /// command line and config file); `config` must outlive the node.
  node(const routing& app, node_settings settings, caf::actor_system_config& config);
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  /// Checks the settings, connects, provisions or checks the schema, checks that the server has
  /// the connections this node needs, registers the node and spawns its actors under a
  /// supervisor. Throws startup_error; a failed start leaves no node row behind.
  void start();
  /// Stops the actors, gives unfinished envelopes back and deregisters. Idempotent.
  void stop();

  /// Adds a service before start(): its actors run under the node's supervisor from start to
  /// stop, and its connections count in the start-up check of the server's budget.
  void add_service(std::unique_ptr<service> s);

  /// This node's number among the live nodes.
  [[nodiscard]] int number() const;
  [[nodiscard]] const node_settings& settings() const;
  [[nodiscard]] node_stats stats() const;
  /// Healthy, unhealthy or failed, with the reason; also written to the node's row.
  [[nodiscard]] node_health health() const;
  /// Whether an operator asked this node to drain (`cluster drain`, over CAF): the process
  /// running it should stop() it, which finishes what its workers hold, and exit 0. `run`
  /// does.
  [[nodiscard]] bool drain_requested() const;

  /// Sends `m` durably (one transaction) to the queue that handles its type.
  template <message T>
  void send(const T& m, send_options options = {}) {
    send_bodies(type_name_of<T>(), {to_json(m)}, std::move(options), 0, dispatch::send);
  }

  /// Sends all of `ms` in one transaction.
  template <message T>
  void send_all(const std::vector<T>& ms, send_options options = {}) {
    std::vector<std::string> bodies;
    bodies.reserve(ms.size());
    for (const auto& m : ms)
      bodies.push_back(to_json(m));
    send_bodies(type_name_of<T>(), std::move(bodies), std::move(options), 0, dispatch::send);
  }

  /// Sends `m` to every queue subscribed to its type.
  template <message T>
  void publish(const T& m, send_options options = {}) {
    send_bodies(type_name_of<T>(), {to_json(m)}, std::move(options), 0, dispatch::publish);
  }

  /// Sends `m` to be handled after `delay`. Returns its envelope id, for cancel.
  template <message T, class Rep, class Period>
  std::string schedule(const T& m, std::chrono::duration<Rep, Period> delay,
                       send_options options = {}) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(delay).count();
    return send_bodies(type_name_of<T>(), {to_json(m)}, std::move(options), now_micros() + us,
                       dispatch::send)
      .front();
  }

  /// Sends `m` to be handled at `at`. Returns its envelope id, for cancel.
  template <message T>
  std::string schedule(const T& m, std::chrono::system_clock::time_point at,
                       send_options options = {}) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(at.time_since_epoch()).count();
    return send_bodies(type_name_of<T>(), {to_json(m)}, std::move(options), us, dispatch::send)
      .front();
  }

  /// Cancels the scheduled envelope `id`: it will not be handled. False when it no longer waits
  /// (handled, being handled, or unknown).
  bool cancel(const std::string& id);

  /// Asks saga `saga` (its type's name) `id` to compensate, durably: its queue handles the
  /// request like a step, on whichever node serves it. Throws no_route for an unknown type.
  void cancel_saga(std::string_view saga, const std::string& id, std::string reason = {});

  /// Sends `m` and waits for the handler's reply of type R. Throws request_timeout.
  template <message R, message T>
  R request(const T& m, std::chrono::milliseconds timeout = std::chrono::seconds{30}) {
    auto reply = request_body(type_name_of<T>(), to_json(m), timeout);
    if (reply.message_type != type_name_of<R>())
      throw decode_error{"reply of type '" + reply.message_type + "', expected '" +
                         std::string{type_name_of<R>()} + "'"};
    return from_json<R>(reply.body);
  }

  /// Sends JSON bodies of a registered type in one transaction; returns the envelope ids. A
  /// transient failure, a lost connection or an unknown commit outcome is retried (30 s at
  /// most) with the same ids, so a send is stored once.
  std::vector<std::string> send_bodies(std::string_view type, std::vector<std::string> bodies,
                                       send_options options, micros at, dispatch how);

  /// Deletes every envelope and dead letter of `queues` from the store (see
  /// persistence::store_admin::purge): a reset for tests and samples, before anything is sent.
  std::size_t purge(const std::vector<std::string>& queues);
  /// Moves the dead letters `filter` takes back to their queues as first attempts (see
  /// persistence::dead_letters::replay); returns their ids.
  std::vector<std::string> replay_dead_letters(const persistence::dead_letter_filter& filter);
  /// Envelope counts per queue and status from the store (dead letters as status "dead").
  [[nodiscard]] std::vector<persistence::queue_count> counts();
  /// Waits until no envelope is ready or overdue (scheduled ones in the future do not count).
  /// Returns false on timeout.
  bool wait_idle(std::chrono::milliseconds timeout);

  /// The node's services and state; defined where CAF is.
  struct impl;

private:
  reply_message request_body(std::string_view type, std::string body,
                             std::chrono::milliseconds timeout);

  std::unique_ptr<impl> impl_;
};

} // namespace depot

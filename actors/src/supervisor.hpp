// Supervision of a node's actors: an actor that fails for any reason is logged and restarted
// with backoff; one that fails again within the restart window makes the node unhealthy, and
// past max-restarts failures there the node has failed and must stop. Nothing here blocks: the
// supervisor runs on CAF's scheduler and only spawns, monitors and counts.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "depot/actors/service.hpp"

namespace depot {

/// The failures of a node's actors within the restart window. Thread-safe.
class failure_record {
public:
  failure_record(int max_restarts, std::chrono::milliseconds window);

  /// Records a failure of actor `label`; returns how many it had within the window.
  int add(const std::string& label, const std::string& reason);
  /// Marks the node failed: it must stop.
  void fail(std::string reason);
  /// Healthy; unhealthy while some actor failed more than once within the window; failed.
  [[nodiscard]] node_health health() const;
  [[nodiscard]] int max_restarts() const { return max_restarts_; }
  [[nodiscard]] std::chrono::milliseconds window() const { return window_; }

private:
  struct failures {
    std::deque<std::chrono::steady_clock::time_point> times;
    std::string last_reason;
  };

  int max_restarts_;
  std::chrono::milliseconds window_;
  mutable std::mutex mutex_;
  std::map<std::string, failures> by_actor_;
  std::string fatal_;
};

/// Spawns the supervisor of `actors`: it spawns and monitors each, restarts a failed one after
/// 100 ms doubling to 5 s, and marks `record` failed when an actor exceeds its max-restarts.
/// An exit message to the supervisor stops it and every actor it runs.
[[nodiscard]] caf::actor spawn_supervisor(caf::actor_system& system, std::vector<supervised> actors,
                                          std::shared_ptr<failure_record> record);

} // namespace depot

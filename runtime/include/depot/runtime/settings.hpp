// The settings of a node, one field per option, each with its documented default.
// Bound to CAF's option machinery, config file and DEPOT_* variables by the CLI (see
// docs/configuration.md); plain data here.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "depot/runtime/failure_policy.hpp"

namespace depot {

struct node_settings {
  std::string db;                ///< libpq connection URI of the message store (required)
  std::string schema = "depot";  ///< Postgres schema holding depot's tables
  std::string service = "depot"; ///< service name: envelope source, consumer group
  int node_id = 0;               ///< owner id of this node's claims; 0 = pick a free one
  int concurrency = 1;           ///< workers per durable queue on this node
  std::map<std::string, int> queue_concurrency; ///< per-queue override of concurrency
  int batch_size = 100;          ///< envelopes claimed and handled per transaction
  std::chrono::milliseconds dedup_window{24 * 3600 * 1000}; ///< how long handled ids are kept
  std::chrono::milliseconds polling_interval{1000};  ///< fallback poll of each queue
  std::chrono::milliseconds heartbeat_interval{1000}; ///< node heartbeat and agent period
  std::chrono::milliseconds stale_after{10'000};     ///< a node silent this long is dead
  std::chrono::milliseconds cleanup_interval{60'000}; ///< removal of ids past the dedup window
  bool auto_provision = true;    ///< apply the schema at start
  failure_policy failures;       ///< default error policy of every queue

  /// Workers for `queue` on this node.
  [[nodiscard]] int concurrency_of(const std::string& queue, int queue_default) const {
    auto i = queue_concurrency.find(queue);
    if (i != queue_concurrency.end())
      return i->second;
    return queue_default > 0 ? queue_default : concurrency;
  }
};

} // namespace depot

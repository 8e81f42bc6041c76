// The queue workers service: the worker slots of every queue this node serves, each a detached
// actor with its own connection. A durable worker's mailbox carries wake-ups (and it polls as a
// fallback); a buffered worker's carries the envelopes themselves. A failed worker is replaced
// in its slot, and the replacement gives back what the failed one still held.
#pragma once

#include <atomic>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "depot/actors/service.hpp"
#include "depot/runtime/batch_slots.hpp"
#include "inbox_processor.hpp"

namespace depot {

class queue_workers final : public service {
public:
  /// `sink` takes what handling transactions produce after they commit; it outlives this.
  explicit queue_workers(dispatch_sink& sink) : sink_(sink) {}

  /// Lays out the worker slots of every queue of `app` for `s` (before the node starts).
  /// Refuses a --queue-concurrency that names a queue `app` does not have.
  void plan(const routing& app, const node_settings& s);

  [[nodiscard]] std::string name() const override { return "queue workers"; }
  [[nodiscard]] std::size_t connections() const override { return slots_.size(); }
  /// Opens each worker's first connection, so that a start without enough of them fails.
  [[nodiscard]] std::vector<supervised> actors(node_context& node) override;
  /// Forgets the slots.
  void stopped() override;

  /// Wakes every worker of `queues` on this node: how much is ready there is not known. A
  /// pending wake-up coalesces with the next.
  void wake(const std::vector<std::string>& queues);
  /// Wakes as many workers of each queue as its newly committed envelopes fill batches: `queues`
  /// names a queue once per envelope. Workers with a wake-up on its way count, idle ones are
  /// woken before busy ones. Waking every worker for a few envelopes has all but one of them
  /// claim nothing, each walking the rows the first one holds.
  void wake_for(const std::vector<std::string>& queues);
  /// Hands memory-only envelopes to their queues' workers, round robin.
  void deliver_buffered(std::vector<envelope> envelopes);

  /// One worker place of a queue; its actor is replaced in place when it fails.
  struct slot {
    std::string label;
    const queue_definition* queue = nullptr;
    std::atomic<bool> pending{false};     // a wake-up is on its way: coalesce
    std::atomic<bool> busy{false};        // handling a batch
    queue_breakers breakers;              // the queue's on this node, shared by its slots
    claim_frontier* frontier = nullptr;   // the queue's on this node, shared by its slots
    std::shared_ptr<batch_slots> batches; // the node's, shared by every durable worker
    std::mutex mutex;                     // guards actor: each incarnation of the worker sets it
    caf::actor actor;
    /// The connection the first incarnation starts with; later ones open their own.
    std::unique_ptr<persistence::connection> first_connection;

    [[nodiscard]] caf::actor current();
  };

private:
  dispatch_sink& sink_;
  std::deque<slot> slots_; // fixed after plan(): slots keep their address
  std::unordered_map<std::string, std::vector<slot*>> by_queue_;
  std::deque<circuit_breaker> breakers_; // of queues and handlers; fixed after plan()
  std::deque<claim_frontier> frontiers_; // one per queue; fixed after plan()
  std::shared_ptr<batch_slots> batches_; // made by plan(); its workers share it
  std::atomic<std::size_t> round_robin_{0};
  int batch_size_ = 1; // of every durable queue (settings)
};

} // namespace depot

// Claims and handles batches of one durable queue, and handles buffered envelopes. The core of
// the guarantee: a batch's handler effects, its outgoing envelopes and the completion of its
// incoming envelopes commit in one transaction. Blocks on Postgres: runs on a detached actor.
#pragma once

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "depot/persistence/connection.hpp"
#include "depot/persistence/dead_letters.hpp"
#include "depot/persistence/inbox.hpp"
#include "depot/runtime/routing.hpp"
#include "depot/runtime/settings.hpp"

namespace depot {

/// What happens after a handling transaction committed: the node's side.
class dispatch_sink {
public:
  virtual ~dispatch_sink() = default;
  /// Queues that got ready envelopes.
  virtual void wake(const std::vector<std::string>& queues) = 0;
  /// Memory-only envelopes for buffered queues.
  virtual void deliver_buffered(std::vector<envelope> envelopes) = 0;
  /// A reply for a waiting requester.
  virtual void deliver_reply(reply_message reply) = 0;
  /// Counts: handled, expired, retried, dead-lettered.
  virtual void count(std::size_t handled, std::size_t expired, std::size_t retried,
                     std::size_t dead) = 0;
};

class inbox_processor {
public:
  inbox_processor(persistence::connection& conn, const routing& routes,
                  const queue_definition& queue, const node_settings& settings, int owner,
                  dispatch_sink& sink, std::vector<std::string>& in_flight);

  /// Claims one batch and handles it. Returns how many envelopes it claimed. Throws db_error
  /// on a database failure; call recover() once the connection is back.
  std::size_t process_batch();

  /// Handles one memory-only envelope in a transaction of its own, retrying inline by policy.
  void process_buffered(const envelope& e);

  /// After a database failure, or when the worker failed: gives the unfinished batch back to
  /// the queue.
  void recover();

private:
  struct outcome;

  /// One transaction over the batch. With `isolate`, each envelope runs under a savepoint and a
  /// failure is decided by policy; without, the first failure aborts the attempt (returns false).
  bool handle(const std::vector<envelope>& batch, bool isolate);
  void run_one(const envelope& e, outcome& out);
  /// Requeues the envelopes of [first, last) that this transaction locked.
  void requeue_rest(std::vector<envelope>::const_iterator first,
                    std::vector<envelope>::const_iterator last,
                    const std::unordered_set<std::string>& locked, const std::exception_ptr& error);
  /// After commit: wake-ups, buffered envelopes, replies, counters.
  void dispatch(outcome& out);

  persistence::connection& conn_;
  persistence::inbox inbox_;
  persistence::dead_letters dead_letters_;
  const routing& routes_;
  const queue_definition& queue_;
  const node_settings& settings_;
  int owner_;
  dispatch_sink& sink_;
  std::unique_ptr<queue_handler> handler_;
  /// The claimed batch until it is done; outlives this processor, so that the worker that
  /// replaces a failed one gives back what it could not.
  std::vector<std::string>& in_flight_;
};

} // namespace depot

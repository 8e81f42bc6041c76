// Claims and handles batches of one durable queue, and handles buffered envelopes. The core of
// the guarantee: a batch's claim (which deletes its envelopes), its handler effects and its
// outgoing envelopes commit in one transaction. Blocks on Postgres: runs on a detached actor.
#pragma once

#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "depot/persistence/connection.hpp"
#include "depot/persistence/dead_letters.hpp"
#include "depot/persistence/inbox.hpp"
#include "depot/persistence/saga_store.hpp"
#include "depot/persistence/unit_of_work.hpp"
#include "depot/runtime/routing.hpp"
#include "depot/runtime/settings.hpp"

namespace depot {

/// What the handling transactions of a worker did.
struct handling_counts {
  std::size_t handled = 0;
  std::size_t expired = 0;   ///< discarded unhandled: their deliver-by passed
  std::size_t retried = 0;   ///< failures that a retry, requeue or pause followed
  std::size_t dead = 0;      ///< moved to dead letters
  std::size_t discarded = 0; ///< dropped by an error policy
  std::size_t deferred = 0;  ///< put back for later by middleware (a rate limit)
  std::size_t claims = 0;    ///< claims, empty ones included
  std::size_t empty_claims = 0;
};

/// The circuit breakers of one queue on a node, shared by its workers.
struct queue_breakers {
  circuit_breaker* queue = nullptr; ///< the queue's, or null
  /// message type → the breaker of its handler
  std::unordered_map<std::string, circuit_breaker*> handlers;
};

/// Where the next claims of one queue's workers on a node continue: past the last full batch
/// any of them took. A worker that continues from there starts its scan past the rows its
/// siblings hold and the index entries of rows claimed since the last VACUUM, instead of walking
/// them from the head of the queue. Thread-safe.
class claim_frontier {
public:
  /// After a claim of at most `limit` envelopes that took `batch` (in claim order): a full batch
  /// moves the frontier past its last envelope; a short one, where the ready rows from there on
  /// are (nearly) all taken, clears it.
  void claimed(const std::vector<envelope>& batch, int limit);
  /// Clears the frontier: the next claim looks at the whole queue. For a batch that went back
  /// (rolled back), whose rows are ready again behind the frontier.
  void clear();
  [[nodiscard]] std::optional<persistence::claim_position> position() const;

private:
  mutable std::mutex mutex_;
  std::optional<persistence::claim_position> position_;
};

/// What happens after a handling transaction committed: the node's side.
class dispatch_sink {
public:
  virtual ~dispatch_sink() = default;
  /// Queues that got ready envelopes from this node: its workers, and the peers serving those
  /// it does not serve, are woken.
  virtual void committed(const std::vector<std::string>& queues) = 0;
  /// Memory-only envelopes for buffered queues.
  virtual void deliver_buffered(std::vector<envelope> envelopes) = 0;
  /// A reply for a waiting requester.
  virtual void deliver_reply(reply_message reply) = 0;
  /// What a transaction did, once it committed.
  virtual void count(const handling_counts& counts) = 0;
};

class inbox_processor {
public:
  /// `frontier` and `breakers` are the queue's on this node, shared by its workers.
  inbox_processor(persistence::connection& conn, const routing& routes,
                  const queue_definition& queue, const node_settings& settings, int node_number,
                  dispatch_sink& sink, claim_frontier& frontier, queue_breakers breakers = {});

  /// Claims one batch and handles it in one transaction (one envelope when the breaker probes,
  /// none while it is open without fallbacks). Returns how many envelopes it claimed.
  /// Throws db_error on a database failure: the transaction rolled back, nothing is held.
  std::size_t process_batch();
  /// Whether the last batch may have left ready envelopes behind although it was not full: a
  /// batch with keys is short when other transactions held keys, which may be free by now.
  [[nodiscard]] bool may_have_left_more() const { return keyed_batch_; }

  /// Handles one memory-only envelope in a transaction of its own, retrying inline by policy.
  void process_buffered(const envelope& e);

private:
  struct outcome;

  /// process_batch once the breaker let it claim (`probe`: one envelope).
  /// Clears the frontier when the batch's transaction fails.
  std::size_t claim_and_handle(bool probe, bool fallback);
  std::size_t claim_and_handle_from(bool probe, bool fallback);
  /// Where the next claim starts, counting it: at the queue's frontier on this node, except for
  /// every claims_per_full_claim-th claim of this worker, which looks at the whole queue so that
  /// a row before the frontier (a higher priority, a row given back or promoted, a late commit, a
  /// key another transaction held) waits for that many claims at most while the queue stays
  /// busy.
  std::optional<persistence::claim_position> next_claim_start();

  /// Handles the batch claimed in `uow` and commits. With `isolate`, each envelope runs under a
  /// savepoint and a failure is decided by policy; without, the first failure ends the attempt
  /// (returns false, nothing committed).
  bool handle(const std::vector<envelope>& batch, persistence::unit_of_work& uow, bool isolate,
              bool fallback);
  void run_one(const envelope& e, outcome& out, bool fallback);
  /// Tells the breaker what a committed batch did; logs and records a change of its state.
  void report_to_breaker(const outcome& out);
  /// Tells the breakers of handlers what their envelopes did in a committed batch.
  void report_to_handler_breakers(outcome& out);
  /// Logs and records a change of the queue's breaker, or of the handler of `type`'s.
  void breaker_moved(const circuit_breaker::transition& t, const std::string& type = {});
  /// What the breaker of e's handler lets it do: run, run the fallback, or wait (deferred).
  enum class gate { run, fallback, deferred };
  gate pass_handler_breaker(const envelope& e, outcome& out);
  /// The decision of the error policy for `e`, which threw `error`.
  [[nodiscard]] failure_decision decide_failure(const envelope& e,
                                                const std::exception_ptr& error) const;
  /// Carries out a decision other than an inline retry, in the handling transaction.
  void carry_out(const envelope& e, const failure_decision& d, outcome& out);
  /// For a step of a saga that failed for good: starts the saga's compensation (true: no dead
  /// letter); for a compensation of a saga, wherever it ran, marks that saga stuck (false).
  bool saga_compensates(const envelope& e, const failure_decision& d, outcome& out);
  /// Puts `e` back for the time middleware deferred it to, its attempts unchanged.
  void defer(const envelope& e, const deferral& d, outcome& out);
  /// Publishes a depot.fault for `e` when the application asked for faults of its type.
  void publish_fault(const envelope& e, const failure_decision& d, outcome& out);
  /// Puts the envelopes of [first, last) back untouched.
  void requeue_rest(std::vector<envelope>::const_iterator first,
                    std::vector<envelope>::const_iterator last, outcome& out,
                    const std::exception_ptr& error);
  /// After commit: wake-ups, buffered envelopes, replies, counters.
  void dispatch(outcome& out);

  persistence::connection& conn_;
  persistence::inbox inbox_;
  persistence::dead_letters dead_letters_;
  persistence::saga_store sagas_;
  const routing& routes_;
  const queue_definition& queue_;
  const node_settings& settings_;
  int node_number_;
  dispatch_sink& sink_;
  std::unique_ptr<queue_handler> handler_;
  std::unique_ptr<queue_handler> fallback_; ///< null when the queue has no fallbacks
  error_policy default_policy_;             ///< for failures no declared rule matches
  circuit_breaker* breaker_;
  std::unordered_map<std::string, circuit_breaker*> handler_breakers_;
  bool keyed_batch_ = false; ///< the last batch held an envelope with a key
  static constexpr int claims_per_full_claim = 16;
  claim_frontier& frontier_;
  int continued_ = 0; ///< claims since the last one that looked at the whole queue
  /// A batch of this queue held an envelope with a key: every claim takes keys' locks from then
  /// on (a queue that has keys keeps having them; switching back and forth costs a claim each).
  bool keys_seen_ = false;
};

} // namespace depot

// The durable inbox: envelopes waiting in `incoming` for a local queue, from insert through the
// claim that deletes them in their handling transaction, and the ids remembered for dedup.
// A view over one connection: cheap to make. Blocks on Postgres: detached actors or plain
// threads only.
#pragma once

#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "depot/persistence/connection.hpp"

namespace depot::persistence {

/// A place in claim order (a priority, a seq): a claim that continues from there starts its
/// scan there, instead of walking the index entries of every row claimed before it that VACUUM
/// has not removed yet.
struct claim_position {
  int priority = 0;
  long long seq = 0;
};

class inbox {
public:
  /// How far past its limit a claim looks for rows of keys no other transaction holds: with
  /// every key at the head of the queue busy, a claim comes back short rather than scanning
  /// the whole queue.
  static constexpr int claim_look_ahead = 10;
  /// How many ready rows claim_again looks at for the envelopes it names: a rolled-back batch
  /// is back near the head of its queue; one further back is left to the next claims.
  static constexpr int claim_again_look_ahead = 10'000;

  explicit inbox(connection& conn) : conn_(conn) {}

  // These run inside the caller's transaction when one is open (see unit_of_work).

  /// Inserts envelopes in order (each gets the next seq unless it has one). Deduplicated
  /// envelopes whose id was received within the dedup window are skipped, and so are ids
  /// waiting already, except in a batch of plain new envelopes (ready now, not deduplicated):
  /// those are copied in, and an id of theirs that exists is an error. Notifies listeners once
  /// for the ready queues, naming `sender_node`. Returns how many rows were new.
  /// `also_notify` joins the notification (outbox destinations stored in the same transaction).
  std::size_t insert(const std::vector<envelope>& envelopes, int sender_node = 0,
                     const std::set<std::string>& also_notify = {});

  /// Inside the handling transaction: takes up to `limit` ready envelopes of `queue`, best
  /// priority first, then in seq order, skipping rows (and with `keyed`, keys) that other
  /// transactions hold, and deletes them. They are gone when the transaction commits and ready
  /// again when it rolls back. Returns them in claim order.
  /// `keyed` (for queues whose envelopes have keys): take the keys' locks, so that the envelopes
  /// of one key come in the order stored, one transaction at a time, looking at the first
  /// `limit * claim_look_ahead` ready rows only. Without it the claim takes no key locks (it is
  /// the cheaper one): a caller that finds a key in its batch must roll back and claim again
  /// with `keyed`.
  /// `after`: continue from a position (past the last batch of the queue on this node), taking
  /// only rows of its priority from its seq on; rows before it or of other priorities wait for a
  /// claim without `after` (see claim_position). A key's order holds wherever a claim starts.
  std::vector<envelope> claim(std::string_view queue, int limit, bool keyed = false,
                              const std::optional<claim_position>& after = {});
  /// Like claim with `keyed`, for the envelopes of `queue` among `ids` still ready within the
  /// first `claim_again_look_ahead` ready rows: a batch taken again after its first transaction
  /// rolled back.
  std::vector<envelope> claim_again(std::string_view queue, const std::vector<std::string>& ids);

  /// Inside the handling transaction: puts claimed envelopes back as they are (same id, seq,
  /// status, attempts and execution time): a retry later, or a requeue.
  void put_back(const std::vector<envelope>& envelopes);

  /// Tells every node listening that `queues` have ready envelopes (delivered when the
  /// transaction commits; Postgres folds duplicates), naming `sender_node` (0: not a node).
  void notify_ready(const std::set<std::string>& queues, int sender_node);

  /// Pauses `queue` on every node until `until` (a later pause already recorded stays), for
  /// `reason`: no claim takes its envelopes meanwhile. Inside the caller's transaction.
  void pause_queue(std::string_view queue, micros until, std::string_view reason);
  /// Ends the pause of `queue` on every node, whatever paused it; false when it was not paused.
  /// Inside the caller's transaction.
  bool resume_queue(std::string_view queue);

  /// Records the state of a circuit breaker on node `node` for operators: `queue`'s, or with a
  /// `message_type` the breaker of that handler on the queue; "open" or "half-open" (with
  /// `until`, 0 for none, and the reason); "closed" removes the record.
  void record_breaker(std::string_view queue, std::string_view message_type, int node,
                      std::string_view state, micros until, std::string_view reason);

  /// Makes due scheduled envelopes ready. Returns the queues that got work.
  std::vector<std::string> promote_due(int limit = 10000);
  /// Forgets up to `limit` received ids whose dedup window has passed.
  std::size_t forget_received_ids(int limit = 10000);

private:
  connection& conn_;
};

} // namespace depot::persistence

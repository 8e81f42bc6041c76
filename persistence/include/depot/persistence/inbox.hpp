// The durable inbox: envelopes waiting in `incoming` for a local queue, from insert through
// claim and handling to retry, expiry and cleanup. A view over one connection: cheap to make.
// Blocks on Postgres: detached actors or plain threads only.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "depot/persistence/connection.hpp"

namespace depot::persistence {

class inbox {
public:
  explicit inbox(connection& conn) : conn_(conn) {}

  // These run inside the caller's transaction when one is open (see unit_of_work).

  /// Inserts envelopes; ids already present (received, or handled within the dedup window) are
  /// skipped. Notifies listeners once for the ready queues, naming `sender_node`. Returns how
  /// many rows were new.
  std::size_t insert(const std::vector<envelope>& envelopes, int sender_node = 0);

  /// Claims up to `limit` ready envelopes of `queue` for `owner`, best priority first, skipping
  /// rows other transactions hold. Claims nothing unless node `owner` is registered (its row is
  /// held until the claim commits). Commits on its own (asynchronously: a lost claim is
  /// harmless). Never call it inside an open transaction.
  std::vector<envelope> claim(std::string_view queue, int owner, int limit);

  /// First statement of a handling transaction: locks the claimed envelopes still owned by
  /// `owner` and marks them handled (kept for the dedup window). Returns the ids it locked; an
  /// id missing from the result was taken away (recovered) and must not be handled.
  std::vector<std::string> begin_handling(const std::vector<std::string>& ids, int owner);
  /// Marks envelopes as expired: discarded unhandled because their deliver-by passed.
  void mark_expired(const std::vector<std::string>& ids);
  /// Puts an envelope back as scheduled for `at`, one attempt more.
  void retry_at(const std::string& id, micros at);
  /// Gives claimed but unhandled envelopes back to other workers.
  void release(const std::vector<std::string>& ids, int owner);
  /// Inside the handling transaction: puts envelopes that begin_handling marked back as incoming
  /// and unowned, attempts unchanged (they were not handled, and not through their own fault).
  void requeue(const std::vector<std::string>& ids, int owner);

  /// Makes due scheduled envelopes ready. Returns the queues that got work.
  std::vector<std::string> promote_due(int limit = 10000);
  /// Deletes up to `limit` handled or expired envelopes whose dedup window has passed.
  std::size_t remove_expired_ids(int limit = 10000);

private:
  /// Puts envelopes of `owner` in `from_status` back as incoming and unowned.
  void give_back(const std::vector<std::string>& ids, int owner, std::string_view from_status);

  connection& conn_;
};

} // namespace depot::persistence

// The Postgres message store: one connection and every statement depot runs on it (inbox,
// dead letters, nodes, maintenance, schema). Blocks on Postgres: never call it from a CAF
// scheduler thread, only from detached actors or plain threads. Not thread-safe: one per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "depot/persistence/db_error.hpp"
#include "depot/runtime/envelope.hpp"

namespace soci {
class session;
}

namespace depot::persistence {

/// Opens a SOCI session on `db`, a libpq connection URI or keyword/value string. Throws
/// db_error naming the option to fix when it cannot connect.
[[nodiscard]] std::unique_ptr<soci::session> open_session(const std::string& db);

/// `db` with its password, if any, replaced by "***" (in a URI's user info, as a `password=`
/// query parameter or keyword): for showing a connection string.
[[nodiscard]] std::string redact_password(std::string db);

/// Where the store lives.
struct store_settings {
  std::string db;               ///< libpq connection string or URI
  std::string schema = "depot"; ///< one schema per service
  micros dedup_window = 24LL * 3600 * 1000000; ///< how long handled ids are kept for dedup
};

/// Envelope count of one queue in one status (or a dead-letter count with status "dead").
struct queue_count {
  std::string queue;
  std::string status;
  std::int64_t count = 0;
};

/// The node row a process holds while it runs.
struct node_registration {
  std::string id; ///< uuid of this incarnation
  int number = 0; ///< the owner id its claims carry
};

/// What a node's row says of its health (see node_health).
struct node_health_row {
  std::string health = "healthy"; ///< healthy, unhealthy or failed
  std::string reason;
};

/// A registered node as `health` shows it.
struct node_status {
  int number = 0;
  node_health_row health;
  micros silent_for = 0; ///< since its last heartbeat
};

/// How many connections the server has left for this user.
struct connection_budget {
  std::int64_t max = 0;  ///< max_connections
  std::int64_t used = 0; ///< client connections open now
  std::int64_t free = 0; ///< what this user may still open (superuser_reserved_connections
                         ///< are not for other users)
};

/// One connection to the message store.
class message_store {
public:
  /// Connects; throws db_error naming the connection string option when it cannot.
  explicit message_store(store_settings settings);
  ~message_store();
  message_store(const message_store&) = delete;
  message_store& operator=(const message_store&) = delete;

  [[nodiscard]] soci::session& session();
  [[nodiscard]] const store_settings& settings() const { return settings_; }
  /// The channel LISTEN/NOTIFY wake-ups use for this schema.
  [[nodiscard]] std::string notify_channel() const;

  /// True while the connection is usable.
  [[nodiscard]] bool connected();
  /// Drops the connection and opens a new one; throws db_error (connection_lost) on failure.
  void reconnect();

  // -- schema ---------------------------------------------------------------------------------

  /// Creates the schema or migrates it to the newest version; idempotent and safe to race.
  /// Returns the versions applied now.
  std::vector<int> apply_schema();
  /// The schema's version, 0 when it does not exist.
  [[nodiscard]] int schema_version();
  /// The newest version this library knows.
  [[nodiscard]] static int latest_schema_version();

  // -- inbox ----------------------------------------------------------------------------------
  // These run inside the caller's transaction when one is open (see unit_of_work).

  /// Inserts envelopes; ids already present (received, or handled within the dedup window) are
  /// skipped. Notifies listeners once for the ready queues. Returns how many rows were new.
  std::size_t insert_incoming(const std::vector<envelope>& envelopes, int sender_node = 0);

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
  /// Records a dead letter for `e` with the reason; its incoming row stays handled for dedup.
  void dead_letter(const envelope& e, std::string_view exception_type,
                   std::string_view exception_message);
  /// Gives claimed but unhandled envelopes back to other workers.
  void release(const std::vector<std::string>& ids, int owner);
  /// Inside the handling transaction: puts envelopes that begin_handling marked back as incoming
  /// and unowned, attempts unchanged (they were not handled, and not through their own fault).
  void requeue(const std::vector<std::string>& ids, int owner);

  // -- outbox ---------------------------------------------------------------------------------
  // Envelopes for a transport to deliver (a Kafka topic, a remote node): `envelope::queue` names
  // the destination. A transport claims per destination, delivers, then completes.

  /// Inside the caller's transaction: stores envelopes for delivery; ids already there are
  /// skipped.
  void insert_outgoing(const std::vector<envelope>& envelopes);
  /// Claims up to `limit` unowned envelopes bound for `destination`, oldest first, for node
  /// `owner` (registered, as for claim()). Commits on its own; never call it inside a
  /// transaction. `received_at` of each is when it was stored.
  std::vector<envelope> claim_outgoing(std::string_view destination, int owner, int limit);
  /// Deletes delivered envelopes still owned by `owner`. Returns how many it deleted.
  std::size_t complete_outgoing(const std::vector<std::string>& ids, int owner);
  /// Gives envelopes whose delivery failed back to the destination, one attempt more.
  void release_outgoing(const std::vector<std::string>& ids, int owner);

  // -- nodes ----------------------------------------------------------------------------------

  /// Registers a node and takes its number's advisory lock on this connection: keep this
  /// store open while the node lives. `number` 0 picks a free number. Refuses a number another
  /// live node holds. Releases envelopes an earlier incarnation of that number still owned.
  node_registration register_node(int number, std::string_view uri, std::string_view version);
  /// Takes the advisory lock that marks node `number` alive (again, after a reconnect).
  bool lock_node_number(int number);
  /// Refreshes the heartbeat and the health; re-inserts the row when another node declared
  /// this one dead.
  void heartbeat(const node_registration& self, std::string_view version,
                 const node_health_row& health = {});
  /// Every registered node, by number.
  [[nodiscard]] std::vector<node_status> node_statuses();
  /// The connections the server has left.
  [[nodiscard]] connection_budget free_connections();
  /// Removes the node row and releases what it still owns (clean shutdown).
  void deregister(const node_registration& self);
  /// Gives envelopes owned by dead nodes back to owner 0 and removes those nodes. A node is dead
  /// when its heartbeat is older than `stale_after` or its advisory lock is not held. Returns the
  /// queues that got work back.
  std::vector<std::string> recover_stale(micros stale_after);

  // -- maintenance ----------------------------------------------------------------------------

  /// Makes due scheduled envelopes ready. Returns the queues that got work.
  std::vector<std::string> promote_due(int limit = 10000);
  /// Envelopes ready now or overdue: incoming, plus scheduled ones whose time has come.
  [[nodiscard]] std::int64_t pending();
  /// Deletes up to `limit` handled or expired envelopes whose dedup window has passed.
  std::size_t remove_expired_ids(int limit = 10000);
  /// Envelope counts per queue and status, plus dead letters per queue (status "dead").
  std::vector<queue_count> counts();

private:
  [[nodiscard]] std::string table(std::string_view name) const;
  [[nodiscard]] int node_lock_class() const;
  /// The condition of a claim for node `:owner`: its row exists, held until the claim commits.
  [[nodiscard]] std::string owner_registered() const;
  /// Puts envelopes of `owner` in `from_status` back as incoming and unowned.
  void give_back(const std::vector<std::string>& ids, int owner, std::string_view from_status);
  /// Inside a transaction: gives the unfinished claims (incoming and outgoing) of node `numbers`
  /// back to owner 0. Returns the queues that got work back.
  std::vector<std::string> release_owned_by(const std::vector<int>& numbers);

  store_settings settings_;
  std::unique_ptr<soci::session> session_;
};

} // namespace depot::persistence

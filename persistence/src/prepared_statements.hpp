// Private: the hot statements of the handling loop, made once per connection with their
// parameters and result columns bound to members and prepared server-side. Each call sets the
// parameters, sizes the result vectors and executes. The claims call the schema's claim
// functions, which keep their own plans (see sql/009_claims.sql). A connection drops them before
// it reconnects (they hold its session's backend).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <soci/soci.h>

#include "depot/persistence/inbox.hpp"
#include "depot/runtime/envelope.hpp"
#include "statements.hpp"

namespace depot::persistence {

/// The columns of claimed envelopes, fetched `chunk` rows at a time.
struct claimed_rows {
  static constexpr std::size_t chunk = 256;

  std::vector<std::string> ids, queues, types, bodies, headers, tenants, keys;
  std::vector<long long> execution_times, deliver_bys, received_ats, seqs;
  std::vector<int> attempts, priorities;

  /// Binds every column to `statement`, sized for one chunk.
  void bind(soci::statement& statement);
  /// Sizes every result vector for a fetch of `n` rows.
  void resize(std::size_t n);
  /// Executes `statement` and fetches every row it returns.
  std::vector<envelope> fetch_all(soci::statement& statement);
};

/// Claim of a batch of one queue, in the handling transaction.
struct claim_statement {
  /// `keyed`: the claim for queues with keys, which looks `look_ahead` rows ahead at most;
  /// otherwise the claim for queues without keys. Either continues from `after` when it is set.
  claim_statement(soci::session& sql, const std::string& text, bool keyed);

  /// Sets `after` (null when `position` is empty).
  void continue_from(const std::optional<claim_position>& position);

  std::string queue;
  int limit = 0;
  int look_ahead = 0;
  int priority = 0;
  long long after_seq = 0;
  soci::indicator after = soci::i_null;
  claimed_rows rows;
  soci::statement statement;
};

/// Claim of named envelopes again, after the transaction that claimed them first rolled back.
struct claim_again_statement {
  claim_again_statement(soci::session& sql, const std::string& text);

  std::string queue;
  int look_ahead = 0;
  std::string ids;
  claimed_rows rows;
  soci::statement statement;
};

/// Insert of a batch of envelopes into the inbox, counting the new ones.
struct insert_incoming_statement {
  insert_incoming_statement(soci::session& sql, const std::string& text);

  std::string rows;
  long long window = 0;
  long long inserted = 0;
  soci::statement statement;
};

struct prepared_statements {
  explicit prepared_statements(soci::session& sql, const statements& texts)
    : sql_(sql), texts_(texts) {}

  claim_statement& claim(bool keyed);
  claim_again_statement& claim_again();
  insert_incoming_statement& insert_incoming();

private:
  soci::session& sql_;
  const statements& texts_;
  std::unique_ptr<claim_statement> claim_, claim_keyed_;
  std::unique_ptr<claim_again_statement> claim_again_;
  std::unique_ptr<insert_incoming_statement> insert_incoming_;
};

} // namespace depot::persistence

// Private: the hot statements of the handling loop, prepared once per connection (server-side,
// planned once) with their parameters and result columns bound to members. Each call sets the
// parameters, sizes the result vectors and executes; nothing is parsed or planned again.
// A connection drops them before it reconnects (they hold its session's backend).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <soci/soci.h>

#include "statements.hpp"

namespace depot::persistence {

/// Claim of a batch of one queue; rows are fetched `chunk` at a time.
struct claim_statement {
  static constexpr std::size_t chunk = 256;

  claim_statement(soci::session& sql, const std::string& text);

  int owner = 0;
  std::string queue;
  int limit = 0;
  std::vector<std::string> ids, queues, types, bodies, headers, tenants;
  std::vector<long long> execution_times, deliver_bys, received_ats;
  std::vector<int> attempts, priorities;
  soci::statement statement;

  /// Sizes every result vector for a fetch of `n` rows.
  void resize(std::size_t n);
};

/// The first statement of a handling transaction (see inbox::begin_handling).
struct begin_handling_statement {
  begin_handling_statement(soci::session& sql, const std::string& text);

  long long window = 0;
  std::string ids;
  int owner = 0;
  std::vector<std::string> locked;
  soci::statement statement;
};

/// Insert of a batch of envelopes into the inbox, counting the new ones.
struct insert_incoming_statement {
  insert_incoming_statement(soci::session& sql, const std::string& text);

  std::string rows;
  long long inserted = 0;
  soci::statement statement;
};

struct prepared_statements {
  explicit prepared_statements(soci::session& sql, const statements& texts)
    : sql_(sql), texts_(texts) {}

  claim_statement& claim();
  begin_handling_statement& begin_handling();
  insert_incoming_statement& insert_incoming();

private:
  soci::session& sql_;
  const statements& texts_;
  std::unique_ptr<claim_statement> claim_;
  std::unique_ptr<begin_handling_statement> begin_handling_;
  std::unique_ptr<insert_incoming_statement> insert_incoming_;
};

} // namespace depot::persistence

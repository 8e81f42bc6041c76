// The outbox: envelopes in `outgoing` for a transport to deliver (a Kafka topic, a remote node);
// `envelope::queue` names the destination. A transport claims per destination, delivers, then
// completes. A view over one connection. Blocks on Postgres.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "depot/persistence/connection.hpp"

namespace depot::persistence {

class outbox {
public:
  explicit outbox(connection& conn) : conn_(conn) {}

  /// Inside the caller's transaction: stores envelopes for delivery; ids already there are
  /// skipped.
  void insert(const std::vector<envelope>& envelopes);
  /// Claims up to `limit` unowned envelopes bound for `destination`, oldest first, for node
  /// `owner` (registered, as for inbox::claim). Commits on its own; never call it inside a
  /// transaction. `received_at` of each is when it was stored.
  std::vector<envelope> claim(std::string_view destination, int owner, int limit);
  /// Deletes delivered envelopes still owned by `owner`. Returns how many it deleted.
  std::size_t complete(const std::vector<std::string>& ids, int owner);
  /// Gives envelopes whose delivery failed back to the destination, one attempt more.
  void release(const std::vector<std::string>& ids, int owner);

private:
  connection& conn_;
};

} // namespace depot::persistence

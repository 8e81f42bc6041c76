// Dead letters: envelopes whose handling failed for good, with the reason. The envelope's
// incoming row stays handled for the dedup window, so a resend of its id is still ignored.
// A view over one connection. Blocks on Postgres.
#pragma once

#include <string_view>

#include "depot/persistence/connection.hpp"

namespace depot::persistence {

class dead_letters {
public:
  explicit dead_letters(connection& conn) : conn_(conn) {}

  /// Inside the caller's transaction: records `e` with the exception's type and message (made
  /// valid text whatever bytes they hold); a second failure of the same id replaces the reason.
  void add(const envelope& e, std::string_view exception_type, std::string_view exception_message);

private:
  connection& conn_;
};

} // namespace depot::persistence

// Statements a handler prepares once per connection and reuses for every envelope handled on it
// (see context::prepared). Owned by the store connection, which drops them before its session
// reconnects or closes: a prepared statement belongs to the server session it was made on.
#pragma once

#include <memory>
#include <typeindex>
#include <unordered_map>

namespace soci {
class session;
}

namespace depot {

class statement_cache {
public:
  /// The S of this connection, made as `S{db}` on first use. S prepares its statements in its
  /// constructor (SOCI: `db.prepare << "...", soci::use(member), soci::into(member)`).
  template <class S>
  S& get(soci::session& db) {
    auto& slot = items_[std::type_index{typeid(S)}];
    if (!slot)
      slot = std::make_shared<S>(db);
    return *std::static_pointer_cast<S>(slot);
  }

  /// Drops every statement.
  void clear() { items_.clear(); }

private:
  std::unordered_map<std::type_index, std::shared_ptr<void>> items_;
};

} // namespace depot

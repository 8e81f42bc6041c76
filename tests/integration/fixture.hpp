// What every integration test shares: a schema of its own (dropped at the end), node and store
// settings with short timings, waiting for a condition with a deadline, and the `effects` table
// handlers record their work in.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "depot/actors/node.hpp"
#include "depot/persistence/connection.hpp"
#include "depot/persistence/dead_letters.hpp"
#include "depot/persistence/inbox.hpp"
#include "depot/persistence/node_registry.hpp"
#include "depot/persistence/outbox.hpp"
#include "depot/persistence/schema.hpp"
#include "depot/persistence/store_admin.hpp"
#include "depot/runtime/context.hpp"
#include "depot/runtime/envelope.hpp"
#include "depot/runtime/settings.hpp"

namespace soci {
class session;
}

namespace depot_it {

using namespace std::chrono_literals;

/// The libpq URI in DEPOT_TEST_DB; fails the running test with the fix when it is unset.
[[nodiscard]] std::string test_database();

/// A uniquely named schema (`it_<hex>`) for one test, created empty and dropped with everything
/// in it when the guard goes. Declare it before the nodes and stores that use it.
class test_schema {
public:
  test_schema();
  ~test_schema();
  test_schema(const test_schema&) = delete;
  test_schema& operator=(const test_schema&) = delete;

  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] const std::string& db() const { return db_; }
  /// `name` qualified with this schema, for SQL run on other connections (handlers' ctx.db()).
  [[nodiscard]] std::string table(std::string_view name) const;

  /// Node settings on this schema with short timings: polling 50 ms, heartbeat 100 ms, stale
  /// after 1 s, first retry after 50 ms.
  [[nodiscard]] depot::node_settings node_config() const;
  /// Store settings on this schema.
  [[nodiscard]] depot::persistence::store_settings store_config() const;

  // The guard's own connection has this schema on its search_path: unqualified names work.

  /// Runs a statement.
  void exec(const std::string& statement);
  /// The one integer a query returns (0 for NULL).
  [[nodiscard]] long long number(const std::string& query);
  /// The one text a query returns ("" for NULL).
  [[nodiscard]] std::string text(const std::string& query);

private:
  std::string db_;
  std::string name_;
  std::unique_ptr<soci::session> sql_;
};

/// One store connection with every concern of the store on it, for tests that drive the store
/// directly.
struct test_store {
  explicit test_store(depot::persistence::store_settings settings) : conn{std::move(settings)} {}

  depot::persistence::connection conn;
  depot::persistence::inbox inbox{conn};
  depot::persistence::outbox outbox{conn};
  depot::persistence::dead_letters dead_letters{conn};
  depot::persistence::node_registry nodes{conn};
  depot::persistence::store_admin admin{conn};

  std::vector<int> apply_schema(int up_to = 0) {
    return depot::persistence::apply_schema(conn, up_to);
  }
  [[nodiscard]] int schema_version() { return depot::persistence::schema_version(conn); }
};

/// Polls `condition` every 20 ms until it holds or `timeout` passed; returns its last value.
template <class F>
bool wait_until(F&& condition, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(20ms);
  }
}

/// A ready envelope with a fresh id, for tests that insert through message_store.
[[nodiscard]] depot::envelope make_envelope(std::string queue, std::string type, std::string body);

/// Creates table `effects` (envelope_id, tag, node, handled_at) in the test schema. It has no
/// primary key, so that an envelope handled twice shows as two rows.
void create_effects_table(test_schema& s);

/// Records, in the handling transaction, that the envelope of `ctx` was handled.
/// `effects` is the qualified table name (test_schema::table("effects")).
void record_effect(depot::context& ctx, const std::string& effects, const std::string& tag,
                   int node = 0);

} // namespace depot_it

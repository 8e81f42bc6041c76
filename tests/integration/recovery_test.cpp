// Claims across nodes: competing nodes, nodes that die holding a claim, restarted nodes.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <thread>

#include <fmt/format.h>
#include <soci/soci.h>

#include "depot/actors/node.hpp"
#include "depot/persistence/unit_of_work.hpp"
#include "depot/runtime/routing.hpp"
#include "fixture.hpp"

using depot::persistence::unit_of_work;
using namespace depot_it;

namespace {

struct job {
  std::int64_t n = 0;
};
DEPOT_MESSAGE(job, "it.job", n)

const std::string job_queue{depot::type_name_of<job>()};

/// Registers a handler of job that records its envelope as handled by node `tag`.
void handle_jobs(depot::routing& app, const test_schema& s, int tag) {
  app.handle<job>([effects = s.table("effects"), tag](const job& m, depot::context& ctx) {
    record_effect(ctx, effects, std::to_string(m.n), tag);
  });
}

/// Inserts a job envelope and claims it in a transaction left open on `store`, as a node that
/// is handling it holds it.
depot::envelope claimed_job(test_store& store, int n, std::optional<unit_of_work>& holding) {
  auto e = make_envelope(job_queue, job_queue, fmt::format(R"({{"n": {}}})", n));
  REQUIRE(store.inbox.insert({e}) == 1);
  holding.emplace(store.conn);
  auto claimed = store.inbox.claim(job_queue, 1);
  REQUIRE(claimed.size() == 1);
  REQUIRE(claimed[0].id == e.id);
  return e;
}

/// The server process of `store`'s connection.
long long backend_of(test_store& store) {
  long long pid = 0;
  store.conn.session() << "SELECT pg_backend_pid()", soci::into(pid);
  return pid;
}

} // namespace

TEST_CASE("two nodes on one queue handle every envelope exactly once") {
  test_schema s;
  s.exec(
    "CREATE TABLE handled_by (envelope_id uuid PRIMARY KEY, n bigint NOT NULL UNIQUE, "
    "node integer NOT NULL)");
  // One application per node, so that each row says which node handled it. A second handling
  // of an envelope would violate a key and show as a retry.
  auto app_of = [table = s.table("handled_by")](depot::routing& app, int node) {
    app.handle<job>([=](const job& m, depot::context& ctx) {
      long long n = m.n;
      ctx.db() << "INSERT INTO " + table + " (envelope_id, n, node) VALUES (:id::uuid, :n, :node)",
        soci::use(ctx.incoming().id), soci::use(n), soci::use(node);
    });
  };
  depot::routing app_a, app_b;
  app_of(app_a, 1);
  app_of(app_b, 2);
  auto config = s.node_config();
  config.batch_size = 10;
  config.concurrency = 2;
  depot::node a{app_a, config};
  depot::node b{app_b, config};
  a.start();
  b.start();
  CHECK(a.number() != b.number());

  constexpr int total = 2000;
  constexpr int chunk = 100;
  for (int first = 0; first < total; first += chunk) {
    std::vector<job> jobs;
    for (int n = first; n < first + chunk; ++n)
      jobs.push_back(job{n});
    (first / chunk % 2 == 0 ? a : b).send_all(jobs);
  }

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM handled_by") == total; }, 60s));
  REQUIRE(a.wait_idle(10s));
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 0);
  CHECK(wait_until([&] { return a.stats().handled + b.stats().handled == total; }));
  CHECK(a.stats().retried + b.stats().retried == 0);
  auto by_a = s.number("SELECT count(*) FROM handled_by WHERE node = 1");
  auto by_b = s.number("SELECT count(*) FROM handled_by WHERE node = 2");
  CHECK(by_a > 0);
  CHECK(by_b > 0);
  CHECK(static_cast<long long>(a.stats().handled) == by_a);
  CHECK(static_cast<long long>(b.stats().handled) == by_b);
}

TEST_CASE(
  "what a node held when it died is handled by another; what a live node holds is left to it") {
  test_schema s;
  create_effects_table(s);
  test_store store{s.store_config()};
  store.apply_schema();

  // A live node in the middle of handling: its claim is its own until it ends.
  test_store live{s.store_config()};
  std::optional<unit_of_work> live_holds;
  auto kept = claimed_job(live, 1, live_holds);
  // A node that dies in the middle of handling: the server ends its connection.
  test_store dying{s.store_config()};
  std::optional<unit_of_work> dying_holds;
  auto vanished = claimed_job(dying, 2, dying_holds);
  s.exec(fmt::format("SELECT pg_terminate_backend({})", backend_of(dying)));

  depot::routing app;
  handle_jobs(app, s, 1);
  depot::node node{app, s.node_config()};
  node.start();

  auto handled = [&](const depot::envelope& e) {
    return s.number("SELECT count(*) FROM effects WHERE envelope_id = '" + e.id + "'");
  };
  REQUIRE(wait_until([&] { return handled(vanished) == 1; }));
  std::this_thread::sleep_for(300ms); // several polling intervals
  CHECK(handled(kept) == 0);

  live_holds.reset(); // it gives up (rolls back): the envelope is ready again
  REQUIRE(wait_until([&] { return handled(kept) == 1; }));
  CHECK(s.number("SELECT count(*) FROM effects") == 2);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
}

TEST_CASE("a node restarted with the same node id at once handles what it held when killed") {
  test_schema s;
  create_effects_table(s);
  test_store store{s.store_config()};
  store.apply_schema();
  depot::envelope e;
  test_store previous{s.store_config()};
  previous.nodes.register_node(13, "", "test");
  std::optional<unit_of_work> holds;
  e = claimed_job(previous, 1, holds);
  // Killed: the server ends the connection that held the node lock and the claim.
  s.exec(fmt::format("SELECT pg_terminate_backend({})", backend_of(previous)));

  depot::routing app;
  handle_jobs(app, s, 13);
  auto config = s.node_config();
  config.node_id = 13;
  REQUIRE(wait_until([&] {
    return s.number(
             "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
             "AND objid = 13") == 0;
  }));
  depot::node node{app, config};
  node.start();
  CHECK(node.number() == 13);
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }));
  CHECK(s.text("SELECT envelope_id::text FROM effects") == e.id);
}

TEST_CASE("a hung claim on a dead node's row does not stop the other nodes' heartbeats") {
  test_schema s;
  test_store store{s.store_config()};
  store.apply_schema();
  // Node 90 registers, then freezes in the middle of a claim: its row stays locked as a claim
  // holds it, and it never beats again, so the others find it stale and try to remove it.
  test_store frozen{s.store_config()};
  frozen.nodes.register_node(90, "", "test");
  soci::transaction hung{frozen.conn.session()};
  int one = 0;
  frozen.conn.session() << "SELECT 1 FROM " + s.table("nodes") + " WHERE number = 90 FOR KEY SHARE",
    soci::into(one);

  depot::routing app;
  handle_jobs(app, s, 1);
  depot::node node{app, s.node_config()};
  node.start();
  auto beat_age_ms = [&] {
    return s.number(
      fmt::format("SELECT (extract(epoch from now() - heartbeat) * 1000)::bigint "
                  "FROM nodes WHERE number = {}",
                  node.number()));
  };
  // Long enough for node 90 to go stale and for recovery to wait on its row several times.
  std::this_thread::sleep_for(5s);
  CHECK(beat_age_ms() < 1000);
  CHECK(s.number("SELECT count(*) FROM nodes WHERE number = 90") == 1);

  hung.rollback();
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM nodes WHERE number = 90") == 0; }));
  CHECK(beat_age_ms() < 1000);
}

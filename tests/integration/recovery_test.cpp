// Ownership of claimed envelopes across nodes: competing nodes, dead nodes, restarted nodes.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <stop_token>
#include <thread>

#include <fmt/format.h>
#include <soci/soci.h>

#include "depot/actors/node.hpp"
#include "depot/runtime/routing.hpp"
#include "fixture.hpp"

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

/// Inserts a job envelope and claims it for `owner`, as a node that then died would have.
depot::envelope claimed_job(test_store& store, int n, int owner) {
  auto e = make_envelope(job_queue, job_queue, fmt::format(R"({{"n": {}}})", n));
  REQUIRE(store.inbox.insert({e}) == 1);
  auto claimed = store.inbox.claim(job_queue, owner, 1);
  REQUIRE(claimed.size() == 1);
  REQUIRE(claimed[0].id == e.id);
  return e;
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
  CHECK(s.number("SELECT count(*) FROM incoming WHERE status = 'handled'") == total);
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

TEST_CASE("envelopes owned by a dead node are recovered") {
  test_schema s;
  create_effects_table(s);
  test_store store{s.store_config()};
  store.apply_schema();

  // Node 77 registered and holds its lock, but never beats again: it goes stale.
  test_store silent_node{s.store_config()};
  silent_node.nodes.register_node(77, "", "test");
  auto silent = claimed_job(store, 1, 77);
  // Node 78 died with its connection: its advisory lock went with it.
  depot::envelope vanished;
  {
    test_store dying{s.store_config()};
    dying.nodes.register_node(78, "", "test");
    vanished = claimed_job(dying, 2, 78);
  }
  // Node 79 is alive and keeps beating: its envelope is not taken from it.
  test_store live_node{s.store_config()};
  auto live = live_node.nodes.register_node(79, "", "test");
  auto kept = claimed_job(store, 3, 79);
  std::atomic<bool> heartbeat_failed{false};
  std::jthread heart{[&](std::stop_token stop) {
    while (!stop.stop_requested()) {
      try {
        live_node.nodes.heartbeat(live, "test");
      } catch (const std::exception&) {
        heartbeat_failed = true;
      }
      std::this_thread::sleep_for(50ms);
    }
  }};

  depot::routing app;
  handle_jobs(app, s, 1);
  depot::node node{app, s.node_config()};
  node.start();

  auto handled = [&](const depot::envelope& e) {
    return s.number("SELECT count(*) FROM effects WHERE envelope_id = '" + e.id + "'");
  };
  REQUIRE(wait_until([&] { return handled(silent) == 1 && handled(vanished) == 1; }));
  CHECK(s.number("SELECT count(*) FROM nodes WHERE number IN (77, 78)") == 0);
  CHECK(handled(kept) == 0);
  CHECK(s.number("SELECT owner FROM incoming WHERE id = '" + kept.id + "'") == 79);

  heart.request_stop();
  heart.join();
  CHECK_FALSE(heartbeat_failed);
  live_node.nodes.deregister(live); // a clean shutdown gives its envelope back
  REQUIRE(wait_until([&] { return handled(kept) == 1; }));
  CHECK(s.number("SELECT count(*) FROM effects") == 3);
}

TEST_CASE(
  "a node restarted with the same node id takes back its previous incarnation's claims "
  "at start") {
  test_schema s;
  create_effects_table(s);
  test_store store{s.store_config()};
  store.apply_schema();
  depot::envelope e;
  long long previous_pid = 0;
  {
    test_store previous{s.store_config()};
    previous.nodes.register_node(13, "", "test");
    e = claimed_job(previous, 1, 13);
    previous.conn.session() << "SELECT pg_backend_pid()", soci::into(previous_pid);
  }
  // The previous incarnation died with its connection; wait until Postgres noticed, which frees
  // the node lock of number 13.
  REQUIRE(wait_until([&] {
    return s.number(fmt::format("SELECT count(*) FROM pg_stat_activity WHERE pid = {}",
                                previous_pid)) == 0;
  }));
  REQUIRE(s.number("SELECT owner FROM incoming") == 13);

  depot::routing app;
  handle_jobs(app, s, 13);
  auto config = s.node_config();
  config.node_id = 13;
  depot::node node{app, config};
  node.start();
  CHECK(node.number() == 13);
  // Nothing else would free it: node 13 is alive again, so recovery leaves its claims alone.
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

TEST_CASE("a cleanup that waits on a locked row does not stop this node's heartbeat") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  handle_jobs(app, s, 1);
  auto config = s.node_config();
  config.dedup_window = 1s; // the handled id is cleaned up a second after it was handled
  config.cleanup_interval = 100ms;
  depot::node node{app, config};
  node.start();
  node.send(job{1});
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }));

  // Another transaction holds the handled row: the cleanup's DELETE waits for it.
  test_store holder{s.store_config()};
  soci::transaction held{holder.conn.session()};
  int one = 0;
  holder.conn.session() << "SELECT 1 FROM " + s.table("incoming") + " FOR UPDATE", soci::into(one);
  REQUIRE(holder.conn.session().got_data());
  REQUIRE(wait_until([&] {
    return s.number(
             "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
             "query LIKE 'DELETE FROM " +
             s.name() + ".incoming%'") == 1;
  }));
  // Several heartbeat intervals (100 ms) and past stale-after (1 s) with the cleanup stuck.
  std::this_thread::sleep_for(1500ms);
  CHECK(s.number(fmt::format("SELECT (extract(epoch from now() - heartbeat) * 1000)::bigint "
                             "FROM nodes WHERE number = {}",
                             node.number())) < 500);
  held.rollback();
  CHECK(wait_until([&] { return s.number("SELECT count(*) FROM incoming") == 0; }));
}

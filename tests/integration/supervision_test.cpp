// Supervision and start-up checks of a node: a failing queue worker is restarted and its queue
// served again; repeated failure makes the node unhealthy, then failed; settings a node cannot
// run with, and more workers than the server has connections for, are refused before anything
// is left behind.
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "depot/actors/node.hpp"
#include "depot/runtime/routing.hpp"
#include "fixture.hpp"

using namespace depot_it;

namespace {

struct ping {
  std::string tag;
};
DEPOT_MESSAGE(ping, "it.ping", tag)

// Constructions of flaky_actor that are still to fail; set by each test.
std::atomic<int> failures_left{0};
std::atomic<int> handled{0};

// A handler actor whose constructor throws while failures_left is positive: its worker fails.
struct flaky_actor {
  flaky_actor() {
    if (failures_left.fetch_sub(1) > 0)
      throw std::runtime_error{"cannot open the ledger"};
  }
  void handle(const ping&, depot::context&) { ++handled; }
};

depot::routing flaky_app() {
  depot::routing app;
  app.handler_actor<flaky_actor, ping>("it.flaky");
  return app;
}

} // namespace

TEST_CASE(
  "a worker that fails is restarted with backoff, the node turns unhealthy, and the "
  "queue is served") {
  test_schema s;
  failures_left = 2;
  handled = 0;
  auto app = flaky_app();
  depot::node node{app, s.node_config()};
  node.start();
  node.send(ping{"a"});
  REQUIRE(wait_until([] { return handled == 1; }));
  auto h = node.health();
  CHECK(h.status == depot::node_health::state::unhealthy);
  CHECK(h.reason.find("queue worker it.flaky#1 failed 2 times") != std::string::npos);
  CHECK(h.reason.find("std::runtime_error: cannot open the ledger") != std::string::npos);
  // The heartbeat carries it to the node's row, where `health` reads it.
  CHECK(wait_until([&] {
    return s.text("SELECT health || ': ' || health_reason FROM nodes") == "unhealthy: " + h.reason;
  }));
  node.send(ping{"b"});
  CHECK(wait_until([] { return handled == 2; }));
}

TEST_CASE("a worker that fails more than max-restarts times within the window fails the node") {
  test_schema s;
  failures_left = 1000;
  auto app = flaky_app();
  auto config = s.node_config();
  config.max_restarts = 2;
  depot::node node{app, config};
  node.start();
  REQUIRE(wait_until([&] { return node.health().status == depot::node_health::state::failed; }));
  auto reason = node.health().reason;
  CHECK(reason.find("queue worker it.flaky#1 failed 3 time(s)") != std::string::npos);
  CHECK(reason.find("more than max-restarts 2") != std::string::npos);
  CHECK(reason.find("cannot open the ledger") != std::string::npos);
  node.stop();
  CHECK(s.number("SELECT count(*) FROM nodes") == 0);
  failures_left = 0;
}

TEST_CASE("a node refuses settings out of bounds before it connects") {
  test_schema s;
  depot::routing app;
  app.handle<ping>([](const ping&, depot::context&) {});
  auto config = s.node_config();
  config.batch_size = 2'147'483'647;
  depot::node big{app, config};
  CHECK_THROWS_WITH_AS(big.start(), "--batch-size 2147483647 is out of range [1, 10000]",
                       depot::startup_error);
  config = s.node_config();
  config.queue_concurrency["it.ping"] = -3;
  depot::node negative{app, config};
  CHECK_THROWS_WITH_AS(negative.start(), "--queue-concurrency it.ping=-3 is out of range [0, 1000]",
                       depot::startup_error);
  config = s.node_config();
  config.queue_concurrency["it.pong"] = 2;
  depot::node typo{app, config};
  CHECK_THROWS_WITH_AS(typo.start(),
                       doctest::Contains("names queue 'it.pong', which this node "
                                         "does not serve"),
                       depot::startup_error);
  CHECK(s.number("SELECT count(*) FROM nodes") == 0);
  config = s.node_config();
  config.schema = "\"quoted\"";
  depot::node quoted{app, config};
  CHECK_THROWS_WITH_AS(quoted.start(), doctest::Contains("is not a lower-case identifier"),
                       depot::startup_error);
}

TEST_CASE(
  "a node that needs more connections than the server has left says so and leaves no "
  "node row") {
  test_schema s;
  depot::routing app;
  app.handle<ping>([](const ping&, depot::context&) {});
  auto config = s.node_config();
  config.concurrency = 1000;
  depot::node node{app, config};
  CHECK_THROWS_WITH_AS(node.start(), doctest::Contains("raise the server's max_connections"),
                       depot::startup_error);
  CHECK(s.number("SELECT count(*) FROM nodes") == 0);
  CHECK(s.number("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'") <
        20);
}

// The ways a message travels: request and reply, buffered queues, publish, and wake-ups from
// another process through LISTEN/NOTIFY.
#include <doctest/doctest.h>

#include <atomic>

#include <soci/soci.h>

#include "depot/actors/node.hpp"
#include "depot/runtime/routing.hpp"
#include "depot/transports/local.hpp"
#include "fixture.hpp"

using namespace depot_it;

namespace {

struct question {
  std::int64_t x = 0;
};
DEPOT_MESSAGE(question, "it.question", x)

struct answer {
  std::int64_t doubled = 0;
};
DEPOT_MESSAGE(answer, "it.answer", doubled)

struct ephemeral {
  std::string tag;
};
DEPOT_MESSAGE(ephemeral, "it.ephemeral", tag)

struct news {
  std::string headline;
};
DEPOT_MESSAGE(news, "it.news", headline)

struct nobody_listens {
  std::string tag;
};
DEPOT_MESSAGE(nobody_listens, "it.nobody-listens", tag)

struct ping {
  std::string tag;
};
DEPOT_MESSAGE(ping, "it.ping", tag)

std::string tally_table; // qualified with the running test's schema

/// A handler actor: one per worker, its members live across messages and batches.
class tally {
public:
  void handle(const ping& m, depot::context& ctx) { record(ctx, "ping " + m.tag); }
  void handle(const news& m, depot::context& ctx) { record(ctx, "news " + m.headline); }

private:
  void record(depot::context& ctx, const std::string& what) {
    ++seen_;
    ctx.db() << "INSERT INTO " + tally_table + " (seen, what) VALUES (:n, :w)", soci::use(seen_),
      soci::use(what);
  }
  int seen_ = 0;
};

} // namespace

TEST_CASE("a handler actor keeps its state across messages of its types") {
  test_schema s;
  s.exec("CREATE TABLE tally (seen integer PRIMARY KEY, what text NOT NULL)");
  tally_table = s.table("tally");
  depot::routing app;
  app.handler_actor<tally, ping, news>("it.tally");
  auto config = s.node_config();
  config.batch_size = 2; // several batches: the state outlives each one
  depot::node node{app, config};
  node.start();

  node.send_all(std::vector<ping>{{"a"}, {"b"}, {"c"}});
  node.send(news{"d"});

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM tally") == 4; }));
  CHECK(s.text("SELECT string_agg(seen::text, ',' ORDER BY seen) FROM tally") == "1,2,3,4");
  CHECK(s.text("SELECT what FROM tally WHERE seen = 4") == "news d");
}

TEST_CASE("request returns the handler's reply") {
  test_schema s;
  depot::routing app;
  app.handle<question>([](const question& q, depot::context&) { return answer{q.x * 2}; });
  depot::node node{app, s.node_config()};
  node.start();

  CHECK(node.request<answer>(question{21}, 10s).doubled == 42);
  CHECK(node.request<answer>(question{-4}, 10s).doubled == -8);
}

TEST_CASE("a buffered queue handles messages in memory") {
  test_schema s;
  create_effects_table(s);
  std::atomic<int> calls{0};
  depot::routing app;
  app
    .handle<ephemeral>(
      [&calls, effects = s.table("effects")](const ephemeral& m, depot::context& ctx) {
        ++calls;
        record_effect(ctx, effects, m.tag);
      })
    .buffered();
  depot::node node{app, s.node_config()};
  node.start();

  node.send(ephemeral{"in memory"});

  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }));
  CHECK(s.text("SELECT tag FROM effects") == "in memory");
  CHECK(calls == 1);
  CHECK(s.number("SELECT count(*) FROM incoming") == 0);
  CHECK(wait_until([&] { return node.stats().handled == 1; }));
}

TEST_CASE(
  "publish reaches every subscribed queue, publish with no subscriber is fine, and send "
  "with no route throws no_route") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  auto subscribe = [effects = s.table("effects")](depot::routing& r, const std::string& queue) {
    r.handle<news>([=](const news&, depot::context& ctx) { record_effect(ctx, effects, queue); })
      .on_queue(queue);
  };
  subscribe(app, "it.desk-a");
  subscribe(app, "it.desk-b");
  depot::node node{app, s.node_config()};
  node.start();

  node.publish(news{"extra"});
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 2; }));
  CHECK(s.text("SELECT string_agg(tag, ',' ORDER BY tag) FROM effects") == "it.desk-a,it.desk-b");
  CHECK(s.number("SELECT count(*) FROM incoming") == 0); // one envelope each, handled

  CHECK_NOTHROW(node.publish(nobody_listens{"hello?"}));
  CHECK_THROWS_AS(node.send(nobody_listens{"hello?"}), depot::no_route);
  CHECK(s.number("SELECT count(*) FROM incoming WHERE message_type = 'it.nobody-listens'") == 0);
}

TEST_CASE("a send from another process wakes the node through LISTEN/NOTIFY") {
  test_schema s;
  create_effects_table(s);
  depot::routing app;
  app.handle<ping>([effects = s.table("effects")](const ping& m, depot::context& ctx) {
    record_effect(ctx, effects, m.tag);
  });
  auto config = s.node_config();
  config.polling_interval = 60s; // no fallback poll within the test's deadlines
  depot::node node{app, config};
  node.start();
  // A notification sent before the node listens is lost (polling would cover it): wait until
  // the node's listener connection has run its LISTEN.
  REQUIRE(wait_until([&] {
    return s.number("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %depot_" +
                    s.name() + "%'") == 1;
  }));

  // The other process: its own store and routes, no node (sender 0).
  depot::persistence::connection other{s.store_config()};
  depot::routing other_app;
  other_app.add_type<ping>();
  other_app.handle<ping>([](const ping&, depot::context&) {});
  auto send_from_other = [&](const std::string& tag) {
    depot::send_durably(other, other_app, "other-process", 0, depot::type_name_of<ping>(),
                        {depot::to_json(ping{tag})}, {}, 0, depot::dispatch::send);
  };

  // The first may still meet the node's start-up drain; the second can only be woken.
  send_from_other("first");
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 1; }));
  send_from_other("second");
  REQUIRE(wait_until([&] { return s.number("SELECT count(*) FROM effects") == 2; }));
  CHECK(s.text("SELECT string_agg(tag, ',' ORDER BY tag) FROM effects") == "first,second");
}

TEST_CASE(
  "a message routed to a transport's endpoint waits in the outbox, committed with its "
  "handler, and a failed handler leaves none") {
  test_schema s;
  depot::routing app;
  app.handle<ping>([](const ping& p, depot::context& ctx) {
    ctx.publish(news{p.tag});
    if (p.tag == "fail")
      throw depot::validation_error{"refused after publishing"};
  });
  app.route<news>({"kafka", "it.news"});
  depot::node node{app, s.node_config()};
  node.start();
  node.send(ping{"ok"});
  node.send(ping{"fail"});
  REQUIRE(node.wait_idle(10s));
  CHECK(s.number("SELECT count(*) FROM outgoing WHERE destination = 'kafka://it.news' AND "
                 "message_type = 'it.news' AND body = '{\"headline\":\"ok\"}'") == 1);
  CHECK(s.number("SELECT count(*) FROM outgoing") == 1);
  CHECK(s.number("SELECT count(*) FROM dead_letters") == 1);
  node.stop();
}

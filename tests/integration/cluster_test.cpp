// Work across the nodes of a cluster, two nodes in this process: requests whose queue only the
// other node serves, buffered and durable, with the reply coming back over CAF.
#include <doctest/doctest.h>

#include "depot/actors/node.hpp"
#include "depot/runtime/routing.hpp"
#include "fixture.hpp"

using namespace depot_it;
using namespace std::chrono_literals;

namespace {

struct lookup {
  std::int64_t x = 0;
};
DEPOT_MESSAGE(lookup, "it.lookup", x)

struct order {
  std::int64_t x = 0;
};
DEPOT_MESSAGE(order, "it.order", x)

struct result {
  std::int64_t value = 0;
  std::int64_t node = 0; ///< the node that answered
};
DEPOT_MESSAGE(result, "it.result", value, node)

struct chatter {
  std::string tag;
};
DEPOT_MESSAGE(chatter, "it.chatter", tag)

} // namespace

TEST_CASE("a request reaches the node serving its queue and the reply comes back over CAF") {
  test_schema s;
  std::atomic<int> answering{0}; // the node number of the queries' server
  depot::routing app;
  app.handle<lookup>([&](const lookup& m, depot::context&) {
       return result{m.x * 3, answering};
     })
    .on_queue("it.queries")
    .buffered();
  app.handle<order>([&](const order& m, depot::context&) {
       return result{m.x + 1, answering};
     })
    .on_queue("it.orders");
  app.handle<chatter>([](const chatter&, depot::context&) {}).on_queue("it.chatter");

  auto front_settings = s.node_config();
  front_settings.queues = "it.chatter";
  auto back_settings = s.node_config();
  back_settings.queues = "it.queries,it.orders";
  depot::node front{app, front_settings};
  depot::node back{app, back_settings};
  front.start();
  back.start();
  answering = back.number();
  // Both connected (each records its peers with its heartbeat).
  REQUIRE(wait_until([&] {
    return s.number("SELECT count(*) FROM " + s.table("nodes") + " WHERE cardinality(peers) = 1") ==
           2;
  }));

  auto buffered = front.request<result>(lookup{7}, 10s);
  CHECK(buffered.value == 21);
  CHECK(buffered.node == back.number());
  CHECK(s.number("SELECT count(*) FROM " + s.table("incoming") + " WHERE queue = 'it.queries'") ==
        0);

  auto durable = front.request<result>(order{41}, 10s);
  CHECK(durable.value == 42);
  CHECK(durable.node == back.number());

  CHECK(front.stats().handled == 0);
  CHECK(wait_until([&] { return back.stats().handled == 2; }));

  // With the serving node gone, a buffered request is dropped and times out.
  back.stop();
  CHECK_THROWS_AS(front.request<result>(lookup{1}, 500ms), depot::request_timeout);
}

// Unit tests of routing, the message context and the middleware pipeline: no database.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "depot/runtime/context.hpp"
#include "depot/runtime/routing.hpp"

namespace routing_test {

struct order_placed {
  std::string order_id;
  std::int64_t total = 0;
};
DEPOT_MESSAGE(order_placed, "shop.order-placed", order_id, total)

struct order_shipped {
  std::string order_id;
};
DEPOT_MESSAGE(order_shipped, "shop.order-shipped", order_id)

struct price_quote {
  std::int64_t cents = 0;
};
DEPOT_MESSAGE(price_quote, "shop.price-quote", cents)

struct counter {
  int seen = 0;
  void handle(const order_placed&, depot::context& ctx) {
    ++seen;
    ctx.reply(price_quote{seen});
  }
  void handle(const order_shipped&, depot::context&) { seen += 10; }
};

} // namespace routing_test

using namespace routing_test;

namespace {

depot::envelope envelope_of(std::string type, std::string body) {
  depot::envelope e;
  e.id = depot::new_envelope_id();
  e.message_type = std::move(type);
  e.body = std::move(body);
  return e;
}

} // namespace

TEST_CASE("a handler's queue is named after its message type unless moved") {
  depot::routing app;
  app.handle<order_placed>([](const order_placed&, depot::context&) {});
  app.handle<order_shipped>([](const order_shipped&, depot::context&) {}).on_queue("shipping");
  CHECK(app.route_of("shop.order-placed").name == "shop.order-placed");
  CHECK(app.route_of("shop.order-shipped").name == "shipping");
  CHECK(app.find_queue("shop.order-shipped") == nullptr);
  CHECK(app.queues().size() == 2);
}

TEST_CASE("sending a type nobody handles is an error naming the type") {
  depot::routing app;
  CHECK_THROWS_WITH_AS((void)app.route_of("shop.unknown"), doctest::Contains("shop.unknown"),
                       depot::no_route);
}

TEST_CASE("a type may have only one handler per queue") {
  depot::routing app;
  app.handle<order_placed>([](const order_placed&, depot::context&) {});
  CHECK_THROWS_AS(app.handle<order_placed>([](const order_placed&, depot::context&) {}),
                  std::logic_error);
}

TEST_CASE("publish reaches every subscribed queue and send only the first") {
  depot::routing app;
  app.handle<order_placed>([](const order_placed&, depot::context&) {}).on_queue("billing");
  app.handler_actor<counter, order_placed>("audit");
  depot::envelope incoming;
  depot::outgoing_envelopes out;
  depot::context ctx{incoming, nullptr, app, "shop", out};
  ctx.publish(order_placed{"o-1", 5});
  REQUIRE(out.inbox.size() == 2);
  CHECK(out.inbox[0].queue == "billing");
  CHECK(out.inbox[1].queue == "audit");
  CHECK(out.inbox[0].id != out.inbox[1].id);
  ctx.send(order_placed{"o-2", 7});
  CHECK(out.inbox.size() == 3);
  CHECK(out.inbox[2].queue == "billing");
  ctx.publish(order_shipped{"o-1"}); // no subscriber: fine
  CHECK(out.inbox.size() == 3);
}

TEST_CASE("sent envelopes carry source, causation, correlation, priority and deadline") {
  depot::routing app;
  app.handle<order_shipped>([](const order_shipped&, depot::context&) {});
  auto incoming = envelope_of("shop.order-placed", R"({"order_id":"o-1","total":5})");
  incoming.tenant = "acme";
  depot::outgoing_envelopes out;
  depot::context ctx{incoming, nullptr, app, "shop", out};
  auto before = depot::now_micros();
  ctx.send(order_shipped{"o-1"}, {.deliver_within = std::chrono::seconds{5}, .priority = 3});
  REQUIRE(out.inbox.size() == 1);
  const auto& e = out.inbox[0];
  CHECK(e.body == R"({"order_id":"o-1"})");
  CHECK(e.message_type == "shop.order-shipped");
  CHECK(e.header_value(depot::header::source) == "shop");
  CHECK(e.header_value(depot::header::causation_id) == incoming.id);
  CHECK(e.header_value(depot::header::correlation_id) == incoming.id);
  CHECK(e.priority == 3);
  CHECK(e.tenant == "acme");
  CHECK(e.status == depot::envelope_status::incoming);
  CHECK(e.deliver_by >= before + 5'000'000);
  CHECK(e.deliver_by <= depot::now_micros() + 5'000'000);
}

TEST_CASE("a scheduled send is stored as scheduled with its execution time") {
  depot::routing app;
  app.handle<order_shipped>([](const order_shipped&, depot::context&) {});
  depot::envelope incoming;
  depot::outgoing_envelopes out;
  depot::context ctx{incoming, nullptr, app, "shop", out};
  auto before = depot::now_micros();
  ctx.schedule(order_shipped{"o-1"}, std::chrono::hours{240});
  REQUIRE(out.inbox.size() == 1);
  CHECK(out.inbox[0].status == depot::envelope_status::scheduled);
  CHECK(out.inbox[0].execution_time >= before + 240LL * 3600 * 1'000'000);
}

TEST_CASE("messages for a buffered queue are kept in memory, not stored") {
  depot::routing app;
  app.handle<order_shipped>([](const order_shipped&, depot::context&) {}).buffered();
  depot::envelope incoming;
  depot::outgoing_envelopes out;
  depot::context ctx{incoming, nullptr, app, "shop", out};
  ctx.send(order_shipped{"o-1"});
  CHECK(out.inbox.empty());
  CHECK(out.memory.size() == 1);
  CHECK_THROWS_AS(ctx.schedule(order_shipped{"o-2"}, std::chrono::seconds{1}), std::logic_error);
}

TEST_CASE("a reply is kept only when the requester asked for one") {
  depot::routing app;
  depot::envelope plain;
  depot::outgoing_envelopes none;
  depot::context quiet{plain, nullptr, app, "shop", none};
  quiet.reply(price_quote{5});
  CHECK(none.replies.empty());

  depot::envelope request;
  request.id = "id-1";
  request.headers[depot::header::reply_to] = "node:3";
  request.headers[depot::header::correlation_id] = "req-9";
  depot::outgoing_envelopes out;
  depot::context ctx{request, nullptr, app, "shop", out};
  ctx.reply(price_quote{5});
  REQUIRE(out.replies.size() == 1);
  CHECK(out.replies[0].reply_to == "node:3");
  CHECK(out.replies[0].request_id == "req-9");
  CHECK(out.replies[0].body == R"({"cents":5})");
}

TEST_CASE("the pipeline runs middleware outermost first, then the handler") {
  depot::routing app;
  std::vector<std::string> trace;
  app.handle<order_placed>(
    [&](const order_placed& m, depot::context&) { trace.push_back("handler " + m.order_id); });
  app.use([&](const depot::envelope&, depot::context&, const depot::next_step& next) {
    trace.push_back("outer in");
    next();
    trace.push_back("outer out");
  });
  app.use([&](const depot::envelope&, depot::context&, const depot::next_step& next) {
    trace.push_back("inner");
    next();
  });
  auto e = envelope_of("shop.order-placed", R"({"order_id":"o-1","total":1})");
  auto handler = app.instantiate(app.route_of(e.message_type));
  depot::outgoing_envelopes out;
  depot::context ctx{e, nullptr, app, "shop", out};
  handler->invoke(e, ctx);
  CHECK(trace == std::vector<std::string>{"outer in", "inner", "handler o-1", "outer out"});
}

TEST_CASE("middleware that does not call next stops the handler") {
  depot::routing app;
  bool ran = false;
  app.handle<order_placed>([&](const order_placed&, depot::context&) { ran = true; });
  app.use([](const depot::envelope&, depot::context&, const depot::next_step&) {});
  auto e = envelope_of("shop.order-placed", R"({"order_id":"o-1","total":1})");
  auto handler = app.instantiate(app.route_of(e.message_type));
  depot::outgoing_envelopes out;
  depot::context ctx{e, nullptr, app, "shop", out};
  handler->invoke(e, ctx);
  CHECK_FALSE(ran);
}

TEST_CASE("a queue rejects a body it cannot decode and a type it does not handle") {
  depot::routing app;
  app.handle<order_placed>([](const order_placed&, depot::context&) {});
  auto handler = app.instantiate(app.route_of("shop.order-placed"));
  auto bad = envelope_of("shop.order-placed", R"({"order_id":"o-1"})");
  depot::outgoing_envelopes out;
  depot::context c1{bad, nullptr, app, "shop", out};
  CHECK_THROWS_WITH_AS(handler->invoke(bad, c1), "missing field 'total'", depot::decode_error);
  auto other = envelope_of("shop.order-shipped", R"({"order_id":"o-1"})");
  depot::context c2{other, nullptr, app, "shop", out};
  CHECK_THROWS_AS(handler->invoke(other, c2), depot::unknown_message_type);
}

TEST_CASE("a handler actor keeps its state across messages, one state per worker") {
  depot::routing app;
  app.handler_actor<counter, order_placed, order_shipped>("counting");
  auto placed = envelope_of("shop.order-placed", R"({"order_id":"o-1","total":1})");
  placed.headers[depot::header::reply_to] = "node:1";
  auto shipped = envelope_of("shop.order-shipped", R"({"order_id":"o-1"})");
  auto seen_after_placed = [&](depot::queue_handler& h) {
    depot::outgoing_envelopes out;
    depot::context ctx{placed, nullptr, app, "shop", out};
    h.invoke(placed, ctx);
    return out.replies.at(0).body;
  };
  auto worker = app.instantiate(*app.find_queue("counting"));
  CHECK(seen_after_placed(*worker) == R"({"cents":1})");
  depot::outgoing_envelopes out;
  depot::context c2{shipped, nullptr, app, "shop", out};
  worker->invoke(shipped, c2);
  CHECK(seen_after_placed(*worker) == R"({"cents":12})");
  auto second = app.instantiate(*app.find_queue("counting"));
  CHECK(seen_after_placed(*second) == R"({"cents":1})");
}

TEST_CASE("validation checks bodies of registered types and requires objects otherwise") {
  depot::routing app;
  app.handle<order_placed>([](const order_placed&, depot::context&) {});
  CHECK_NOTHROW(app.validate("shop.order-placed", R"({"order_id":"o","total":2})"));
  CHECK_THROWS_AS(app.validate("shop.order-placed", R"({"order_id":"o"})"), depot::decode_error);
  CHECK_NOTHROW(app.validate("other.type", R"({"x":1})"));
  CHECK_THROWS_AS(app.validate("other.type", "[1]"), depot::decode_error);
  CHECK(app.message_types() == std::vector<std::string>{"shop.order-placed"});
}

TEST_CASE("a route to a transport's endpoint files its envelopes for the outbox") {
  depot::routing app;
  app.handle<order_placed>([](const order_placed&, depot::context&) {}).on_queue("billing");
  app.route<order_placed>({"kafka", "shop.orders"});
  app.route<order_shipped>({"kafka", "shop.shipping"});
  auto incoming = envelope_of("shop.order-placed", R"({"order_id":"o-1","total":5})");
  depot::outgoing_envelopes out;
  depot::context ctx{incoming, nullptr, app, "shop", out};
  ctx.publish(order_placed{"o-1", 5}); // the local queue and the topic
  REQUIRE(out.inbox.size() == 1);
  CHECK(out.inbox[0].queue == "billing");
  REQUIRE(out.outbox.size() == 1);
  CHECK(out.outbox[0].queue == "kafka://shop.orders");
  ctx.send(order_placed{"o-2", 7}); // send prefers the local queue
  CHECK(out.inbox.size() == 2);
  CHECK(out.outbox.size() == 1);
  ctx.send(order_shipped{"o-1"}); // no local queue: the route
  REQUIRE(out.outbox.size() == 2);
  CHECK(out.outbox[1].queue == "kafka://shop.shipping");
  CHECK(out.outbox[1].headers.at(depot::header::causation_id) == incoming.id);
}

TEST_CASE("a transport's endpoint cannot be buffered and a route must name an endpoint") {
  depot::routing app;
  CHECK_THROWS_AS(app.route<order_placed>({"kafka", "shop.orders", depot::endpoint_mode::buffered}),
                  std::logic_error);
  CHECK_THROWS_AS(app.route<order_placed>({"kafka", ""}), std::logic_error);
}

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
  depot::context ctx{incoming, nullptr, app, "shop"};
  ctx.publish(order_placed{"o-1", 5});
  REQUIRE(ctx.durable().size() == 2);
  CHECK(ctx.durable()[0].queue == "billing");
  CHECK(ctx.durable()[1].queue == "audit");
  CHECK(ctx.durable()[0].id != ctx.durable()[1].id);
  ctx.send(order_placed{"o-2", 7});
  CHECK(ctx.durable().size() == 3);
  CHECK(ctx.durable()[2].queue == "billing");
  ctx.publish(order_shipped{"o-1"}); // no subscriber: fine
  CHECK(ctx.durable().size() == 3);
}

TEST_CASE("sent envelopes carry source, causation, correlation, priority and deadline") {
  depot::routing app;
  app.handle<order_shipped>([](const order_shipped&, depot::context&) {});
  auto incoming = envelope_of("shop.order-placed", R"({"order_id":"o-1","total":5})");
  incoming.tenant = "acme";
  depot::context ctx{incoming, nullptr, app, "shop"};
  auto before = depot::now_micros();
  ctx.send(order_shipped{"o-1"}, {.deliver_within = std::chrono::seconds{5}, .priority = 3});
  REQUIRE(ctx.durable().size() == 1);
  const auto& e = ctx.durable()[0];
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
  depot::context ctx{incoming, nullptr, app, "shop"};
  auto before = depot::now_micros();
  ctx.schedule(order_shipped{"o-1"}, std::chrono::hours{240});
  REQUIRE(ctx.durable().size() == 1);
  CHECK(ctx.durable()[0].status == depot::envelope_status::scheduled);
  CHECK(ctx.durable()[0].execution_time >= before + 240LL * 3600 * 1'000'000);
}

TEST_CASE("messages for a buffered queue stay out of the durable list") {
  depot::routing app;
  app.handle<order_shipped>([](const order_shipped&, depot::context&) {}).buffered();
  depot::envelope incoming;
  depot::context ctx{incoming, nullptr, app, "shop"};
  ctx.send(order_shipped{"o-1"});
  CHECK(ctx.durable().empty());
  CHECK(ctx.buffered().size() == 1);
  CHECK_THROWS_AS(ctx.schedule(order_shipped{"o-2"}, std::chrono::seconds{1}), std::logic_error);
}

TEST_CASE("a reply is kept only when the requester asked for one") {
  depot::routing app;
  depot::envelope plain;
  depot::context quiet{plain, nullptr, app, "shop"};
  quiet.reply(price_quote{5});
  CHECK_FALSE(quiet.reply_out().has_value());

  depot::envelope request;
  request.id = "id-1";
  request.headers[depot::header::reply_to] = "node:3";
  request.headers[depot::header::correlation_id] = "req-9";
  depot::context ctx{request, nullptr, app, "shop"};
  ctx.reply(price_quote{5});
  REQUIRE(ctx.reply_out().has_value());
  CHECK(ctx.reply_out()->reply_to == "node:3");
  CHECK(ctx.reply_out()->request_id == "req-9");
  CHECK(ctx.reply_out()->body == R"({"cents":5})");
}

TEST_CASE("the pipeline runs middleware outermost first, then the handler") {
  depot::routing app;
  std::vector<std::string> trace;
  app.handle<order_placed>([&](const order_placed& m, depot::context&) {
    trace.push_back("handler " + m.order_id);
  });
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
  auto handler = app.route_of(e.message_type).instantiate();
  depot::context ctx{e, nullptr, app, "shop"};
  app.run_pipeline(*handler, e, ctx);
  CHECK(trace == std::vector<std::string>{"outer in", "inner", "handler o-1", "outer out"});
}

TEST_CASE("middleware that does not call next stops the handler") {
  depot::routing app;
  bool ran = false;
  app.handle<order_placed>([&](const order_placed&, depot::context&) { ran = true; });
  app.use([](const depot::envelope&, depot::context&, const depot::next_step&) {});
  auto e = envelope_of("shop.order-placed", R"({"order_id":"o-1","total":1})");
  auto handler = app.route_of(e.message_type).instantiate();
  depot::context ctx{e, nullptr, app, "shop"};
  app.run_pipeline(*handler, e, ctx);
  CHECK_FALSE(ran);
}

TEST_CASE("a queue rejects a body it cannot decode and a type it does not handle") {
  depot::routing app;
  app.handle<order_placed>([](const order_placed&, depot::context&) {});
  auto handler = app.route_of("shop.order-placed").instantiate();
  auto bad = envelope_of("shop.order-placed", R"({"order_id":"o-1"})");
  depot::context c1{bad, nullptr, app, "shop"};
  CHECK_THROWS_WITH_AS(handler->invoke(bad, c1), "missing field 'total'", depot::decode_error);
  auto other = envelope_of("shop.order-shipped", R"({"order_id":"o-1"})");
  depot::context c2{other, nullptr, app, "shop"};
  CHECK_THROWS_AS(handler->invoke(other, c2), depot::unknown_message_type);
}

TEST_CASE("a handler actor keeps its state across messages, one state per worker") {
  depot::routing app;
  app.handler_actor<counter, order_placed, order_shipped>("counting");
  auto placed = envelope_of("shop.order-placed", R"({"order_id":"o-1","total":1})");
  placed.headers[depot::header::reply_to] = "node:1";
  auto shipped = envelope_of("shop.order-shipped", R"({"order_id":"o-1"})");
  auto seen_after_placed = [&](depot::queue_handler& h) {
    depot::context ctx{placed, nullptr, app, "shop"};
    h.invoke(placed, ctx);
    return ctx.reply_out().value().body;
  };
  auto worker = app.find_queue("counting")->instantiate();
  CHECK(seen_after_placed(*worker) == R"({"cents":1})");
  depot::context c2{shipped, nullptr, app, "shop"};
  worker->invoke(shipped, c2);
  CHECK(seen_after_placed(*worker) == R"({"cents":12})");
  auto second = app.find_queue("counting")->instantiate();
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
